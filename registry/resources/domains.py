"""Domains by name: created on first use by whatever records data or a version for them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import models as m
from ..errors import NotFoundError


def find(s: Session, name: str) -> m.Domain | None:
    return s.scalar(select(m.Domain).where(m.Domain.name == name))


def read(s: Session, name: str) -> m.Domain:
    """The domain `name`, or a NotFoundError saying it has no versions."""
    domain = find(s, name)
    if domain is None:
        raise NotFoundError(f"domain {name!r} has no registered versions")
    return domain


def ensure(s: Session, name: str) -> m.Domain:
    """The domain `name`, created (and flushed, so it has an id) if it is new."""
    domain = find(s, name)
    if domain is None:
        domain = m.Domain(name=name)
        s.add(domain)
        s.flush()
    return domain


def names_with_versions(s: Session) -> list[str]:
    """Names of every domain with at least one registered version, sorted."""
    return list(
        s.scalars(
            select(m.Domain.name)
            .join(m.PromptVersion, m.PromptVersion.domain_id == m.Domain.id)
            .group_by(m.Domain.name)
            .order_by(m.Domain.name)
        )
    )
