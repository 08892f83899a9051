"""A small learnable synthetic data set: a coloured square in a class-specific corner.

Which examples an image gives and the task over the classes come from each registered
task's own `toy` (`Task.toy`), so every task, including one registered later, gets data
without a fixture written for it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mpt_core import TASKS, Example
from mpt_core.tasks.base import Task, Toy

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


def toy(task: str) -> Toy:
    return TASKS.get(task).toy(CLASSES)


def examples(task: str, per_class: int = 4, seed: int = 0) -> list[Example]:
    """`per_class` images of each colour, each giving the rows the task's toy makes."""
    rng = np.random.default_rng(seed)
    rows = toy(task).rows
    return [
        row for name in CLASSES for _ in range(per_class) for row in rows(name, image(name, rng))
    ]


def make_task(task: str) -> Task:
    return toy(task).task
