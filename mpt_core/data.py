"""Examples handed to tasks and the trainer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .errors import DataError

ImageSource = Image.Image | str | Path


@dataclass(frozen=True)
class Example:
    """One image and its target; which fields matter depends on the task.

    classification: `label`; retrieval and captioning: `caption`; vqa and vqa-open:
    `question` and `answer` (vqa-open: optionally `question_type`, which groups its
    per-question-type accuracy).
    """

    image: ImageSource
    label: str | None = None
    caption: str | None = None
    question: str | None = None
    answer: str | None = None
    question_type: str | None = None


def load_image(source: ImageSource) -> Image.Image:
    """An RGB PIL image from a PIL image or a file path."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read image {source}: {exc}") from exc


def require(examples: Sequence[Example], field: str, task: str) -> list[str]:
    """The `field` of every example, or a DataError naming the first example without it."""
    values = []
    for index, example in enumerate(examples):
        value = getattr(example, field)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"example {index}: the {task} task needs a non-empty {field!r}; got {value!r}"
            )
        values.append(value)
    return values
