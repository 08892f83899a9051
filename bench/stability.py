"""How far retrains that differ by one training image land apart, per `TrainConfig.final`.

    OMP_NUM_THREADS=1 python bench/stability.py [--domain digits] [--seeds 0,1] \
        [--variants 4] [--finals best,swa,refit] [--backbone shipped] [--keep DIR]

A retrain is only worth reviewing if its test metric reflects the data, not the luck of the
fit (issue 20). For each seed, N variants of the training data are fitted: the first is the
domain's own, every other one differs from it by one training image (a seeded index, the
image mirrored left-right). Each variant is fitted once per `final` mode ("best": the epoch
with the best validation metric, early stopping included; "swa": the average of the last
half of the epochs; "refit": the epoch count chosen on k folds of train + val, then one fit
on all of them; `--finals`) and scored on the untouched test split. The markdown table gives, per
mode: the mean validation and test metric, the test spread (max - min over the variants of
one seed, the largest over seeds) and the standard deviation over seeds of the test metric on
the unchanged data.

`--domain digits` (the default) is a 10-class domain built from scikit-learn's bundled
digits (8 x 8 pixels scaled to 64 x 64; 16 train, 8 val and 20 test images per class by
default) with the config a 4-trial search chose for it; any other name is a domain folder
under `--domains-dir`, fitted with its own `tuning:` settings.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from methods.data import load_splits

from flows.domains import Domain, discover
from mpt_core import Example, TrainConfig, build_prompts, evaluate, fit, load_backbone
from mpt_core.featurestore import FeatureStore

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGITS_YAML = """\
task: classification
labels: [{labels}]
template: "a photo of the digit {{}}."
prompts:
  preset: mpt
  overrides: {{text_tokens: 4, fusion: false, image_residual: 2.0}}
tuning: {{lr: {lr}, epochs: {epochs}, batch_size: 16, patience: 5}}
"""
"""The digits domain, with the config a 4-trial search on 3 folds chose for it (issue 20)."""


def build_digits(
    root: Path, per_class: tuple[int, int, int], epochs: int, lr: float = 3.06e-3
) -> Path:
    """A `digits` domain folder under `root`: per class, (train, val, test) images drawn
    without overlap by a fixed seed; returns `root`."""
    from sklearn.datasets import load_digits

    folder = root / "digits"
    (folder / "data" / "images").mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(0)
    rows = []
    for label, name in enumerate(DIGITS):
        chosen = rng.permutation(np.flatnonzero(digits.target == label))[: sum(per_class)]
        splits = ["train"] * per_class[0] + ["val"] * per_class[1] + ["test"] * per_class[2]
        for index, split in zip(chosen, splits, strict=True):
            pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
            image = Image.fromarray(pixels, "L").resize((64, 64), Image.BILINEAR).convert("RGB")
            path = f"images/{len(rows):05d}.png"
            image.save(folder / "data" / path)
            rows.append((path, split, name))
    with open(folder / "data" / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "split", "label"])
        writer.writerows(rows)
    (folder / "domain.yaml").write_text(
        DIGITS_YAML.format(labels=", ".join(DIGITS), epochs=epochs, lr=lr)
    )
    return root


def variant(train: list[Example], number: int) -> list[Example]:
    """Variant `number` of the training examples: 0 = as they are; any other differs from
    them by one image (at an index seeded by `number`), mirrored left-right."""
    if number == 0:
        return list(train)
    index = random.Random(f"change/{number}").randrange(len(train))
    changed = list(train)
    changed[index] = changed[index].replace(image=ImageOps.mirror(changed[index].image))
    return changed


@dataclass
class Fit:
    final: str
    seed: int
    variant: int
    val: float
    test: float
    seconds: float


def run(
    domain: Domain,
    finals: list[str],
    seeds: list[int],
    variants: int,
    backbone_spec: str,
    store: FeatureStore,
) -> list[Fit]:
    """Every (final, seed, variant) fit of `domain`, printed as it ends."""
    family, _, name = backbone_spec.partition(":")
    backbone = load_backbone(family, name or None)
    spec = domain.config.tune_spec()
    data = load_splits(domain, None)
    metric = spec.build_task().primary_metric
    fits = []
    for final in finals:
        for seed in seeds:
            for number in range(variants):
                model = build_prompts(
                    backbone, spec.preset, spec.build_task(), seed=seed, **spec.overrides
                )
                config = TrainConfig(
                    **{**spec.train.to_dict(), "seed": seed, "final": final, "progress": False}
                )
                started = time.perf_counter()
                result = fit(
                    model, variant(data["train"], number), data["val"], config, store=store
                )
                test = float(evaluate(model, data["test"], store=store)[metric])
                fits.append(
                    Fit(
                        final,
                        seed,
                        number,
                        result.best_value or 0.0,
                        test,
                        time.perf_counter() - started,
                    )
                )
                print(
                    f"final={final} seed={seed} variant={number}: val {metric} "
                    f"{fits[-1].val:.3f}, test {test:.3f} ({fits[-1].seconds:.0f} s, "
                    f"{result.epochs_run} epochs)",
                    flush=True,
                )
    return fits


def table(fits: list[Fit], metric: str) -> list[str]:
    """The markdown table, one row per `final` mode."""
    lines = [
        f"| final | fits | val {metric} (mean) | test {metric} (mean) | test spread "
        "(max - min over variants, worst seed) | test std over seeds (unchanged data) "
        "| s / fit |",
        "|---|---|---|---|---|---|---|",
    ]
    for final in dict.fromkeys(f.final for f in fits):
        mine = [f for f in fits if f.final == final]
        seeds = sorted({f.seed for f in mine})
        spreads = [
            max(f.test for f in mine if f.seed == s) - min(f.test for f in mine if f.seed == s)
            for s in seeds
        ]
        unchanged = [f.test for f in mine if f.variant == 0]
        std = f"{statistics.stdev(unchanged):.3f}" if len(unchanged) > 1 else "n/a (one seed)"
        lines.append(
            f"| {final} | {len(mine)} | {statistics.mean(f.val for f in mine):.3f} "
            f"| {statistics.mean(f.test for f in mine):.3f} | {max(spreads):.3f} | {std} "
            f"| {statistics.mean(f.seconds for f in mine):.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domain", default="digits")
    parser.add_argument("--domains-dir", type=Path, default=REPO / "domains")
    parser.add_argument("--seeds", default="0,1", help="comma-separated")
    parser.add_argument("--variants", type=int, default=4, help="the unchanged data included")
    parser.add_argument("--finals", default="best,swa", help="TrainConfig.final modes")
    parser.add_argument("--backbone", default="shipped", help="family[:name]")
    parser.add_argument(
        "--per-class", default="16,8,20", help="digits: train,val,test images per class"
    )
    parser.add_argument("--epochs", type=int, default=30, help="digits: the epoch budget")
    parser.add_argument("--lr", type=float, default=3.06e-3, help="digits: the peak learning rate")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.variants < 2:
        parser.error(f"--variants {args.variants}: a spread needs at least 2 (the unchanged data)")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work = args.keep or Path(tempfile.mkdtemp(prefix="mpt-stability-"))
    work.mkdir(parents=True, exist_ok=True)
    root = args.domains_dir
    if args.domain == "digits":
        per_class = tuple(int(n) for n in args.per_class.split(","))
        if len(per_class) != 3 or min(per_class) < 1:
            parser.error(f"--per-class {args.per_class!r}: three counts >= 1 (train,val,test)")
        root = build_digits(work / "domains", per_class, args.epochs, args.lr)
    found = discover(root, [args.domain])
    if found.errors or args.domain not in found.domains:
        raise SystemExit(f"domain {args.domain!r} not usable under {root}: {found.errors}")
    domain = found.domains[args.domain]
    finals = args.finals.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    fits = run(domain, finals, seeds, args.variants, args.backbone, FeatureStore(work / "features"))
    metric = domain.config.build_task().primary_metric
    print()
    print("\n".join(table(fits, metric)))
    print()
    print(f"torch threads: {torch.get_num_threads()}")
    print(
        f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
        + shlex.join(["bench/stability.py", *(argv if argv is not None else sys.argv[1:])])
    )
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
