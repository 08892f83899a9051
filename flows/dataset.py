"""The one reader of a domain's metadata table: validated DataFrame -> rows -> examples.

Validation reads the table (`flows.validation.table.read_table`, the only CSV reader) and
approves it; `rows_from_table` turns that same DataFrame into the rows a tuning job
trains on. A worker that materialises the data version from the DVC remote reads the same
bytes through the same two functions, and `rows_digest` lets it prove it got the rows the
driver validated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mpt_core.data import SPLITS, Example
from mpt_core.errors import DataError

from .validation.suite import declared_values
from .validation.table import read_table

if TYPE_CHECKING:
    from .domains.schema import DomainConfig


@dataclass(frozen=True)
class Row:
    """One metadata row: its table row number, image path (relative to data/), split and
    the Example fields the task's contract reads."""

    row: int
    image: str
    split: str
    fields: dict[str, str] = field(default_factory=dict)

    def example(self, data_dir: Path) -> Example:
        """The Example of this row; the image stays a path, decoded when a batch needs it."""
        return Example(data_dir / self.image, **self.fields)


def read_metadata(config: DomainConfig, data_dir: Path) -> pd.DataFrame:
    """The metadata table of a data folder, read as validation reads it."""
    return read_table(data_dir / config.data.metadata, keep=declared_values(config))


def rows_from_table(config: DomainConfig, table: pd.DataFrame) -> list[Row]:
    """The rows of a validated table: image, split and the contract's fields."""
    layout, contract = config.data, config.contract
    wanted = [*contract.fields, *contract.optional_fields]
    columns = {f: layout.column(f) for f in wanted if layout.column(f) in table}
    missing = [f for f in contract.fields if f not in columns]
    if missing:
        raise DataError(f"the metadata table has no column for {missing}; validate it first")
    image, split = layout.column("image"), layout.column("split")
    rows = []
    for number, record in zip(table.index, table.to_dict("records"), strict=True):
        values = {f: record[c] for f, c in columns.items() if isinstance(record[c], str)}
        rows.append(Row(int(number), record[image], record[split], values))
    return rows


def read_rows(config: DomainConfig, data_dir: Path) -> list[Row]:
    return rows_from_table(config, read_metadata(config, data_dir))


def rows_digest(rows: Sequence[Row]) -> str:
    """sha256 over the rows, in order: what the driver validated is what a worker trains."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(asdict(row), sort_keys=True).encode())
    return digest.hexdigest()


def split_examples(rows: Sequence[Row], data_dir: Path) -> dict[str, list[Example]]:
    """{train, val, test: examples} with images as paths under `data_dir`."""
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for row in rows:
        out.setdefault(row.split, []).append(row.example(data_dir))
    return out
