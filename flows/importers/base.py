"""What every import format gives: records (an image, its example fields, the source's split
if it has one, and the attributes a `--group-by` may name), read from a `Source`.

A format knows its layout (class folders, COCO JSON, VQA JSON, Parquet columns) and which
example fields its records carry (a label, a caption, a question and its answers); it never
names a task. Which task the domain trains, what it declares and how rows become unique
come from the task registry (`plan`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .source import Source

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)
"""The files an image folder's walk takes as images (torchvision's ImageFolder list)."""
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "restval": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
"""Split names as sources write them (Hugging Face `validation`, Karpathy's `restval`)."""
_SPLIT_TOKEN = re.compile(r"(?<![a-z])(" + "|".join(sorted(SPLIT_NAMES, key=len)[::-1]) + r")")


def split_of(name: str) -> str | None:
    """The split a name says (`train`, `captions_val2017.json`, `test-00000-of-00001`):
    a split word not preceded by a letter; None when it says none or several."""
    found = {SPLIT_NAMES[m] for m in _SPLIT_TOKEN.findall(name.lower())}
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class Record:
    """One row an import found: an image and what is known of it."""

    image: str
    """The image's path relative to SOURCE; for bytes embedded in a table, a name that
    says where they came from (`train-00000.parquet/000017.png`)."""
    fields: dict[str, str]
    """Example fields (label, caption, question, answer, ...)."""
    where: str
    """The record in words, for errors: the file and the record's id or row."""
    split: str | None = None
    """The source's split (train, val, test), when it has one."""
    attributes: dict[str, str] = field(default_factory=dict)
    """Other values of the record (a Parquet row's columns, a COCO image's keys): what
    `--group-by` may name."""
    data: bytes | None = None
    """Image bytes embedded in the source (Parquet); None: read `image` from SOURCE."""


@dataclass(frozen=True)
class FormatOptions:
    """The format-specific options of `mpt domain import` (each format reads its own)."""

    images: str | None = None
    """coco-captions, vqa: the folder (in SOURCE) that image file names are relative to."""
    image_pattern: str | None = None
    """vqa: the file of an image id, e.g. `train2014/COCO_train2014_{image_id:012d}.jpg`."""
    image_column: str | None = None
    """parquet: the column holding the images ({bytes, path} structs or binary)."""
    split_column: str | None = None
    """parquet: a column holding each row's split."""
    columns: dict[str, str] = field(default_factory=dict)
    """parquet: example field -> the column holding it, where the names differ."""


OPTION_FLAGS = {
    "images": "--images",
    "image_pattern": "--image-pattern",
    "image_column": "--image-column",
    "split_column": "--split-column",
    "columns": "--column",
}


@dataclass(frozen=True)
class ImportFormat:
    """An import format, registered by name in `flows.importers.FORMATS`."""

    name: str
    help: str
    options: tuple[str, ...]
    """The `FormatOptions` fields it reads; giving another is an error."""
    read: Callable[[Source, FormatOptions], Iterator[Record]]
    """The records of SOURCE, in a stable order; ImportFailed naming the file and record."""
