"""Quickstart: tune `mpt` prompts for three Fashion-MNIST classes on the shipped backbone,
save them, reload them and predict. Runs offline in about a minute on 2 CPU cores.

    python examples/quickstart.py [--out out/quickstart] [--preset mpt] [--classes all]

`--classes all` tunes the ten classes of the demo's retail domain, in its order, so the
artifact can be registered under retail (the README's registry walk-through; about 5
minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import time

from mpt_core import (
    ClassificationTask,
    TrainConfig,
    build_prompts,
    evaluate,
    fit,
    load_backbone,
    load_prompts,
    save_prompts,
)
from mpt_core.samples import FASHION_MNIST_CLASSES, fashion_mnist

CLASSES = ("T-shirt/top", "trouser", "sneaker")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="out/quickstart", help="where the prompt artifact goes")
    parser.add_argument("--preset", default="mpt", help="coop | vpt | maple | mpt")
    parser.add_argument("--shots", type=int, default=16, help="training images per class")
    parser.add_argument(
        "--classes",
        choices=["three", "all"],
        default="three",
        help=f"three: {', '.join(CLASSES)}; all: the ten Fashion-MNIST classes (retail's)",
    )
    args = parser.parse_args()
    classes = CLASSES if args.classes == "three" else FASHION_MNIST_CLASSES

    started = time.perf_counter()
    backbone = load_backbone("shipped")  # frozen, offline, loaded once per process
    print(f"backbone {backbone.identity}")
    train = fashion_mnist("train", args.shots, classes, seed=0)
    val = fashion_mnist("train", 8, classes, seed=1)
    test = fashion_mnist("test", 50, classes, seed=0)

    model = build_prompts(backbone, args.preset, ClassificationTask(classes))
    print(
        f"{args.preset}: {model.num_trainable():,} trainable parameters "
        f"({model.trainable_fraction():.3%} of the backbone)"
    )
    model.calibrate_center(model.prepare_images([e.image for e in train]))
    print(f"zero-shot test accuracy: {evaluate(model, test)['accuracy']:.3f}")

    result = fit(model, train, val, TrainConfig(epochs=15, batch_size=16))
    metrics = evaluate(model, test)
    print(
        f"tuned test accuracy:     {metrics['accuracy']:.3f} "
        f"(best val {result.best_value:.3f} at epoch {result.best_epoch}, {result.seconds:.1f}s)"
    )
    print("per class:", {k: round(v, 3) for k, v in metrics["per_class_accuracy"].items()})

    save_prompts(model, args.out)
    reloaded = load_prompts(args.out, backbone)
    print(
        f"saved to {args.out}; reloaded predictions for {len(test[::30])} test images:",
        reloaded.predict(test[::30]),
        "truth:",
        [e.label for e in test[::30]],
    )
    print(f"done in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
