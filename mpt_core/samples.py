"""Small real datasets that ship in system packages, for demos, tests and benchmarks."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .data import Example

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(
    split: str = "test",
    per_class: int = 16,
    classes: Sequence[str] = FASHION_MNIST_CLASSES,
    seed: int = 0,
    root: Path = FASHION_MNIST_DIR,
) -> list[Example]:
    """`per_class` seeded random Fashion-MNIST images of each of `classes` from `split`
    (train | test), from Debian's `dataset-fashion-mnist` package."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"{images_path} not found: install Fashion-MNIST with "
            "`apt-get install dataset-fashion-mnist` (as root)"
        )
    images = _read_idx(images_path)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    out = []
    for name in classes:
        index = FASHION_MNIST_CLASSES.index(name)
        chosen = rng.choice(np.flatnonzero(labels == index), size=per_class, replace=False)
        out += [
            Example(Image.fromarray(images[i]).convert("RGB"), label=name) for i in sorted(chosen)
        ]
    return out


TEXTILE_CLASSES = {"nominal": "nominal", "local": "local defect", "global": "global defect"}


def textile(
    per_class: tuple[int, int, int] = (16, 8, 50), seed: int = 0
) -> tuple[list[Example], list[Example], list[Example]]:
    """Disjoint seeded (train, val, test) draws of `per_class` textile images per class from
    PyPI `conformal-clip-data` (simulated fabric: nominal, local defect, global defect)."""
    try:
        from conformal_clip_data import textile_simulated_root
    except ImportError as exc:
        raise ImportError("textile images come from `pip install conformal-clip-data`") from exc
    rng = np.random.default_rng(seed)
    splits: tuple[list[Example], ...] = ([], [], [])
    for folder, label in TEXTILE_CLASSES.items():
        files = sorted((textile_simulated_root() / folder).glob("*.jpg"))
        chosen = rng.permutation(len(files))[: sum(per_class)]
        start = 0
        for split, n in zip(splits, per_class, strict=True):
            split += [Example(files[i], label=label) for i in sorted(chosen[start : start + n])]
            start += n
    return splits
