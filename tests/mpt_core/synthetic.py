"""A small learnable synthetic task: a coloured square in a class-specific corner."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mpt_core import ClassificationTask, Example, RetrievalTask, VQATask
from mpt_core.tasks.base import Task

CLASSES = ("red", "green", "blue")
_COLOUR = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}
_CORNER = {"red": (0, 0), "green": (0, 1), "blue": (1, 1)}


def image(name: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    half = size // 2
    r, c = _CORNER[name]
    pixels[r * half : (r + 1) * half, c * half : (c + 1) * half] = _COLOUR[name]
    return Image.fromarray(pixels)


def examples(task: str, per_class: int = 4, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for name in CLASSES:
        for _ in range(per_class):
            img = image(name, rng)
            out.append(
                {
                    "classification": Example(img, label=name),
                    "retrieval": Example(img, caption=f"a {name} square"),
                    "vqa": Example(img, question="which colour is the square?", answer=name),
                }[task]
            )
    if task == "vqa":  # a second question with its own answer set
        out += [
            Example(
                image(n, rng), question="is the square red?", answer="yes" if n == "red" else "no"
            )
            for n in CLASSES
        ]
    return out


def make_task(task: str) -> Task:
    return {
        "classification": lambda: ClassificationTask(CLASSES),
        "retrieval": RetrievalTask,
        "vqa": lambda: VQATask(
            {"which colour is the square?": list(CLASSES), "is the square red?": ["yes", "no"]}
        ),
    }[task]()
