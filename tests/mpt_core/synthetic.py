"""A small learnable synthetic task: a coloured square in a class-specific corner."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mpt_core import (
    CaptioningTask,
    ClassificationTask,
    Example,
    OpenVQATask,
    RetrievalTask,
    VQATask,
)
from mpt_core.tasks.base import Task

CLASSES = ("red", "green", "blue")
_COLOUR = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}
_CORNER = {"red": (0, 0), "green": (0, 1), "blue": (1, 1)}
COLOUR_QUESTION = "which colour is the square?"


def image(name: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    half = size // 2
    r, c = _CORNER[name]
    pixels[r * half : (r + 1) * half, c * half : (c + 1) * half] = _COLOUR[name]
    return Image.fromarray(pixels)


def _rows(task: str, name: str, img: Image.Image) -> list[Example]:
    return {
        "classification": [Example(img, label=name)],
        "retrieval": [Example(img, caption=f"a {name} square")],
        "vqa": [Example(img, question=COLOUR_QUESTION, answer=name)],
        # two reference captions per image
        "captioning": [
            Example(img, caption=f"a {name} square"),
            Example(img, caption=f"the square is {name}"),
        ],
        "vqa-open": [Example(img, question=COLOUR_QUESTION, answer=name)],
    }[task]


def examples(task: str, per_class: int = 4, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = [
        row
        for name in CLASSES
        for _ in range(per_class)
        for row in _rows(task, name, image(name, rng))
    ]
    if task in ("vqa", "vqa-open"):  # a second question with its own answers
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
            {COLOUR_QUESTION: list(CLASSES), "is the square red?": ["yes", "no"]}
        ),
        "captioning": lambda: CaptioningTask(max_new_tokens=12),
        "vqa-open": lambda: OpenVQATask(max_new_tokens=6),
    }[task]()
