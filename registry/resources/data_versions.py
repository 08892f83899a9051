"""Validated data versions of a domain, keyed by the md5 DVC gives the data folder."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import models as m
from ..errors import NotFoundError
from . import domains


def find(s: Session, domain: str, md5: str) -> m.DataVersion | None:
    d = domains.find(s, domain)
    if d is None:
        return None
    return s.scalar(
        select(m.DataVersion).where(m.DataVersion.domain_id == d.id, m.DataVersion.md5 == md5)
    )


def read(s: Session, d: m.Domain, md5: str) -> m.DataVersion:
    """The data version `md5` of `d`, or a NotFoundError saying how to record it."""
    row = s.scalar(
        select(m.DataVersion).where(m.DataVersion.domain_id == d.id, m.DataVersion.md5 == md5)
    )
    if row is None:
        raise NotFoundError(
            f"data version {md5} of {d.name} is not recorded; record it first "
            "(record_data_version) with its validation result"
        )
    return row


def record(
    s: Session,
    domain: str,
    md5: str,
    *,
    rows: int,
    row_counts: dict[str, int],
    validation_passed: bool,
    validation_summary: str,
    report_uri: str | None,
    validation_key: str | None,
    rows_added: int | None = None,
    added_from: str | None = None,
) -> m.DataVersion:
    """Record a validated data version. Recording the same domain and md5 again updates
    its validation result (rules may have changed), never its identity; its lineage (the
    rows an import added) is kept once known."""
    d = domains.ensure(s, domain)
    row = s.scalar(
        select(m.DataVersion).where(m.DataVersion.domain_id == d.id, m.DataVersion.md5 == md5)
    )
    if row is None:
        row = m.DataVersion(domain=d, md5=md5)
        s.add(row)
    row.rows, row.row_counts = rows, row_counts
    row.validation_passed, row.validation_summary = validation_passed, validation_summary
    row.report_uri, row.validation_key = report_uri, validation_key
    if rows_added is not None:
        row.rows_added, row.added_from = rows_added, added_from
    s.flush()
    return row
