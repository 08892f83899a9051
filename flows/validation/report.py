"""The result of validating a domain: what failed, in words, with the first offending rows.

`ValidationReport.summary` is what a data team reads: one line per failed check naming the
column, the problem and the first rows by number and image file, e.g.

    label: 2 rows not in the declared labels ['boot', 'shirt']: row 17 (images/a.png) 'Sneakr', ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .suite import Check

FIRST_ROWS = 5
"""Offending rows named per failed check (the count says how many there are in all)."""
SHOWN_CHARS = 60
"""User text (captions, labels, paths) is cut to this many characters in messages."""


def clip(value: Any, limit: int = SHOWN_CHARS) -> Any:
    """Long text cut for messages, saying how long it was; anything else unchanged."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}…({len(value)} chars)"
    return value


@dataclass(frozen=True)
class CheckFailure:
    check: str
    """Stable id of the check, e.g. 'label_in_set', 'image_decodes', 'read_table'."""
    column: str | None
    """The table column concerned; None for table-level problems."""
    count: int
    """Offending rows (row checks), rows found (minimum-count checks), or 1 for the table."""
    message: str
    """The summary line for this failure."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The first offending rows: {'row': 17, 'image': 'images/a.png', 'value': 'Sneakr'}."""
    expectation: str | None = None
    """The Great Expectations expectation type, when the check is one."""


@dataclass(frozen=True)
class ValidationReport:
    domain: str
    passed: bool
    summary: str
    failures: list[CheckFailure]
    rows: int
    """Data rows in the metadata table (0 if it could not be read)."""
    counts: dict[str, int]
    """Rows per split value: train, val, test (0 if absent), then any other value found."""
    checks: int = 0
    """Expectations evaluated."""
    docs_path: Path | None = None
    """Great Expectations Data Docs index.html, when a report directory was given."""
    warnings: list[CheckFailure] = field(default_factory=list)
    """Checks of warning severity that failed (near-duplicates across splits): reported,
    never failing validation."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["docs_path"] = str(self.docs_path) if self.docs_path else None
        return out


def describe(check: Check, result: Any, table: pd.DataFrame, image: str | None) -> CheckFailure:
    """A failed GX result (ExpectationValidationResult) as a CheckFailure with its line."""
    kind = result.expectation_config.type
    where = check.column or "table"
    errors = _exception_messages(result)
    if errors:
        message = f"{where}: {check.problem}: could not be evaluated: {errors[0]}"
        return CheckFailure(check.name, check.column, 0, message, expectation=kind)
    res = result.result or {}
    if check.show == "count":
        observed = int(res.get("observed_value") or 0)
        message = f"{where}: {check.problem.replace('{observed}', str(observed))}"
        return CheckFailure(check.name, check.column, observed, message, expectation=kind)
    if check.show == "columns":
        return CheckFailure(check.name, None, 1, f"table: {check.problem}", expectation=kind)
    if check.show == "table":
        observed = _plain(res.get("observed_value"))
        message = f"{where}: {check.problem} (observed: {observed!r})"
        return CheckFailure(check.name, check.column, 1, message, expectation=kind)
    count = int(res.get("unexpected_count") or 0)
    numbers = sorted(_row_number(i) for i in res.get("partial_unexpected_index_list") or [])
    ours = check.show == "reason"
    rows = [_row(table, n, image, check.value_column, ours) for n in numbers[:FIRST_ROWS]]
    shown = ("; " if check.show == "reason" else ", ").join(_show(r, check.show) for r in rows)
    more = f" ... and {count - len(rows)} more" if count > len(rows) else ""
    noun = "row" if count == 1 else "rows"
    message = f"{where}: {count} {noun} {check.problem}" + (f": {shown}{more}" if rows else "")
    return CheckFailure(check.name, check.column, count, message, rows, kind)


def summarize(
    domain: str,
    failures: list[CheckFailure],
    rows: int,
    counts: dict[str, int],
    checks: int,
    source: Path,
    warnings: Sequence[CheckFailure] = (),
) -> str:
    per_split = ", ".join(f"{split} {n}" for split, n in counts.items())
    table = f"{rows} row{'' if rows == 1 else 's'}" + (f" ({per_split})" if counts else "")
    noted = [f"  - warning: {w.message}" for w in warnings]
    if not failures:
        checked = f"all {checks} checks passed"
        if warnings:
            checked = f"{checks - len(warnings)} of {checks} checks passed, {len(warnings)} warned"
        return "\n".join([f"{domain}: passed: {table} in {source}; {checked}", *noted])
    head = (
        f"{domain}: FAILED: {len(failures)} problem(s) in {source}, {table}; "
        "row N is the N-th line below the header"
    )
    return "\n".join([head, *(f"  - {f.message}" for f in failures), *noted])


def unreadable(domain: str, message: str, source: Path) -> ValidationReport:
    failure = CheckFailure("read_table", None, 1, message)
    summary = f"{domain}: FAILED: cannot read the metadata table {source}\n  - {message}"
    return ValidationReport(domain, False, summary, [failure], rows=0, counts={})


def write_files(report: ValidationReport, report_dir: Path) -> None:
    """`validation.json` (the report's to_dict) and `summary.txt` in `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    (report_dir / "validation.json").write_text(text, encoding="utf-8")
    (report_dir / "summary.txt").write_text(report.summary + "\n", encoding="utf-8")


def _exception_messages(result: Any) -> list[str]:
    # exception_info is flat for the expectation, or keyed by metric when a metric failed.
    info = result.exception_info or {}
    if "raised_exception" in info:
        return [str(info["exception_message"])] if info["raised_exception"] else []
    return [
        str(v.get("exception_message"))
        for v in info.values()
        if isinstance(v, dict) and v.get("raised_exception")
    ]


def _row_number(entry: Any) -> int:
    return int(entry["row"] if isinstance(entry, dict) else entry)


def _row(
    table: pd.DataFrame, number: int, image: str | None, column: str | None, ours: bool
) -> dict:
    """Row number, image path and value; user text is clipped, our own reasons are not."""
    path = table.at[number, image] if image in table else None
    value = _plain(table.at[number, column] if column in table else None)
    return {"row": number, "image": clip(_plain(path)), "value": value if ours else clip(value)}


def _show(row: dict, show: str) -> str:
    text = f"row {row['row']}" + (f" ({row['image']})" if row["image"] is not None else "")
    if row["value"] is None:
        return text
    if show == "reason":
        return f"{text}: {row['value']}"
    return f"{text} {row['value']!r}" if show == "value" else text


def _plain(value: Any) -> Any:
    """numpy/pandas scalars as JSON-able Python values; missing values as None."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
