"""The append-only alias history: one row per move of an alias, never updated or
deleted. What an alias pointed at, at any time, is read from it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from .. import models as m

RECORD = (
    joinedload(m.AliasHistory.domain),
    joinedload(m.AliasHistory.from_version),
    joinedload(m.AliasHistory.to_version),
)
"""What `AliasHistory.to_record` reads, loaded with the rows: a constant number of queries."""


def append(
    s: Session,
    d: m.Domain,
    alias: str,
    *,
    from_version_id: int | None,
    to: m.PromptVersion,
    kind: str,
    actor: str,
    reason: str,
    request_id: int | None,
    at: datetime,
) -> m.AliasHistory:
    """Record one move (kind: promotion | override | rollback | set)."""
    row = m.AliasHistory(
        domain=d,
        alias=alias,
        from_version_id=from_version_id,
        to_version=to,
        kind=kind,
        actor=actor,
        reason=reason,
        request_id=request_id,
        at=at,
    )
    s.add(row)
    return row


def read_all(s: Session, d: m.Domain, alias: str | None = None) -> list[m.AliasHistory]:
    """Every move of `d`'s aliases (or of `alias`), oldest first."""
    query = select(m.AliasHistory).where(m.AliasHistory.domain_id == d.id)
    if alias:
        query = query.where(m.AliasHistory.alias == alias)
    return list(s.scalars(query.options(*RECORD).order_by(m.AliasHistory.id)))


def was_ever(s: Session, d: m.Domain, alias: str, version: m.PromptVersion) -> bool:
    """Whether `alias` of `d` ever pointed at `version`."""
    found = s.scalar(
        select(m.AliasHistory.id)
        .where(
            m.AliasHistory.domain_id == d.id,
            m.AliasHistory.alias == alias,
            m.AliasHistory.to_version_id == version.id,
        )
        .limit(1)
    )
    return found is not None


def version_at(s: Session, domain: str, at: datetime, alias: str) -> int | None:
    """The number of the version `alias` of `domain` pointed at, at time `at`: one query."""
    return s.scalar(
        select(m.PromptVersion.number)
        .join(m.AliasHistory, m.AliasHistory.to_version_id == m.PromptVersion.id)
        .join(m.Domain, m.AliasHistory.domain_id == m.Domain.id)
        .where(m.Domain.name == domain, m.AliasHistory.alias == alias, m.AliasHistory.at <= at)
        .order_by(m.AliasHistory.at.desc(), m.AliasHistory.id.desc())
        .limit(1)
    )
