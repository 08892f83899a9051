"""`mpt domain import`: a source in a known layout becomes a domain folder, or more rows of
one, with nothing left half-written.

A first import writes everything (images, `metadata.csv`, `domain.yaml`, `README.md`,
`imports.json`) into a temp folder beside the target, `domains/.import-*/<name>/`, and
renames it into place at the end. An append stages its images in `<domain>/.append-*/`,
then moves them in one rename to `data/images/append-<n>/`, writes the table (the old
bytes, untouched, and the new rows after them) to a temp file renamed over the old one, and
adds its entry to the import log. Any failure before that removes the staging folder; the
domain is as it was.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mpt_core import TASKS
from mpt_core.data import SPLITS
from mpt_core.errors import MptError

from ..domains.discovery import DATA_DIR, Domain, get_domain
from ..domains.scaffold import check_name, write_domain_files
from ..validation.containment import link_on_the_way
from ..validation.images import location_problem
from ..validation.suite import declared_values
from ..validation.table import TableError, read_table
from .base import OPTION_FLAGS, FormatOptions, ImportFormat, Record
from .formats import FORMATS
from .log import LOG_FILE, read_log, write_log
from .source import ImportFailed, Source, open_source
from .splits import Placed, SplitRule, assign_splits
from .staging import StagedImage, Stager
from .tasks import (
    choose_task,
    declaration_of,
    row_key,
    stratum,
    task_columns,
    undeclared,
)


@dataclass(frozen=True)
class ImportRequest:
    """What `mpt domain import` was asked (the CLI's options)."""

    name: str
    format: str
    source: str
    task: str | None = None
    append: bool = False
    link: bool = False
    group_by: str | None = None
    rule: SplitRule | None = None
    """None: the previous import's rule on an append, else the default."""
    options: FormatOptions = field(default_factory=FormatOptions)
    s3_endpoint: str | None = None


@dataclass(frozen=True)
class ImportResult:
    domain: str
    root: Path
    mode: str
    """`import` or `append`."""
    number: int
    """This import's number in the domain's import log."""
    task: str
    rows_added: int
    added: dict[str, int]
    """New rows per split."""
    rows: int
    """Rows in the table now."""
    skipped: int
    """Records left out: repeats of a row key, or rows the domain already holds."""
    linked: int
    copied: int
    declared: dict[str, Any]
    """What domain.yaml declares for the task (a first import)."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "root": str(self.root)}


@dataclass(frozen=True)
class _Row:
    image: StagedImage
    fields: dict[str, str]
    split: str | None
    group: str | None
    where: str


def import_domain(
    domains_dir: str | Path, request: ImportRequest, *, progress: bool = False
) -> ImportResult:
    """Import `request.source` as domain `request.name` (or append it); see the module."""
    domains_dir = Path(domains_dir)
    check_name(request.name)
    if request.format not in FORMATS:
        raise ImportFailed(
            f"unknown import format {request.format!r}; allowed: {', '.join(FORMATS.names())}"
        )
    fmt = FORMATS.get(request.format)
    _check_options(fmt, request.options)
    if request.append:
        return _append(domains_dir, request, fmt, progress)
    return _first_import(domains_dir, request, fmt, progress)


def _check_options(fmt: ImportFormat, options: FormatOptions) -> None:
    defaults = FormatOptions()
    given = [k for k in OPTION_FLAGS if getattr(options, k) != getattr(defaults, k)]
    unused = [OPTION_FLAGS[k] for k in given if k not in fmt.options]
    if unused:
        takes = ", ".join(OPTION_FLAGS[k] for k in fmt.options) or "none"
        raise ImportFailed(
            f"{', '.join(unused)} not used by format {fmt.name!r} (its options: {takes}); remove it"
        )


# ------------------------------------------------------------------ a first import
def _first_import(
    domains_dir: Path, request: ImportRequest, fmt: ImportFormat, progress: bool
) -> ImportResult:
    target = domains_dir / request.name
    if target.exists():
        raise ImportFailed(
            f"{target} already exists; add the new images with --append, or import under "
            "another name"
        )
    source = open_source(request.source, request.s3_endpoint)
    domains_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=domains_dir))
    try:
        root = staging / request.name
        stager = Stager(source, root / DATA_DIR, "images", request.link)
        records = _stage(fmt, source, request, stager, progress)
        what = f"{fmt.name} source {request.source}"
        task = choose_task(_common_fields(records), request.task, what)
        rows, skipped = _task_rows(task, records)
        _whole_groups(rows)
        declaration = declaration_of(task, [r.fields for r in rows], what)
        rule = request.rule or SplitRule()
        new = [Placed(r.image.sha256, r.group, stratum(task, r.fields), r.split) for r in rows]
        splits = assign_splits(new, [], rule)
        group_column = _group_column(request.group_by, task)
        _write_table(root / DATA_DIR / "metadata.csv", task, rows, splits, group_column)
        write_domain_files(
            root,
            request.name,
            task,
            declaration=declaration,
            group_column=group_column,
            provenance=f"Provenance: imported with `mpt domain import {request.name} --from "
            f"{fmt.name} {source.name}` on {_today()} (see {LOG_FILE}); say where the "
            "images come from, their licence, and how labels were made.",
        )
        result = ImportResult(
            request.name,
            target,
            "import",
            1,
            task,
            len(rows),
            _per_split(splits),
            len(rows),
            skipped,
            stager.linked,
            stager.copied,
            declaration,
        )
        table = (root / DATA_DIR / "metadata.csv").read_bytes()
        write_log(root, [_entry(result, source, fmt, rule, table, request.group_by)])
        try:
            root.rename(target)
        except OSError as exc:
            raise ImportFailed(f"{target}: cannot move the import into place: {exc}") from None
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------ an append
def _append(
    domains_dir: Path, request: ImportRequest, fmt: ImportFormat, progress: bool
) -> ImportResult:
    try:
        domain = get_domain(domains_dir, request.name)
    except MptError as exc:
        raise ImportFailed(f"--append: {exc}; import it first (without --append)") from None
    config, task = domain.config, domain.config.task
    if request.task is not None and request.task != task:
        raise ImportFailed(
            f"--task {request.task} differs from the task of {domain.root / 'domain.yaml'} "
            f"({task}); drop --task to append to it"
        )
    log = read_log(domain.root)
    previous = next((e for e in reversed(log) if e.get("rule")), None)
    rule = request.rule or SplitRule()
    if request.rule is None and previous is not None:
        rule = SplitRule(tuple(previous["rule"]["fractions"]), previous["rule"]["seed"])
    group_column = config.data.group_column
    group_by = request.group_by or (previous or {}).get("group_by") or group_column
    if request.group_by is not None and group_column is None:
        raise ImportFailed(
            f"--group-by {request.group_by}: {domain.root / 'domain.yaml'} names no "
            "data.group_column, so the rows already there have no groups; groups are set by "
            "the first import (or add the column to every row and data.group_column by hand)"
        )
    existing = _existing_rows(domain)
    source = open_source(request.source, request.s3_endpoint)
    number = len(log) + 1
    folder = f"append-{number}"
    while (domain.data_dir / "images" / folder).exists():
        number += 1
        folder = f"append-{number}"
    staging = Path(tempfile.mkdtemp(prefix=".append-", dir=domain.root))
    try:
        stager = Stager(source, staging, f"images/{folder}", request.link)
        records = _stage(fmt, source, request, stager, progress, group_by)
        what = f"{fmt.name} source {request.source}"
        choose_task(_common_fields(records), task, what)
        rows, skipped = _task_rows(task, records)
        _whole_groups(rows)
        held = {(p.content, key) for p, key in existing}
        kept = [r for r in rows if (r.image.sha256, _fields_key(task, r.fields)) not in held]
        skipped += len(rows) - len(kept)
        for image in {r.image for r in rows} - {r.image for r in kept}:
            stager.drop(image)
        outside = undeclared(task, config.build_task().declared_values(), [r.fields for r in kept])
        if outside:
            raise ImportFailed(
                f"{len(outside)} value(s) the new rows hold are not declared in "
                f"{domain.root / 'domain.yaml'}: {', '.join(outside[:8])}; declare them there "
                "first (and give them enough rows per split), or import them as a new domain"
            )
        new = [Placed(r.image.sha256, r.group, stratum(task, r.fields), r.split) for r in kept]
        splits = assign_splits(new, [p for p, _ in existing], rule)
        result = ImportResult(
            request.name,
            domain.root,
            "append",
            number,
            task,
            len(kept),
            _per_split(splits),
            len(existing) + len(kept),
            skipped,
            stager.linked,
            stager.copied,
            {},
        )
        if not kept:
            return result  # nothing new: the domain, its table and its log stay as they are
        table = _appended_table(domain, task, kept, splits)
        entry = _entry(result, source, fmt, rule, table, group_by)
        _commit_append(domain, staging / "images" / folder, table, [*log, entry])
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit_append(domain: Domain, images: Path, table: bytes, log: list[dict]) -> None:
    """Three renames: the images folder in, the new table over the old, the log."""
    target = domain.data_dir / "images" / images.name
    metadata = domain.metadata_path
    fd, tmp = tempfile.mkstemp(prefix=".metadata-", dir=metadata.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(table)
    moved = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        images.rename(target)
        moved = True
        os.replace(tmp, metadata)
    except OSError as exc:
        if moved:
            target.rename(images)
        raise ImportFailed(f"{domain.root}: cannot move the appended rows in: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    write_log(domain.root, log)


def _existing_rows(domain: Domain) -> list[tuple[Placed, tuple]]:
    """The domain's rows as splitting sees them, with the key that makes a new row a repeat
    (image bytes and the task's fields)."""
    config = domain.config
    layout, task = config.data, config.task
    try:
        table = read_table(domain.metadata_path, keep=declared_values(config))
    except TableError as exc:
        raise ImportFailed(f"--append: {exc}") from None
    columns = {f: layout.column(f) for f in task_columns(task) if layout.column(f) in table}
    out = []
    for record in table.to_dict("records"):
        fields = {f: record[c] for f, c in columns.items() if isinstance(record[c], str)}
        group = record.get(layout.group_column) if layout.group_column else None
        content = _content_of(domain, record.get(layout.image_column))
        split = record.get(layout.split_column)
        placed = Placed(
            content,
            group if isinstance(group, str) else None,
            stratum(task, fields),
            split if isinstance(split, str) else None,
        )
        out.append((placed, _fields_key(task, fields)))
    return out


def _content_of(domain: Domain, image: Any) -> str:
    """sha256 of a row's image, read as validation reads it (never outside data/, no link
    followed); a unique stand-in when it cannot be read (validation reports why)."""
    if not isinstance(image, str) or location_problem(image):
        return f"unreadable:{image}"
    path = domain.data_dir / posixpath.normpath(image)
    if link_on_the_way(path, domain.data_dir) is not None or not path.is_file():
        return f"unreadable:{image}"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _appended_table(domain: Domain, task: str, rows: list[_Row], splits: list[str]) -> bytes:
    """The metadata table's bytes as they are, then the new rows in its columns."""
    layout = domain.config.data
    old = domain.metadata_path.read_bytes()
    header = next(csv.reader(io.StringIO(old.decode("utf-8-sig"))), [])
    newline = "\r\n" if b"\r\n" in old else "\n"
    want = {"image": layout.image_column, "split": layout.split_column}
    want |= {f: layout.column(f) for f in task_columns(task)}
    missing = [
        c
        for f, c in want.items()
        if c not in header and (f in ("image", "split") or f in TASKS.get(task).contract.fields)
    ]
    if layout.group_column and layout.group_column not in header:
        missing.append(layout.group_column)
    if missing:
        raise ImportFailed(
            f"{domain.metadata_path}: no column(s) {missing} to append to; the header is "
            f"{header}. Fix the table (`mpt domain check {domain.name}`) first"
        )
    by_column = {c: f for f, c in want.items()}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    for row, split in zip(rows, splits, strict=True):
        values = {"image": row.image.path, "split": split, **row.fields}
        cells = []
        for column in header:
            if column == layout.group_column and column not in by_column:
                cells.append(row.group or "")
            else:
                cells.append(values.get(by_column.get(column, ""), ""))
        writer.writerow(cells)
    if old and not old.endswith(b"\n"):
        old += newline.encode()
    return old + buffer.getvalue().encode("utf-8")


# ------------------------------------------------------------------ shared steps
def _stage(
    fmt: ImportFormat,
    source: Source,
    request: ImportRequest,
    stager: Stager,
    progress: bool,
    group_by: str | None = None,
) -> list[tuple[Record, StagedImage, str | None]]:
    """Every record of the source with its staged image and group value (records keep no
    image bytes)."""
    group_by = group_by or request.group_by
    out = []
    for record in _progress(fmt.read(source, request.options), progress, request.name):
        group = None
        if group_by is not None:
            group = record.attributes.get(group_by)
            if group is None:
                known = ", ".join(sorted(record.attributes)) or "none"
                raise ImportFailed(
                    f"{record.where}: has no {group_by!r} to group by (--group-by; an append "
                    f"groups by the domain's group column); it has: {known}"
                )
        image = stager.add(record)
        out.append((Record(record.image, record.fields, record.where, record.split), image, group))
    if not out:
        raise ImportFailed(f"{request.source}: no records found for format {fmt.name!r}")
    return out


def _progress(records: Iterable[Record], on: bool, name: str) -> Iterator[Record]:
    from tqdm import tqdm

    yield from tqdm(records, desc=f"import {name}", unit=" records", disable=None if on else True)


def _whole_groups(rows: list[_Row]) -> None:
    """A group the source itself puts in two splits cannot be kept whole while the source's
    splits are kept: say so, instead of writing a domain that validation refuses."""
    splits: dict[str, set[str]] = {}
    for row in rows:
        if row.group is not None and row.split is not None:
            splits.setdefault(row.group, set()).add(row.split)
    torn = {g: sorted(s) for g, s in splits.items() if len(s) > 1}
    if torn:
        group, where = next(iter(torn.items()))
        raise ImportFailed(
            f"--group-by: the source puts {len(torn)} group(s) in several of its splits, e.g. "
            f"{group!r} in {', '.join(where)}; its splits are kept, so the group would "
            "straddle them. Drop --group-by to keep the source's splits as they are, or give "
            "the source without split files or folders so that the import makes them"
        )


def _common_fields(records: list[tuple[Record, StagedImage, str | None]]) -> set[str]:
    common = set(records[0][0].fields)
    for record, _, _ in records:
        common &= set(record.fields)
    return common


def _task_rows(
    task: str, records: list[tuple[Record, StagedImage, str | None]]
) -> tuple[list[_Row], int]:
    """The task's rows: its fields only, the first record of each row key."""
    columns = task_columns(task)
    seen: set[tuple] = set()
    rows = []
    for record, image, group in records:
        fields = {f: record.fields[f] for f in columns if record.fields.get(f)}
        key = row_key(task, {"image": image.path, **fields})
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        rows.append(_Row(image, fields, record.split, group, record.where))
    return rows, len(records) - len(rows)


def _fields_key(task: str, fields: dict[str, str]) -> tuple:
    return tuple(fields.get(f) for f in task_columns(task))


def _group_column(group_by: str | None, task: str) -> str | None:
    if group_by is None:
        return None
    taken = {"image", "split", *task_columns(task)}
    return group_by if group_by not in taken else f"{group_by}_group"


def _write_table(
    path: Path, task: str, rows: list[_Row], splits: list[str], group_column: str | None
) -> None:
    present = [f for f in task_columns(task) if any(f in r.fields for r in rows)]
    header = ["image", "split", *present, *([group_column] if group_column else [])]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for row, split in zip(rows, splits, strict=True):
            cells = [row.image.path, split, *(row.fields.get(c, "") for c in present)]
            writer.writerow(cells + ([row.group or ""] if group_column else []))


def _per_split(splits: list[str]) -> dict[str, int]:
    return {s: splits.count(s) for s in SPLITS}


def _entry(
    result: ImportResult,
    source: Source,
    fmt: ImportFormat,
    rule: SplitRule,
    table: bytes,
    group_by: str | None,
) -> dict[str, Any]:
    return {
        "number": result.number,
        "mode": result.mode,
        "format": fmt.name,
        "source": source.name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": result.task,
        "rows_added": result.rows_added,
        "added": result.added,
        "rows": result.rows,
        "skipped": result.skipped,
        "linked": result.linked,
        "copied": result.copied,
        "rule": rule.to_dict(),
        "group_by": group_by,
        "metadata_md5": hashlib.md5(table, usedforsecurity=False).hexdigest(),
    }


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")
