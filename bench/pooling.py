"""Visual prompts on the CNN tower: learnable pooling queries vs global average pooling.

    python bench/pooling.py [--seeds 3] [--epochs 15]

On the shipped backbone, for Fashion-MNIST (10 classes) and the textile set (nominal /
local / global defect), 16 shots per class, 3 draws: zero-shot, `coop` (text prompts,
average pooling), `coop+queries` (the same text prompts + 4 pooling queries, no coupling),
`vpt` (queries only) and `mpt`. Hyper-parameters are fixed and the best epoch is chosen on
validation; the test split is only scored.
"""

from __future__ import annotations

import argparse
import statistics
import time

from mpt_core import ClassificationTask, TrainConfig, build_prompts, evaluate, fit, load_backbone
from mpt_core.samples import FASHION_MNIST_CLASSES, TEXTILE_CLASSES, fashion_mnist, textile

VARIANTS = {
    "zero-shot": ("coop", {}),
    "coop (avg pool)": ("coop", {}),
    "coop+queries": ("coop", {"vision_tokens": 4, "vision_depth": 1}),
    "vpt (queries)": ("vpt", {}),
    "mpt": ("mpt", {}),
}


def datasets(seed: int):
    yield (
        "fashion-mnist",
        FASHION_MNIST_CLASSES,
        (
            fashion_mnist("train", 16, seed=seed),
            fashion_mnist("train", 8, seed=seed + 100),
            fashion_mnist("test", 50, seed=seed),
        ),
    )
    yield "textile", tuple(TEXTILE_CLASSES.values()), textile((16, 8, 100), seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    backbone = load_backbone("shipped")
    scores: dict[tuple[str, str], list[float]] = {}
    started = time.perf_counter()
    for seed in range(args.seeds):
        for name, classes, (train, val, test) in datasets(seed):
            for variant, (preset, overrides) in VARIANTS.items():
                model = build_prompts(
                    backbone, preset, ClassificationTask(classes), seed=seed, **overrides
                )
                if variant == "zero-shot":
                    model.calibrate_center(model.prepare_images([e.image for e in train]))
                else:
                    fit(
                        model,
                        train,
                        val,
                        TrainConfig(epochs=args.epochs, batch_size=16, seed=seed, progress=False),
                    )
                acc = evaluate(model, test)["accuracy"]
                scores.setdefault((name, variant), []).append(acc)
                print(f"seed {seed} {name:13s} {variant:16s} {acc:.3f}", flush=True)
    print(f"\n{args.seeds} draws, {args.epochs} epochs, {time.perf_counter() - started:.0f}s\n")
    print("| dataset | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---:|" * len(VARIANTS))
    for name in ("fashion-mnist", "textile"):
        cells = []
        for variant in VARIANTS:
            vals = scores[(name, variant)]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
