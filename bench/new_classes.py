"""New classes: prompts tuned on half of a domain's classes, scored on the other half.

    OMP_NUM_THREADS=1 python bench/new_classes.py [--domain retail] [--seeds 3] [--epochs N]
    OMP_NUM_THREADS=1 python bench/new_classes.py --quick   # 1 seed, 1 epoch, 4 images
                                                            # per class and split

The base-to-new protocol of CoCoOp and MaPLe. The split is fixed before any result is seen:
the first half of the labels in the order domain.yaml lists them are the base classes, the
rest the new ones (retail: T-shirt/top, trouser, pullover, dress, coat | sandal, shirt,
sneaker, bag, ankle boot). Every method sees only the base classes' train images (and
calibrates the image centre on them); the epoch kept is chosen on the base classes' val
images; test is only scored: the base classes' test images against the 5 base class names
("base"), the new classes' test images against the 5 new class names ("new", the same
prompts, the domain's template filled with the new names), and their harmonic mean.

Methods: zero-shot and the prompt presets (any `PromptMethod` of bench/methods/registry.py,
ablations included, and `mpt+search`: the search on the base classes' train / val, as
bench/results.py runs it, 2 lr trials with --quick) score new classes; the linear probe
has one output per base class, so it is listed with its base accuracy and "n/a" for new.
The table also says how many trainable parameters depend on the class list (measured: the
preset built for the base and for the new classes, parameter shapes compared). Writes
docs/new-classes.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from methods.base import Method, Splits, mean_std
from methods.data import load_splits
from methods.features import cached_prepare
from methods.linear_probe import linear_probe
from methods.presets import PromptMethod, train_prompts
from methods.registry import methods
from methods.search import PromptSearch
from methods.zero_shot import zero_shot, zero_shot_model

from flows.domains import Domain, discover
from mpt_core import TrainConfig, build_prompts, evaluate, load_backbone
from mpt_core.backbones.base import Backbone
from mpt_core.holder import PromptsHolder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = "zero-shot,coop,maple,mpt,linear-probe"
QUICK_SHOTS = 4
"""--quick: images per class and split."""


@dataclass
class Tuned:
    """What a method scores with after tuning, how many parameters it trained and, for a
    searched preset, the trial chosen on validation."""

    model: PromptsHolder
    trainable: int
    chosen: str | None = None


@dataclass
class Scores:
    """One method's accuracies per seed: base, new (None: the method cannot score new
    classes) and their harmonic mean."""

    base: list[float] = field(default_factory=list)
    new: list[float | None] = field(default_factory=list)
    trainable: list[int] = field(default_factory=list)
    per_class: int | None = None
    chosen: list[str] = field(default_factory=list)
    """A searched preset: the trial chosen on validation, per seed."""

    @property
    def harmonic(self) -> list[float]:
        pairs = zip(self.base, self.new, strict=True)
        return [2 * b * n / (b + n) if b + n else 0.0 for b, n in pairs if n is not None]


def split_domain(domain: Domain, base: list[str]) -> tuple[Domain, Domain]:
    """The domain as two domains over the same folder, one declaring the `base` labels and
    one the others (same template): their tasks score only their own class names; their
    names keep their frozen features apart in bench/methods/features.py's cache."""
    labels = list(domain.config.labels or [])
    new = [label for label in labels if label not in base]

    def restricted(suffix: str, names: list[str]) -> Domain:
        update = {"name": f"{domain.name}[{suffix}]", "labels": names}
        return Domain(domain.root, domain.config.model_copy(update=update))

    return restricted("base", base), restricted("new", new)


def only(data: Splits, labels: list[str]) -> Splits:
    """`data` restricted to the examples of `labels`."""
    keep = set(labels)
    return {split: [e for e in rows if e.label in keep] for split, rows in data.items()}


def tuned_model(
    method: Method, backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
) -> Tuned | None:
    """What `method` scores with after tuning on `domain`'s train split (epoch chosen on
    its val split), or None where the method has no text side to score new classes with."""
    if method is zero_shot:
        return Tuned(zero_shot_model(backbone, domain, data, seed), 0)
    if isinstance(method, PromptMethod):
        fitted = train_prompts(backbone, domain, data, cfg, seed, method.preset, method.overrides)
        return Tuned(fitted.model, fitted.model.num_trainable())
    if isinstance(method, PromptSearch):
        fitted, extra = method.tuned(backbone, domain, data, cfg, seed)
        chosen = str(extra["chosen"] or "the base config")
        return Tuned(fitted.model, fitted.model.num_trainable(), chosen)
    return None


def accuracy_on_test(model: PromptsHolder, domain: Domain, data: Splits) -> float:
    """`model`'s prompts scored on `domain`'s test split against `domain`'s class names
    (the task swapped in: same prompts, other candidates)."""
    model.task = domain.config.build_task()
    prepared = cached_prepare(model, domain, "test", data["test"])
    return float(evaluate(model, data["test"], prepared=prepared)[model.task.primary_metric])


def class_dependent_parameters(
    backbone: Backbone, method: PromptMethod | PromptSearch, domains: tuple[Domain, Domain]
) -> int:
    """Trainable parameters whose presence or shape differs between the preset built for
    one class list and for the other: what a new class would have nothing trained for (a
    searched preset: its base config; a trial changes sizes, not what a parameter is per)."""
    shapes = [
        {
            name: p.shape
            for name, p in build_prompts(
                backbone, method.preset, d.config.build_task(), **method.overrides
            ).named_parameters()
        }
        for d in domains
    ]
    differ = {
        n for n in shapes[0].keys() | shapes[1].keys() if shapes[0].get(n) != shapes[1].get(n)
    }
    return sum(shapes[0][n].numel() for n in differ if n in shapes[0])


@dataclass
class Measured:
    """What `run` measured and on what."""

    scores: dict[str, Scores]
    base_labels: list[str]
    new_labels: list[str]
    epochs: int
    backbone: str


def run(args: argparse.Namespace) -> Measured:
    """Every method x seed, printed as it ends."""
    found = discover(args.domains_dir, [args.domain])
    if found.errors or args.domain not in found.domains:
        raise SystemExit(
            f"domain {args.domain!r} not usable under {args.domains_dir}: "
            f"{found.errors or 'no such folder'}; pass --domains-dir DIR (the folder that "
            "holds it, its data prepared)"
        )
    domain = found.domains[args.domain]
    if domain.config.task != "classification":
        raise SystemExit(
            f"domain {args.domain!r} has task {domain.config.task!r}; base and new classes "
            "need a classification domain (labels: in domain.yaml)"
        )
    labels = list(domain.config.labels or [])
    base_labels = labels[: len(labels) // 2]
    new_labels = labels[len(labels) // 2 :]
    base_domain, new_domain = split_domain(domain, base_labels)
    data = load_splits(domain, QUICK_SHOTS if args.quick else None)
    base_data, new_data = only(data, base_labels), only(data, new_labels)
    family, _, name = args.backbone.partition(":")
    backbone = load_backbone(family, name or None)
    cfg = TrainConfig(**{**domain.config.train_config(), "progress": False})
    cfg.epochs = 1 if args.quick else args.epochs or cfg.epochs
    registry = methods(args.quick)
    scores: dict[str, Scores] = {}
    for method_name in args.methods.split(","):
        method = registry[method_name]
        row = scores.setdefault(method_name, Scores())
        if isinstance(method, PromptMethod | PromptSearch):
            row.per_class = class_dependent_parameters(backbone, method, (base_domain, new_domain))
        for seed in range(args.seeds):
            cfg.seed = seed
            started = time.perf_counter()
            tuned = tuned_model(method, backbone, base_domain, base_data, cfg, seed)
            if tuned is None:  # a closed-set method: its own base-class run, no new score
                closed = method(backbone, base_domain, base_data, cfg, seed)
                base, new, trainable = closed.metric, None, closed.trainable
            else:
                base = accuracy_on_test(tuned.model, base_domain, base_data)
                new = accuracy_on_test(tuned.model, new_domain, new_data)
                trainable = tuned.trainable
                if tuned.chosen is not None:
                    row.chosen.append(tuned.chosen)
            row.trainable.append(trainable)
            row.base.append(base)
            row.new.append(new)
            print(
                f"{method_name:30s} seed {seed}: base {base:.3f} new "
                f"{'n/a' if new is None else f'{new:.3f}'} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return Measured(scores, base_labels, new_labels, cfg.epochs, str(backbone.identity))


def table(scores: dict[str, Scores]) -> list[str]:
    """One markdown row per method: base, new, harmonic mean (mean ± std over seeds; the
    harmonic mean is taken per seed), trainable parameters (a range where the seeds'
    searches chose different sizes) and class-dependent ones."""
    lines = [
        "| method | base accuracy | new accuracy | harmonic mean | trainable params "
        "| class-dependent params |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in scores.items():
        closed = any(n is None for n in row.new)
        new = "n/a (one output per base class)" if closed else mean_std(row.new)
        harmonic = "n/a" if closed else mean_std(row.harmonic)
        if closed:
            dependent = f"{max(row.trainable):,} (all)"
        else:
            dependent = "0" if row.per_class is None else f"{row.per_class:,}"
        low, high = min(row.trainable), max(row.trainable)
        trainable = f"{low:,}" if low == high else f"{low:,}-{high:,}"
        lines.append(
            f"| {name} | {mean_std(row.base)} | {new} | {harmonic} | {trainable} | {dependent} |"
        )
    return lines


def choices(scores: dict[str, Scores]) -> list[str]:
    """A line per searched row: the trial each seed's search chose on base validation."""
    return [
        f"{name}, the trial chosen on the base classes' validation: "
        + "; ".join(f"seed {i}: {c}" for i, c in enumerate(row.chosen))
        + "."
        for name, row in scores.items()
        if row.chosen
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domain", default="retail", help="a classification domain folder")
    parser.add_argument("--domains-dir", type=Path, default=REPO / "domains")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="default: the domain's tuning.epochs")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated row names")
    parser.add_argument("--backbone", default="shipped", help="family[:name]")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"1 seed, 1 epoch, {QUICK_SHOTS} images per class and split (smoke test)",
    )
    args = parser.parse_args(argv)
    registry = methods()
    usable = [
        n
        for n, m in registry.items()
        if m in (zero_shot, linear_probe) or isinstance(m, PromptMethod | PromptSearch)
    ]
    unknown = [m for m in args.methods.split(",") if m not in usable]
    if unknown:
        parser.error(
            f"--methods: {', '.join(map(repr, unknown))} not scored here; allowed: "
            f"{', '.join(usable)} (zero-shot, the prompt presets, their ablations and the "
            "searched preset, and the linear probe on base classes only)"
        )
    if args.quick:
        args.seeds = 1
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()
    measured = run(args)
    base_labels, new_labels = measured.base_labels, measured.new_labels
    command = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python " + shlex.join(
        ["bench/new_classes.py", *(argv if argv is not None else sys.argv[1:])]
    )
    rows = table(measured.scores)
    shots = f", {QUICK_SHOTS} images per class and split (--quick)" if args.quick else ""
    doc = [
        f"# New classes: tuned on {len(base_labels)} {args.domain} classes, scored on "
        f"{len(new_labels)} it never saw",
        "",
        "Written by `bench/new_classes.py` (the CoCoOp / MaPLe base-to-new protocol). Base "
        f"classes: {', '.join(base_labels)}. New classes: {', '.join(new_labels)}. The "
        "split is the first half of the labels in domain.yaml's order, fixed before any "
        "result was seen. Each method is tuned on the base classes' train images only "
        "(the image centre too), the epoch kept chosen on the base classes' val images; "
        "test is only scored: base test images against the base class names, new test "
        "images against the new class names (the same prompts; the domain's template "
        "filled with the new names), harmonic mean per seed. Mean ± std over "
        f"{args.seeds} seed(s), {measured.epochs} epoch(s){shots}; backbone "
        f"{measured.backbone}.",
        "",
        *rows,
        "",
        *(line for choice in choices(measured.scores) for line in (choice, "")),
        "The linear probe has one output per base class: it cannot score a class it was "
        "not trained on, so its new accuracy is n/a. Class-dependent params: trainable "
        "parameters whose shape changes with the class list (the preset built for the base "
        "and for the new classes, compared); 0 means every trained parameter applies to a "
        "new class name as it does to a base one.",
        "",
        f"Torch threads: {torch.get_num_threads()}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}. Run time: "
        f"{time.perf_counter() - started:.0f} s.",
        "",
        f"Command: `{command}`",
    ]
    print("\n".join(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "new-classes.md").write_text("\n".join(doc) + "\n")
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"wrote {args.out / 'new-classes.md'}")


if __name__ == "__main__":
    main()
