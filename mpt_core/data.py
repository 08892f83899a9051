"""Examples handed to tasks and the trainer."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError

ImageSource = Image.Image | str | Path

SPLITS = ("train", "val", "test")
"""The splits a domain's examples come in: `train` fits the prompts, `val` picks the best
epoch and the search's trial, `test` gives the metrics a version is judged by."""


@dataclass(frozen=True)
class Example:
    """One image and its target; which fields matter depends on the task.

    classification: `label`; retrieval and captioning: `caption`; vqa and vqa-open:
    `question` and `answer` (vqa-open: optionally `question_type`, which groups its
    per-question-type accuracy). At prediction time a retrieval example may carry
    `candidates`: the captions to rank for this image (default: the captions of the
    examples predicted with it).
    """

    image: ImageSource
    label: str | None = None
    caption: str | None = None
    question: str | None = None
    answer: str | None = None
    question_type: str | None = None
    candidates: tuple[str, ...] | None = None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with high-bit-depth grayscale scaled to 8 bits first: PIL's own convert clips
    16-bit values at 255, which turns a 16-bit PNG (medical, scientific) nearly white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        low = 0.0 if image.mode.startswith("I;16") else min(float(values.min()), 0.0)
        scaled = np.clip((values - low) / (top - low) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(scaled, mode="L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low if high > low else 1.0) * 255.0 + 0.5
        image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def load_image(source: ImageSource) -> Image.Image:
    """An RGB PIL image from a PIL image or a file path."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    try:
        with Image.open(source) as image:
            return to_rgb(image)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read image {source}: {exc}") from exc


def require(examples: Sequence[Example], field: str, task: str) -> list[str]:
    """The `field` of every example, or a DataError naming the first example without it."""
    values = []
    for index, example in enumerate(examples):
        value = getattr(example, field)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"example {index}: the {task} task needs a non-empty {field!r}; got {value!r}",
                index=index,
                field=field,
            )
        values.append(value)
    return values


def group_rows(
    keys: Sequence[Hashable], rows: Sequence[int] | None = None
) -> dict[Hashable, list[int]]:
    """key -> the rows with that key, in first-seen order; `rows[i]` is the row of
    `keys[i]` (default: the index i)."""
    groups: dict[Hashable, list[int]] = {}
    for row, key in zip(range(len(keys)) if rows is None else rows, keys, strict=True):
        groups.setdefault(key, []).append(row)
    return groups
