"""Examples handed to tasks and the trainer, and the fields tasks declare for them."""

from __future__ import annotations

import importlib
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ConfigError, DataError

ImageSource = Image.Image | str | Path

SPLITS = ("train", "val", "test")
"""The splits a domain's examples come in: `train` fits the prompts, `val` picks the best
epoch and the search's trial, `test` gives the metrics a version is judged by."""


@dataclass(frozen=True)
class ExampleField:
    """A value an example may carry besides its image. Tasks declare the fields they read
    (`TaskContract`), and everything else derives from the declarations: which keyword
    arguments `Example` takes, the metadata columns a domain's table may have, what a
    prediction request may send and what stored predictions keep."""

    name: str
    help: str
    """One line for a reader of a domain.yaml, a request schema or a table header."""
    many: bool = False
    """A list of texts (retrieval's candidate captions) instead of one text."""
    form_name: str | None = None
    """The name a multipart form repeats for each value of a `many` field (default: name)."""

    def __post_init__(self) -> None:
        if not _FIELD_NAME.match(self.name) or self.name == "image":
            raise ConfigError(
                f"example field name {self.name!r} is invalid: lower case letters, digits and "
                "'_', starting with a letter, and not 'image'"
            )

    @property
    def form_field(self) -> str:
        return self.form_name or self.name


_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FIELDS: dict[str, ExampleField] = {}
"""Every example field a registered task declared, by name."""


def known_field(name: str) -> bool:
    """Whether some task declares `name`. The built-in tasks are loaded (their module
    imported by name, as a plugin registry is) the first time a name is not yet known, so
    examples can be built before anything imported the task registry."""
    global _tasks_loaded
    if name not in FIELDS and not _tasks_loaded:
        _tasks_loaded = True
        importlib.import_module(f"{__package__}.tasks")
    return name in FIELDS


_tasks_loaded = False


def declare_field(field: ExampleField) -> ExampleField:
    """Make `field` known to `Example` (tasks call it for the fields they read). Declaring
    the same field twice is fine; two different declarations of one name are refused."""
    known = FIELDS.get(field.name)
    if known is not None and known != field:
        raise ConfigError(
            f"example field {field.name!r} is declared twice, differently: {known} and {field}"
        )
    FIELDS[field.name] = field
    return field


class Example:
    """One image and the values of the fields its task reads, as keyword arguments:

    >>> Example(img, label="sneaker")                            # classification
    >>> Example(img, caption="a red boot")                       # retrieval, captioning
    >>> Example(img, question="Is there a defect?", answer="no") # vqa, vqa-open

    Any field a registered task declares (`FIELDS`) is accepted; reading a declared field
    the example does not carry gives None (`example.question`), reading anything else is an
    AttributeError. Values of `None` are left out; a `many` field's values become a tuple.
    Examples are immutable and compare by image and values.
    """

    __slots__ = ("_values", "image")

    def __init__(self, image: ImageSource, **values: Any) -> None:
        unknown = sorted(k for k in values if not known_field(k))
        if unknown:
            raise TypeError(
                f"Example got unknown field(s) {unknown}; the registered tasks declare: "
                f"{', '.join(sorted(FIELDS)) or '(none)'}"
            )
        kept = {
            k: tuple(v) if FIELDS[k].many and not isinstance(v, str) else v
            for k, v in values.items()
            if v is not None
        }
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "_values", kept)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and known_field(name):
            return self._values.get(name)
        raise AttributeError(
            f"Example has no field {name!r}; declared fields: {', '.join(sorted(FIELDS))}"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Example is immutable; use example.replace(...)")

    @property
    def fields(self) -> dict[str, Any]:
        """The values this example carries (a copy), by field name."""
        return dict(self._values)

    def get(self, name: str) -> Any:
        """The value of field `name`, or None when this example does not carry it."""
        return self._values.get(name)

    def replace(self, **changes: Any) -> Example:
        """A copy with some values changed (None removes a value); `image` too."""
        image = changes.pop("image", self.image)
        return Example(image, **{**self._values, **changes})

    def _key(self) -> tuple:
        return (self.image, tuple(sorted(self._values.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        values = "".join(f", {k}={v!r}" for k, v in self._values.items())
        return f"Example({self.image!r}{values})"

    def __reduce__(self) -> tuple:
        return (_rebuild, (self.image, self._values))


def _rebuild(image: ImageSource, values: dict[str, Any]) -> Example:
    return Example(image, **values)


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
        value = example.get(field)
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
