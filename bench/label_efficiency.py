"""Label efficiency: test metric against K labelled training images per class.

    OMP_NUM_THREADS=1 python bench/label_efficiency.py [--domains retail,manufacturing,medical]
        [--shots 1,2,4,8,16] [--draws 3] [--epochs N] [--patience N] [--domains-dir DIR]
        [--out docs] [--name label-efficiency]
    python bench/label_efficiency.py --quick   # smoke test: 1 draw, K = 1 and 2, 1 epoch,
                                               # a tiny random hf-clip (seconds)

Prompts are known to beat a linear probe where few labels exist (CoOp, CoCoOp and MaPLe
report it); this shows where that holds on the demo domains and where it does not. For each
K, each draw is a seeded sample of K training images per class (the task's classes: labels,
(question, answer) pairs, captions); validation and test splits stay whole. A K larger than
some class's training images is skipped, and the report says so. Every method is one of
bench/results.py's (bench/methods/), with the same frozen features computed once per domain
and shared by every method, K and draw: zero-shot, the linear probe from scratch and
zero-shot-initialised (the one stronger on validation, per domain and K, is the reported
probe; both are listed), CLIP-Adapter, `coop` and `mpt` (the preset with the domain's
`tuning:` settings; no search, whose folds a 1-shot split cannot fill). The epoch (the
probe's step) kept is the best on validation; the test split is only scored. Draw n trains
with seed n. Writes docs/label-efficiency.md (the tables, the thread count and the command)
and one plot per domain (docs/label-efficiency-<domain>.png).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from methods.base import Splits, mean_std
from methods.data import DOMAINS, group_key, load_splits
from methods.registry import methods

from flows.domains import Domain, discover
from mpt_core import Example, TrainConfig, load_backbone
from mpt_core.tasks.base import Task

REPO = Path(__file__).resolve().parents[1]
SHOTS = (1, 2, 4, 8, 16)
COMPARED = ("zero-shot", "linear-probe", "linear-probe (zs-init)", "clip-adapter", "coop", "mpt")
PROBES = ("linear-probe", "linear-probe (zs-init)")
"""The two probes; the one with the higher mean validation metric is reported per (domain, K)."""


@dataclass
class Score:
    domain: str
    shots: int
    method: str
    draw: int
    test: float
    val: float | None
    seconds: float


def draw(task: Task, train: list[Example], shots: int, number: int) -> list[Example]:
    """Draw `number` of K = `shots` training examples per class (seeded by both), in the
    split's own order."""
    by_class: dict[str, list[int]] = {}
    for i, example in enumerate(train):
        by_class.setdefault(group_key(task, example), []).append(i)
    rng = random.Random(f"label-efficiency/{number}/{shots}")
    chosen = sorted(i for key in sorted(by_class) for i in rng.sample(by_class[key], shots))
    return [train[i] for i in chosen]


def smallest_class(task: Task, train: list[Example]) -> tuple[str, int]:
    """The class with the fewest training examples, and that count (the largest K)."""
    counts: dict[str, int] = {}
    for example in train:
        key = group_key(task, example)
        counts[key] = counts.get(key, 0) + 1
    key = min(sorted(counts), key=counts.__getitem__)
    return key, counts[key]


def run_domain(
    domain: Domain,
    backbone_spec: str,
    shots: list[int],
    draws: int,
    budget: dict[str, int],
) -> tuple[list[Score], list[str]]:
    """Every (K, draw, method) on one domain, printed as it ends; also the K skipped.
    `budget` overrides the domain's `tuning:` epochs and patience where it names them."""
    family, _, name = backbone_spec.partition(":")
    backbone = load_backbone(family, name or None)
    task = domain.config.build_task()
    data = load_splits(domain, None)
    cls, largest = smallest_class(task, data["train"])
    skipped = [
        f"{domain.name}: K = {k} skipped, class {cls!r} has {largest} training images"
        for k in shots
        if k > largest
    ]
    for line in skipped:
        print(line, flush=True)
    compared = methods()
    metric = task.primary_metric
    scores = []
    for k in (k for k in shots if k <= largest):
        for number in range(draws):
            splits: Splits = {**data, "train": draw(task, data["train"], k, number)}
            cfg = TrainConfig(
                **{**domain.config.train_config(), **budget, "progress": False, "seed": number}
            )
            for method in COMPARED:
                run = compared[method](backbone, domain, splits, cfg, number)
                scores.append(
                    Score(
                        domain.name,
                        k,
                        method,
                        number,
                        run.metric,
                        run.extra.get("val"),
                        run.seconds,
                    )
                )
                print(
                    f"{domain.name:13s} K={k:<2d} draw {number} {method:24s} test {metric} "
                    f"{run.metric:.3f} ({run.seconds:.1f} s)",
                    flush=True,
                )
    return scores, skipped


def reported_probe(scores: list[Score]) -> str:
    """The probe whose mean validation metric over the draws is higher (plain on a tie)."""
    val = {p: statistics.mean(s.val for s in scores if s.method == p) for p in PROBES}
    return max(PROBES, key=lambda p: (val[p], p == PROBES[0]))


def reported(scores: list[Score]) -> dict[tuple[str, int], dict[str, list[float]]]:
    """(domain, K) -> method -> the test metric per draw, with one probe: the one chosen
    on validation."""
    out: dict[tuple[str, int], dict[str, list[float]]] = {}
    for key in dict.fromkeys((s.domain, s.shots) for s in scores):
        mine = [s for s in scores if (s.domain, s.shots) == key]
        probe = reported_probe(mine)
        out[key] = {}
        for method in COMPARED:
            if method in PROBES and method != probe:
                continue
            out[key][method] = [s.test for s in mine if s.method == method]
    return out


def tables(scores: list[Score], metrics: dict[str, str]) -> list[str]:
    """The main table (domain, K, method, test mean ± std over draws), the same figures one
    column per method, and the probe choice."""
    rows = reported(scores)
    lines = [
        "| domain | K | method | test metric (mean ± std over draws) |",
        "|---|---:|---|---|",
    ]
    for (domain, k), per_method in rows.items():
        for method, values in per_method.items():
            lines.append(f"| {domain} | {k} | {method} | {mean_std(values)} |")
    lines += [
        "",
        "At a glance (test, mean over draws; the probe is the one chosen on validation):",
        "",
    ]
    shown = ("zero-shot", "linear probe", "clip-adapter", "coop", "mpt")
    lines += [
        "| domain (metric) | K | " + " | ".join(shown) + " | best | mpt - best other |",
        "|---|---:|" + "---:|" * len(shown) + "---|---:|",
    ]
    for (domain, k), per_method in rows.items():
        means = {
            ("linear probe" if m in PROBES else m): statistics.mean(v)
            for m, v in per_method.items()
        }
        best = max(means, key=means.__getitem__)
        gap = means["mpt"] - max(v for m, v in means.items() if m != "mpt")
        cells = " | ".join(f"{means[m]:.3f}" for m in shown)
        lines.append(f"| {domain} ({metrics[domain]}) | {k} | {cells} | {best} | {gap:+.3f} |")
    lines += [
        "",
        "Linear probe, plain and zero-shot-initialised (validation chooses; mean over draws):",
        "",
        "| domain | K | val plain | val zs-init | test plain | test zs-init | reported |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for domain, k in rows:
        mine = [s for s in scores if (s.domain, s.shots) == (domain, k)]

        def mean(method: str, split: str, mine: list[Score] = mine) -> float:
            return statistics.mean(getattr(s, split) for s in mine if s.method == method)

        lines.append(
            f"| {domain} | {k} | {mean(PROBES[0], 'val'):.3f} | {mean(PROBES[1], 'val'):.3f} "
            f"| {mean(PROBES[0], 'test'):.3f} | {mean(PROBES[1], 'test'):.3f} "
            f"| {reported_probe(mine)} |"
        )
    return lines


def plot(domain: str, metric: str, scores: list[Score], out: Path, name: str) -> Path:
    """Test metric against K (log scale), one line per reported method, ± std bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {k: v for (d, k), v in reported(scores).items() if d == domain}
    series: dict[str, list[tuple[int, list[float]]]] = {}
    for k, per_method in rows.items():
        for method, values in per_method.items():  # the probe chosen may differ per K
            series.setdefault("linear probe" if method in PROBES else method, []).append(
                (k, values)
            )
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in series.items():
        ax.errorbar(
            [k for k, _ in points],
            [statistics.mean(v) for _, v in points],
            yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(rows), [str(k) for k in sorted(rows)])
    ax.set_xlabel("labelled training images per class (K)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{domain}: label efficiency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{name}-{domain}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 draw, K = 1,2, 1 epoch, backbone hf-clip:tiny"
    )
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--shots", default=",".join(map(str, SHOTS)), help="the K, comma-separated")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="default: each domain's tuning.epochs")
    parser.add_argument(
        "--patience",
        type=int,
        help="epochs without a better validation metric before stopping, 0 = never "
        "(default: each domain's tuning.patience)",
    )
    parser.add_argument(
        "--backbone", help="family[:name] (default: shipped; --quick: hf-clip:tiny)"
    )
    parser.add_argument("--domains-dir", type=Path, default=REPO / "domains")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--name",
        default="label-efficiency",
        help="the report is NAME.md, the plots NAME-DOMAIN.png",
    )
    args = parser.parse_args(argv)
    shots = [1, 2] if args.quick else [int(k) for k in args.shots.split(",")]
    draws = 1 if args.quick else args.draws
    overrides = {"epochs": 1 if args.quick else args.epochs, "patience": args.patience}
    budget = {k: v for k, v in overrides.items() if v is not None}
    backbone = args.backbone or ("hf-clip:tiny" if args.quick else "shipped")
    if min(shots) < 1 or draws < 1:
        parser.error(f"--shots {args.shots!r} and --draws {args.draws}: each at least 1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    names = args.domains.split(",")
    found = discover(args.domains_dir, names)
    missing = [n for n in names if n not in found.domains]
    if found.errors or missing:
        raise SystemExit(
            f"domains {missing} not usable under {args.domains_dir}: {found.errors}; prepare "
            "them (`mpt domain prepare NAME`) or point --domains-dir at prepared ones"
        )
    started = time.perf_counter()
    scores, skipped, metrics, budgets = [], [], {}, []
    for name in names:
        domain = found.domains[name]
        mine, skip = run_domain(domain, backbone, shots, draws, budget)
        scores += mine
        skipped += skip
        metrics[name] = domain.config.build_task().primary_metric
        cfg = {**domain.config.train_config(), **budget}
        budgets.append(
            f"{name}: {cfg['epochs']} epochs, patience {cfg['patience']}, batch {cfg['batch_size']}"
        )
    command = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python " + shlex.join(
        ["bench/label_efficiency.py", *(argv if argv is not None else sys.argv[1:])]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = [
        "# Label efficiency: test metric against labelled images per class",
        "",
        f"command: {command}",
        "",
        f"torch threads: {torch.get_num_threads()}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, niceness {os.nice(0)}, torch "
        f"{torch.__version__}; backbone {backbone}. K = {', '.join(map(str, shots))} labelled "
        f"training images per class, {draws} draw(s) each (draw n: a seeded sample of K per "
        "class, trained with seed n); validation and test splits whole; the epoch (the "
        "probe's step) kept is the best on validation, the test split only scored. Budget "
        f"of the trained methods: {'; '.join(budgets)} (patience 0 = no early stopping).",
        "",
        *(f"- {line}" for line in skipped or ["no K skipped"]),
        "",
        *tables(scores, metrics),
        "",
        *(f"![{name}]({args.name}-{name}.png)" for name in names),
        "",
        f"Total run time: {time.perf_counter() - started:.0f} s.",
    ]
    for name in names:
        plot(name, metrics[name], [s for s in scores if s.domain == name], args.out, args.name)
    report = args.out / f"{args.name}.md"
    report.write_text("\n".join(doc) + "\n")
    print("\n".join(doc))
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
