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
class TableLayout:
    """How to read a domain's metadata table into rows: plain data, built from the domain's
    config on the driver (`layout_of`) and carried to the workers with the job, so they
    read tables without the YAML schema."""

    metadata: str
    """The table's path relative to the data folder."""
    image: str
    split: str
    columns: dict[str, str]
    """Example field -> its column, for every field the task reads (required or not)."""
    required: tuple[str, ...]
    """The fields every row must have (the task contract's `fields`)."""
    keep: frozenset[str] = frozenset()
    """Declared values (labels; questions and answers) never read as missing values."""


def layout_of(config: DomainConfig) -> TableLayout:
    """The table layout of a domain: its data layout and its task's contract."""
    layout, contract = config.data, config.contract
    return TableLayout(
        metadata=layout.metadata,
        image=layout.column("image"),
        split=layout.column("split"),
        columns={f: layout.column(f) for f in contract.columns},
        required=contract.fields,
        keep=frozenset(declared_values(config)),
    )


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


def read_metadata(layout: TableLayout, data_dir: Path) -> pd.DataFrame:
    """The metadata table of a data folder, read as validation reads it."""
    return read_table(data_dir / layout.metadata, keep=layout.keep)


def rows_from_table(layout: TableLayout, table: pd.DataFrame) -> list[Row]:
    """The rows of a validated table: image, split and the contract's fields."""
    columns = {f: c for f, c in layout.columns.items() if c in table}
    missing = [f for f in layout.required if f not in columns]
    if missing:
        raise DataError(f"the metadata table has no column for {missing}; validate it first")
    rows = []
    for number, record in zip(table.index, table.to_dict("records"), strict=True):
        values = {f: record[c] for f, c in columns.items() if isinstance(record[c], str)}
        rows.append(Row(int(number), record[layout.image], record[layout.split], values))
    return rows


def read_rows(layout: TableLayout, data_dir: Path) -> list[Row]:
    return rows_from_table(layout, read_metadata(layout, data_dir))


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
