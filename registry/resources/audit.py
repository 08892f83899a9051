"""The append-only audit log: who did (or was refused) what, when, from which address.

An audited action fills a `Detail` dict as it learns what it acts on (domain, alias,
version, request id, ...); the boundary appends it with the outcome, so a refusal is
recorded with everything known when it was refused."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import models as m
from ..errors import InvalidRecord

Detail = dict[str, Any]
"""What an audited action acts on: the keys domain, request_id, version and alias get
columns of their own, the rest is kept as the entry's detail."""


def append(
    s: Session, action: str, actor: str, outcome: str, address: str | None, what: Detail
) -> m.AuditRecord:
    if outcome not in m.AUDIT_OUTCOMES:
        raise InvalidRecord(f"audit outcome {outcome!r}; allowed: {m.AUDIT_OUTCOMES}")
    row = m.AuditRecord(
        at=m.utcnow(),
        actor=actor,
        action=action,
        outcome=outcome,
        address=(address or None) and address[:200],
    )
    complete(row, what)
    s.add(row)
    return row


def complete(row: m.AuditRecord, what: Detail) -> None:
    """Set what `row` acts on from `what` (an audited action fills it in as it goes)."""
    what = dict(what)
    row.domain = what.pop("domain", None)
    row.request_id = what.pop("request_id", None)
    row.version = what.pop("version", None)
    row.alias = what.pop("alias", None)
    row.detail = what


def read_all(
    s: Session, *, domain: str | None = None, actor: str | None = None, limit: int = 200
) -> list[m.AuditRecord]:
    """Newest first."""
    query = select(m.AuditRecord)
    if domain:
        query = query.where(m.AuditRecord.domain == domain)
    if actor:
        query = query.where(m.AuditRecord.actor == actor)
    return list(s.scalars(query.order_by(m.AuditRecord.id.desc()).limit(limit)))
