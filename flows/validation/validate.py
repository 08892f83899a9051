"""`validate_domain`: read a domain's metadata table, inspect its images, run the suite."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .images import PREFIX, image_facts
from .report import CheckFailure, ValidationReport, describe, summarize, unreadable, write_files
from .runner import run_checks
from .suite import (
    SPLITS,
    ExtraExpectationsError,
    build_checks,
    declared_values,
    load_extra_expectations,
)
from .table import TableError, read_table

if TYPE_CHECKING:
    from flows.domains.discovery import Domain

DOCS_DIR = "data_docs"


def validate_domain(domain: Domain, report_dir: str | Path | None = None) -> ValidationReport:
    """Validate `domain`'s metadata table and images against its domain.yaml.

    Bad data never raises: it gives a failed report whose summary names the problems and the
    first offending rows. With `report_dir`, Great Expectations Data Docs are built in
    `report_dir/data_docs/` and the report is written to `report_dir/validation.json` and
    `report_dir/summary.txt`; nothing else is written anywhere.
    """
    report_dir = Path(report_dir) if report_dir is not None else None
    try:
        table = read_table(domain.metadata_path, keep=declared_values(domain.config))
    except TableError as exc:
        report = unreadable(domain.name, str(exc), domain.metadata_path)
    else:
        docs_dir = report_dir / DOCS_DIR if report_dir is not None else None
        report = _validate_table(domain, table, docs_dir)
    if report_dir is not None:
        write_files(report, report_dir)
    return report


def _validate_table(domain: Domain, table: pd.DataFrame, docs_dir: Path | None) -> ValidationReport:
    config = domain.config
    image, split = config.data.image_column, config.data.split_column
    problems: list[CheckFailure] = []
    reserved = [c for c in table.columns if c.startswith(PREFIX)]
    if reserved:
        problems.append(
            CheckFailure(
                "reserved_columns",
                None,
                1,
                f"table: column name(s) {reserved} start with {PREFIX!r}, which is reserved "
                "for image facts; rename them (they were ignored)",
            )
        )
        table = table.drop(columns=reserved)
    extra = []
    if config.validation.extra_expectations:
        try:
            extra = load_extra_expectations(
                domain.root / config.validation.extra_expectations, list(table.columns)
            )
        except ExtraExpectationsError as exc:
            problems.append(CheckFailure("extra_expectations", None, 1, str(exc)))
    checks = build_checks(config, list(table.columns), extra)
    frame = table
    if image in table:
        splits = table.get(split)
        facts = image_facts(table[image], splits, domain.data_dir, config.validation.images)
        frame = pd.concat([table, facts], axis=1)
    results, docs_path = run_checks(frame, checks, name=domain.name, docs_dir=docs_dir)
    image_column = image if image in table else None
    failures = problems + [
        describe(check, result, frame, image_column)
        for check, result in zip(checks, results, strict=True)
        if not result.success
    ]
    counts = _split_counts(table[split]) if split in table else {}
    summary = summarize(
        domain.name, failures, len(table), counts, len(checks), domain.metadata_path
    )
    return ValidationReport(
        domain=domain.name,
        passed=not failures,
        summary=summary,
        failures=failures,
        rows=len(table),
        counts=counts,
        checks=len(checks),
        docs_path=docs_path,
    )


def _split_counts(splits: pd.Series) -> dict[str, int]:
    found = splits.value_counts()
    counts = {s: int(found.get(s, 0)) for s in SPLITS}
    counts.update({str(s): int(found[s]) for s in sorted(found.index) if s not in counts})
    return counts
