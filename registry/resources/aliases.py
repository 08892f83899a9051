"""Aliases (production, staging, any free name), each pointing at one version of its
domain; the compare-and-swap move that keeps two writers from both winning; rollbacks;
which aliases are protected (moved only by a reviewer or admin when authentication is on).

Every move appends its history row in the same transaction. Production never moves
here except by rollback: promotions move it through an approved request (`promotions`).
"""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, joinedload

from .. import models as m
from ..constants import PRODUCTION
from ..errors import ConflictError, InvalidRecord, NotFoundError, PermissionDenied, RuleViolation
from . import domains, history, users, versions

ALWAYS_PROTECTED = frozenset({PRODUCTION})

RECORD = (joinedload(m.Alias.domain), joinedload(m.Alias.version))
"""What `Alias.to_record` reads, loaded with the rows: a constant number of queries."""


def find(s: Session, d: m.Domain, alias: str) -> m.Alias | None:
    return s.scalar(select(m.Alias).where(m.Alias.domain_id == d.id, m.Alias.name == alias))


def read_all(s: Session, d: m.Domain) -> list[m.Alias]:
    query = select(m.Alias).where(m.Alias.domain_id == d.id).options(*RECORD)
    return list(s.scalars(query.order_by(m.Alias.name)))


def resolve(s: Session, domain: str, alias: str) -> int | None:
    """The number of the version `alias` of `domain` points at now (None if unset)."""
    return s.scalar(
        select(m.PromptVersion.number)
        .join(m.Alias, m.Alias.version_id == m.PromptVersion.id)
        .join(m.Domain, m.Alias.domain_id == m.Domain.id)
        .where(m.Domain.name == domain, m.Alias.name == alias)
    )


def parse_ref(s: Session, d: m.Domain, ref: str | int) -> int:
    """The version number `ref` names: a number (3, "3", "v3") or an alias ("@production").
    An alias that is not set, or text that is neither, is a NotFoundError / InvalidRecord
    naming what `ref` may be."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    text = str(ref).strip()
    if text.startswith("@"):
        alias = text[1:]
        current = find(s, d, alias)
        if current is None:
            names = ", ".join(f"@{a.name}" for a in read_all(s, d)) or "none is set"
            raise NotFoundError(f"{d.name} has no alias {alias!r} (aliases: {names})")
        return current.version.number
    digits = text.removeprefix("v")
    if digits.isdigit() and len(digits) <= 9:
        return int(digits)
    raise InvalidRecord(
        f"{text!r} names no version of {d.name}: give a number (3) or an alias (@production)"
    )


def targets(s: Session, alias: str) -> dict[str, int | None]:
    """Every registered domain -> the version `alias` points at (None if unset), in one
    query: what a prediction server polls to pick up approvals and rollbacks."""
    rows = s.execute(
        select(m.Domain.name, m.PromptVersion.number)
        .outerjoin(m.Alias, (m.Alias.domain_id == m.Domain.id) & (m.Alias.name == alias))
        .outerjoin(m.PromptVersion, m.PromptVersion.id == m.Alias.version_id)
        .order_by(m.Domain.name)
    )
    return {name: number for name, number in rows}


def move(
    s: Session,
    d: m.Domain,
    alias: str,
    to: m.PromptVersion,
    *,
    expected: int | None,
    kind: str,
    actor: str,
    reason: str,
    request_id: int | None = None,
) -> m.AliasHistory:
    """Compare-and-swap the alias from `expected` (version id, None = unset) to `to`,
    and append the history row, in the caller's transaction. A concurrent move makes
    this a ConflictError and changes nothing."""
    now = m.utcnow()
    if expected is None:
        if find(s, d, alias) is not None:
            raise ConflictError(f"{d.name}:{alias} was set concurrently; re-read and retry")
        s.add(m.Alias(domain=d, name=alias, version=to, updated_at=now))
        s.flush()  # the unique (domain, name) constraint stops a concurrent twin
    else:
        moved = s.execute(
            update(m.Alias)
            .where(m.Alias.domain_id == d.id, m.Alias.name == alias, m.Alias.version_id == expected)
            .values(version_id=to.id, updated_at=now)
        ).rowcount
        if moved != 1:
            raise ConflictError(
                f"{d.name}:{alias} moved concurrently; nothing was changed, re-read and retry"
            )
    entry = history.append(
        s,
        d,
        alias,
        from_version_id=expected,
        to=to,
        kind=kind,
        actor=actor,
        reason=reason,
        request_id=request_id,
        at=now,
    )
    s.flush()
    return entry


def set_alias(
    s: Session, domain: str, alias: str, number: int, *, actor: str, reason: str
) -> m.AliasHistory:
    """Point a non-production alias (staging, any free name) at version `number`."""
    if alias == PRODUCTION:
        raise RuleViolation(
            "production moves only through an approved promotion request "
            "(`mpt promote request` + `mpt promote approve`) or a rollback"
        )
    d = domains.read(s, domain)
    users.authorize(s, actor, role_to_move(s, d, alias), f"moving {domain}:{alias}")
    v = versions.read(s, d, number)
    current = find(s, d, alias)
    return move(
        s,
        d,
        alias,
        v,
        expected=current.version_id if current else None,
        kind="set",
        actor=actor,
        reason=reason,
    )


def rollback(
    s: Session, domain: str, alias: str, number: int, *, actor: str, reason: str
) -> m.AliasHistory:
    """Move `alias` back to version `number`, which it pointed at before; recorded as a
    rollback."""
    if not reason.strip():
        raise RuleViolation("a rollback needs a reason")
    d = domains.read(s, domain)
    users.authorize(s, actor, role_to_move(s, d, alias), f"rolling back {domain}:{alias}")
    v = versions.read(s, d, number)
    current = find(s, d, alias)
    if current is None:
        raise RuleViolation(f"{domain}:{alias} is not set; there is nothing to roll back")
    if current.version_id == v.id:
        raise RuleViolation(f"{domain}:{alias} already points at v{number}")
    if not history.was_ever(s, d, alias, v):
        raise RuleViolation(
            f"{domain} v{number} was never {alias}; a rollback returns to an earlier "
            f"{alias} version, promote new versions through a request"
        )
    return move(
        s, d, alias, v, expected=current.version_id, kind="rollback", actor=actor, reason=reason
    )


# ---------------------------------------------------------------------- protection
def is_protected(s: Session, d: m.Domain, alias: str) -> bool:
    if alias in ALWAYS_PROTECTED:
        return True
    return bool(
        s.scalar(
            select(
                exists().where(m.ProtectedAlias.domain_id == d.id, m.ProtectedAlias.name == alias)
            )
        )
    )


def role_to_move(s: Session, d: m.Domain, alias: str) -> str:
    """The least role that may move `alias` of `d`."""
    return "reviewer" if is_protected(s, d, alias) else "requester"


def protected(s: Session, domain: str) -> list[str]:
    """`production` and every alias an admin protected, sorted."""
    names = s.scalars(
        select(m.ProtectedAlias.name)
        .join(m.Domain, m.ProtectedAlias.domain_id == m.Domain.id)
        .where(m.Domain.name == domain)
    )
    return sorted(ALWAYS_PROTECTED | set(names))


def protect(s: Session, domain: str, alias: str, *, actor: str, protect: bool) -> None:
    """Mark (or unmark) an alias as protected: with authentication on it then moves only
    by a reviewer or admin. `production` is always protected."""
    users.authorize(s, actor, "admin", "changing which aliases are protected")
    if alias in ALWAYS_PROTECTED:
        raise PermissionDenied(f"{alias} is always protected")
    d = domains.ensure(s, domain)
    row = s.scalar(
        select(m.ProtectedAlias).where(
            m.ProtectedAlias.domain_id == d.id, m.ProtectedAlias.name == alias
        )
    )
    if protect and row is None:
        s.add(m.ProtectedAlias(domain_id=d.id, name=alias, created_by=actor))
    elif not protect and row is not None:
        s.delete(row)
