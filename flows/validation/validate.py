"""`validate_domain`: read a domain's metadata table, inspect its images, run the suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mpt_core.data import SPLITS

from .containment import ContainmentError, check_data_folder, contained_file, link_on_the_way
from .images import PREFIX, fact_column, image_facts
from .leakage import leakage_facts
from .report import CheckFailure, ValidationReport, describe, summarize, unreadable, write_files
from .runner import run_checks
from .suite import (
    ExtraExpectationsError,
    build_checks,
    declared_values,
    load_extra_expectations,
)
from .table import TableError, read_table

if TYPE_CHECKING:
    from flows.domains.discovery import Domain

DOCS_DIR = "data_docs"


@dataclass(frozen=True)
class ValidatedData:
    """What validation approved: the report, the table it read and what it saw of the bytes.

    `table` is the DataFrame the checks ran on (None if it could not be read); `md5` maps
    each file validated (metadata table and images, paths relative to data/) to the md5 of
    the bytes read, so the version DVC tracks can be compared with what was validated.
    """

    report: ValidationReport
    table: pd.DataFrame | None = None
    md5: dict[str, str] = field(default_factory=dict)


def validate_domain(domain: Domain, report_dir: str | Path | None = None) -> ValidationReport:
    """Validate `domain`'s metadata table and images against its domain.yaml.

    Bad data never raises: it gives a failed report whose summary names the problems and the
    first offending rows. With `report_dir`, Great Expectations Data Docs are built in
    `report_dir/data_docs/` and the report is written to `report_dir/validation.json` and
    `report_dir/summary.txt`; nothing else is written anywhere. Nothing outside the domain's
    folder is read: links are refused by name (see `containment`).
    """
    return validate_data(domain, report_dir).report


def validate_data(domain: Domain, report_dir: str | Path | None = None) -> ValidatedData:
    """`validate_domain`, also returning the table it approved and the md5 of every file."""
    report_dir = Path(report_dir) if report_dir is not None else None
    data = _read_and_check(domain, report_dir)
    if report_dir is not None:
        write_files(data.report, report_dir)
    return data


def _read_and_check(domain: Domain, report_dir: Path | None) -> ValidatedData:
    folder = check_data_folder(domain.data_dir)
    path = domain.metadata_path
    if domain.data_dir.is_symlink() or not domain.data_dir.is_dir():
        reason = folder[0] if folder else f"{domain.data_dir} is not a folder"
        return ValidatedData(unreadable(domain.name, reason, path))
    link = link_on_the_way(path, domain.data_dir)
    if link is not None:
        reason = (
            f"{path}: {link} is a symbolic link; refused, never read: the metadata table must "
            "be a real file inside data/"
        )
        return ValidatedData(unreadable(domain.name, reason, path))
    try:
        table = read_table(path, keep=declared_values(domain.config))
    except TableError as exc:
        return ValidatedData(unreadable(domain.name, str(exc), path))
    docs_dir = report_dir / DOCS_DIR if report_dir is not None else None
    report, frame = _validate_table(domain, table, docs_dir, folder)
    md5 = {domain.config.data.metadata: table.attrs["md5"]}
    image = domain.config.data.image_column
    if image in table:
        md5 |= {
            p: h
            for p, h in zip(table[image], frame[fact_column("md5")], strict=True)
            if isinstance(p, str) and isinstance(h, str)
        }
    return ValidatedData(report, table, md5)


def _validate_table(
    domain: Domain, table: pd.DataFrame, docs_dir: Path | None, folder_problems: list[str]
) -> tuple[ValidationReport, pd.DataFrame]:
    config = domain.config
    image, split = config.data.image_column, config.data.split_column
    problems: list[CheckFailure] = [
        CheckFailure("data_folder", None, 1, f"data folder: {p}") for p in folder_problems
    ]
    reserved = [c for c in table.columns if c.startswith(PREFIX)]
    if reserved:
        problems.append(
            CheckFailure(
                "reserved_columns",
                None,
                1,
                f"table: column name(s) {reserved} start with {PREFIX!r}, which is reserved "
                "for the facts validation adds; rename them (they were ignored)",
            )
        )
        table = table.drop(columns=reserved)
    extra = []
    if config.validation.extra_expectations:
        try:
            extra_path = contained_file(
                domain.root / config.validation.extra_expectations,
                domain.root,
                "validation.extra_expectations",
            )
            extra = load_extra_expectations(extra_path, list(table.columns))
        except (ExtraExpectationsError, ContainmentError) as exc:
            problems.append(CheckFailure("extra_expectations", None, 1, str(exc)))
    checks = build_checks(config, list(table.columns), extra)
    facts = None
    if image in table:
        facts = image_facts(table[image], domain.data_dir, config.validation.images)
    leakage = leakage_facts(
        table,
        facts,
        image=image,
        split=split,
        group=config.data.group_column,
        max_distance=config.validation.near_duplicate_distance,
    )
    frame = pd.concat([table, *([facts] if facts is not None else []), leakage], axis=1)
    results, docs_path = run_checks(frame, checks, name=domain.name, docs_dir=docs_dir)
    image_column = image if image in table else None
    failed = [
        (check, describe(check, result, frame, image_column))
        for check, result in zip(checks, results, strict=True)
        if not result.success
    ]
    failures = problems + [f for check, f in failed if check.severity == "error"]
    warnings = [f for check, f in failed if check.severity == "warning"]
    counts = _split_counts(table[split]) if split in table else {}
    summary = summarize(
        domain.name, failures, len(table), counts, len(checks), domain.metadata_path, warnings
    )
    report = ValidationReport(
        domain=domain.name,
        passed=not failures,
        summary=summary,
        failures=failures,
        rows=len(table),
        counts=counts,
        checks=len(checks),
        docs_path=docs_path,
        warnings=warnings,
    )
    return report, frame


def _split_counts(splits: pd.Series) -> dict[str, int]:
    found = splits.value_counts()
    counts = {s: int(found.get(s, 0)) for s in SPLITS}
    counts.update({str(s): int(found[s]) for s in sorted(found.index) if s not in counts})
    return counts
