"""Browser sessions of the review pages: the cookie carries a random secret, the row only
its sha256, so a leaked database opens no session."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import models as m
from ..errors import InvalidRecord, PermissionDenied
from . import audit, users


def open_session(s: Session, name: str, *, ttl: timedelta, address: str | None) -> str:
    """Open a session for the active user `name` (after `users.authenticate`); returns its
    secret, which only the cookie holds."""
    if ttl <= timedelta(0):
        raise InvalidRecord(f"a session needs a positive lifetime; got {ttl}")
    user = users.read(s, name)
    if not user.active or user.service:
        raise PermissionDenied(f"user {name!r} cannot log in")
    secret = secrets.token_urlsafe(32)
    now = m.utcnow()
    user.last_login_at = now
    s.add(
        m.UserSession(
            secret_sha256=users.digest(secret),
            user=user,
            address=(address or None) and address[:200],
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return secret


def user_of(s: Session, secret: str | None) -> m.User | None:
    """The user of a live session (not ended, not expired, user still active)."""
    if not secret:
        return None
    return s.scalar(
        select(m.User)
        .join(m.UserSession, m.UserSession.user_id == m.User.id)
        .where(
            m.UserSession.secret_sha256 == users.digest(secret),
            m.UserSession.ended_at.is_(None),
            m.UserSession.expires_at > m.utcnow(),
            m.User.active,
        )
    )


def end(s: Session, secret: str, *, address: str | None) -> None:
    """Log out: the session stops working at once (audited; ending it twice is a no-op)."""
    row = s.scalar(select(m.UserSession).where(m.UserSession.secret_sha256 == users.digest(secret)))
    if row is None or row.ended_at is not None:
        return
    row.ended_at = m.utcnow()
    audit.append(s, "logout", row.user.name, "ok", address, {})
