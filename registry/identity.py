"""Users, roles, tokens, sessions and the audit log: who may do what in the registry.

Authentication is on when any active user exists (service accounts do not count) or
`MPT_AUTH=required`. Then every action names an active user whose role allows it, and
the boundaries prove who that user is: the CLI from `MPT_TOKEN`, the review pages from a
session opened with a token. With authentication off, names are free text as before.

Roles are ordered, each may do what the ones before it may:

    viewer < requester (register, request, move free aliases)
           < reviewer (approve, reject, roll back, move production and protected aliases)
           < admin (users, alias protection)

A token reads `mpt_<key id>_<secret>`. The key id is public and finds the user's row; the
row keeps only scrypt(secret, per-user salt), compared in constant time. Service accounts
(the retrain flow) have no token: only code with direct database access acts as them.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from . import models as m
from .constants import PRODUCTION
from .db import session_scope
from .errors import ConflictError, InvalidRecord, NotFoundError, PermissionDenied, RegistryError
from .records import AuditEntry, UserInfo
from .roles import RANK, ROLES, role_at_least

log = logging.getLogger(__name__)

ALWAYS_PROTECTED = frozenset({PRODUCTION})
AUTH_ENV = "MPT_AUTH"
TOKEN_PREFIX = "mpt_"
_TOKEN = re.compile(r"mpt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # about 50 ms, 16 MB
_DUMMY_SALT = bytes(16)  # unknown key ids cost one scrypt too: timing says nothing
_PROVEN_MAX = 1024


def operator() -> str:
    """Actor name of someone acting through direct database access without a token."""
    return f"operator:{getpass.getuser()}"


def auth_required_by_env() -> bool:
    value = os.environ.get(AUTH_ENV, "").strip().lower()
    if value in ("", "auto"):
        return False
    if value == "required":
        return True
    raise RegistryError(
        f"{AUTH_ENV}={value!r} is not understood; set it to 'required' (authentication on "
        "even before the first user exists) or leave it unset (on once any user exists)"
    )


def auth_on(s: Session) -> bool:
    if auth_required_by_env():
        return True
    return bool(s.scalar(select(exists().where(m.User.active, m.User.service.is_(False)))))


def check_role(role: str) -> str:
    if role not in RANK:
        raise InvalidRecord(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRecord(
            f"user name {name!r} is not allowed: 1-100 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def authorize(s: Session, actor: str, need: str, what: str) -> None:
    """With authentication on, `actor` must be an active user with at least role `need`."""
    if not auth_on(s):
        return
    user = s.scalar(select(m.User).where(m.User.name == actor))
    if user is None or not user.active:
        raise PermissionDenied(
            f"{actor!r} is not an active user; with authentication on, {what} needs a user "
            f"with the {need} role or higher (an admin adds one with `mpt user add`)"
        )
    if not role_at_least(user.role, need):
        raise PermissionDenied(f"{actor} is a {user.role}; {what} needs the {need} role or higher")


def is_protected(s: Session, domain: m.Domain, alias: str) -> bool:
    if alias in ALWAYS_PROTECTED:
        return True
    return bool(
        s.scalar(
            select(
                exists().where(
                    m.ProtectedAlias.domain_id == domain.id, m.ProtectedAlias.name == alias
                )
            )
        )
    )


def alias_role(s: Session, domain: m.Domain, alias: str) -> str:
    """The least role that may move `alias` of `domain`."""
    return "reviewer" if is_protected(s, domain, alias) else "requester"


# ---------------------------------------------------------------------- audit
def append_audit(
    s: Session, action: str, actor: str, outcome: str, address: str | None, what: dict[str, Any]
) -> None:
    what = dict(what)
    s.add(
        m.AuditRecord(
            at=m.utcnow(),
            actor=actor,
            action=action,
            outcome=outcome,
            address=(address or None) and address[:200],
            domain=what.pop("domain", None),
            request_id=what.pop("request_id", None),
            version=what.pop("version", None),
            alias=what.pop("alias", None),
            detail=what,
        )
    )


@contextmanager
def audited(
    url: str, action: str, actor: str, address: str | None = None, **what: Any
) -> Iterator[tuple[Session, dict[str, Any]]]:
    """One audited transaction: yields (session, details to fill in). On success the audit
    row commits with the change; a refused action (any RegistryError) is rolled back and
    recorded as refused, with the reason, in a transaction of its own."""
    record = dict(what)
    try:
        with session_scope(url) as s:
            yield s, record
            append_audit(s, action, actor, "ok", address, record)
    except RegistryError as exc:
        try:
            with session_scope(url) as s:
                append_audit(s, action, actor, "refused", address, {**record, "error": str(exc)})
        except RegistryError:
            log.exception("could not record the refused %s by %s in the audit log", action, actor)
        raise


def _audit_info(a: m.AuditRecord) -> AuditEntry:
    return AuditEntry(
        a.id,
        a.at,
        a.actor,
        a.action,
        a.outcome,
        a.address,
        a.domain,
        a.request_id,
        a.version,
        a.alias,
        a.detail,
    )


# ---------------------------------------------------------------------- tokens
def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()


def _digest(secret: str) -> str:
    """The sha256 hex a session row (or the proven-token cache) keys a secret by."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_token() -> tuple[str, str, str, str]:
    """(token, key id, salt hex, hash hex)."""
    key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(16)
    return f"{TOKEN_PREFIX}{key_id}_{secret}", key_id, salt.hex(), _hash(secret, salt)


class _Proven:
    """Tokens already proven in this process: sha256(token) -> the hash it matched. A hit
    skips scrypt only; the row is still read, so revocation and rotation apply at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, token_hash: str) -> None:
        with self._lock:
            self._items[key] = token_hash
            self._items.move_to_end(key)
            while len(self._items) > _PROVEN_MAX:
                self._items.popitem(last=False)


_proven = _Proven()


def user_info(u: m.User) -> UserInfo:
    return UserInfo(
        name=u.name,
        role=u.role,
        active=u.active,
        service=u.service,
        created_by=u.created_by,
        created_at=u.created_at,
        token_rotated_at=u.token_rotated_at,
        revoked_at=u.revoked_at,
        last_login_at=u.last_login_at,
    )


def _user(s: Session, name: str) -> m.User:
    user = s.scalar(select(m.User).where(m.User.name == name))
    if user is None:
        raise NotFoundError(f"user {name!r} does not exist; `mpt user list` shows the users")
    return user


def _end_sessions(s: Session, user_id: int) -> None:
    s.execute(
        update(m.UserSession)
        .where(m.UserSession.user_id == user_id, m.UserSession.ended_at.is_(None))
        .values(ended_at=m.utcnow())
    )


class IdentityAPI:
    """Identity methods of `PromptRegistry` (mixed in; each public method is one
    transaction). `actor=None` on user administration means the caller acts through
    direct database access (the bootstrap path, like `airflow users create`); it is
    audited as `operator:<login>`."""

    url: str
    if TYPE_CHECKING:  # PromptRegistry's lookup of a domain row
        _domain: Callable[..., m.Domain]

    def auth_enabled(self) -> bool:
        """True when any active user exists, or MPT_AUTH=required."""
        with session_scope(self.url) as s:
            return auth_on(s)

    # ------------------------------------------------------------------ users
    @staticmethod
    def _admin(s: Session, actor: str | None, what: str) -> None:
        if actor is not None:
            authorize(s, actor, "admin", what)

    def add_user(
        self, name: str, role: str, *, actor: str | None = None, address: str | None = None
    ) -> tuple[UserInfo, str]:
        """A new user with `role`; returns the user and their token, which is shown this
        once (only its hash is kept)."""
        check_name(name)
        check_role(role)
        token, key_id, salt, digest = _new_token()
        who = actor or operator()
        with audited(self.url, "user_add", who, address, user=name, role=role) as (s, _):
            self._admin(s, actor, "adding a user")
            existing = s.scalar(select(m.User).where(m.User.name == name))
            if existing is not None:
                state = "active" if existing.active else "revoked"
                raise ConflictError(
                    f"user {name!r} already exists ({existing.role}, {state}); "
                    f"`mpt user rotate {name}` gives an active user a new token"
                )
            user = m.User(
                name=name,
                role=role,
                key_id=key_id,
                token_salt=salt,
                token_hash=digest,
                service=False,
                active=True,
                created_by=who,
            )
            s.add(user)
            s.flush()
            return user_info(user), token

    def ensure_service_account(self, name: str) -> UserInfo:
        """A token-less requester for code with direct database access (the retrain flow);
        it can register and request, never decide, and never turns authentication on."""
        check_name(name)
        with session_scope(self.url) as s:
            user = s.scalar(select(m.User).where(m.User.name == name))
            if user is None:
                user = m.User(
                    name=name, role="requester", service=True, active=True, created_by=operator()
                )
                s.add(user)
                s.flush()
            elif not user.service:
                raise ConflictError(
                    f"{name!r} is a person's account, not a service account; pick another name"
                )
            return user_info(user)

    def list_users(self) -> list[UserInfo]:
        with session_scope(self.url) as s:
            return [user_info(u) for u in s.scalars(select(m.User).order_by(m.User.name))]

    def get_user(self, name: str) -> UserInfo:
        with session_scope(self.url) as s:
            return user_info(_user(s, name))

    def revoke_user(
        self, name: str, *, actor: str | None = None, address: str | None = None
    ) -> UserInfo:
        """Deactivate a user: their token and sessions stop working at once. Their name
        stays in the history and audit log, and is not given to anyone else."""
        who = actor or operator()
        with audited(self.url, "user_revoke", who, address, user=name) as (s, _):
            self._admin(s, actor, "revoking a user")
            user = _user(s, name)
            if user.active:
                user.active, user.revoked_at = False, m.utcnow()
                user.key_id = user.token_salt = user.token_hash = None
                _end_sessions(s, user.id)
            s.flush()
            return user_info(user)

    def rotate_token(
        self, name: str, *, actor: str | None = None, address: str | None = None
    ) -> tuple[UserInfo, str]:
        """A new token for an active user; the old one and their sessions stop working."""
        token, key_id, salt, digest = _new_token()
        who = actor or operator()
        with audited(self.url, "user_rotate", who, address, user=name) as (s, _):
            self._admin(s, actor, "rotating a user's token")
            user = _user(s, name)
            if not user.active or user.service:
                kind = "revoked" if not user.active else "a service account (no token)"
                raise PermissionDenied(f"user {name!r} is {kind}; it cannot get a token")
            user.key_id, user.token_salt, user.token_hash = key_id, salt, digest
            user.token_rotated_at = m.utcnow()
            _end_sessions(s, user.id)
            s.flush()
            return user_info(user), token

    def authenticate(self, token: str | None) -> UserInfo | None:
        """The active user whose token this is, else None. The same work is done whether
        or not the key id exists, and the answer never says which part was wrong."""
        match = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
        if match is None:
            return None
        key_id, secret = match.groups()
        cache_key = _digest(token.strip())
        with session_scope(self.url) as s:
            user = s.scalar(select(m.User).where(m.User.key_id == key_id))
            usable = user is not None and user.active and not user.service and user.token_hash
            if usable and hmac.compare_digest(_proven.get(cache_key) or "", user.token_hash):
                return user_info(user)
            salt = bytes.fromhex(user.token_salt) if usable else _DUMMY_SALT
            digest = _hash(secret, salt)
            if usable and hmac.compare_digest(digest, user.token_hash):
                _proven.put(cache_key, user.token_hash)
                return user_info(user)
            return None

    # ------------------------------------------------------------------ sessions
    def create_session(self, name: str, *, ttl: timedelta, address: str | None = None) -> str:
        """Open a session for an active user (after `authenticate`); returns its secret,
        which only the cookie holds (the row keeps its sha256). Audited as a login."""
        if ttl <= timedelta(0):
            raise InvalidRecord(f"a session needs a positive lifetime; got {ttl}")
        secret = secrets.token_urlsafe(32)
        with audited(self.url, "login", name, address) as (s, _):
            user = _user(s, name)
            if not user.active or user.service:
                raise PermissionDenied(f"user {name!r} cannot log in")
            now = m.utcnow()
            user.last_login_at = now
            s.add(
                m.UserSession(
                    secret_sha256=_digest(secret),
                    user_id=user.id,
                    address=(address or None) and address[:200],
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return secret

    def session_user(self, secret: str | None) -> UserInfo | None:
        """The user of a live session (not ended, not expired, user still active)."""
        if not secret:
            return None
        with session_scope(self.url) as s:
            user = s.scalar(
                select(m.User)
                .join(m.UserSession, m.UserSession.user_id == m.User.id)
                .where(
                    m.UserSession.secret_sha256 == _digest(secret),
                    m.UserSession.ended_at.is_(None),
                    m.UserSession.expires_at > m.utcnow(),
                    m.User.active,
                )
            )
            return None if user is None else user_info(user)

    def end_session(self, secret: str, *, address: str | None = None) -> None:
        """Log out: the session stops working at once."""
        with session_scope(self.url) as s:
            row = s.scalar(
                select(m.UserSession).where(m.UserSession.secret_sha256 == _digest(secret))
            )
            if row is None or row.ended_at is not None:
                return
            row.ended_at = m.utcnow()
            append_audit(s, "logout", s.get(m.User, row.user_id).name, "ok", address, {})

    # ------------------------------------------------------------------ audit
    def record_audit(
        self,
        action: str,
        actor: str,
        *,
        outcome: str = "ok",
        address: str | None = None,
        **what: Any,
    ) -> None:
        """Append an audit record for something a boundary decided (e.g. a refused login)."""
        if outcome not in m.AUDIT_OUTCOMES:
            raise InvalidRecord(f"audit outcome {outcome!r}; allowed: {m.AUDIT_OUTCOMES}")
        with session_scope(self.url) as s:
            append_audit(s, action, actor, outcome, address, what)

    def audit_log(
        self, *, domain: str | None = None, actor: str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        """Newest first."""
        with session_scope(self.url) as s:
            query = select(m.AuditRecord)
            if domain:
                query = query.where(m.AuditRecord.domain == domain)
            if actor:
                query = query.where(m.AuditRecord.actor == actor)
            rows = s.scalars(query.order_by(m.AuditRecord.id.desc()).limit(limit))
            return [_audit_info(a) for a in rows]

    # ------------------------------------------------------------------ protected aliases
    def protected_aliases(self, domain: str) -> list[str]:
        """`production` and every alias an admin protected, sorted."""
        with session_scope(self.url) as s:
            names = s.scalars(
                select(m.ProtectedAlias.name)
                .join(m.Domain, m.ProtectedAlias.domain_id == m.Domain.id)
                .where(m.Domain.name == domain)
            )
            return sorted(ALWAYS_PROTECTED | set(names))

    def protect_alias(
        self,
        domain: str,
        alias: str,
        *,
        actor: str,
        protect: bool = True,
        address: str | None = None,
    ) -> list[str]:
        """Mark (or unmark) an alias as protected: with authentication on it then moves only
        by a reviewer or admin. `production` is always protected."""
        action = "alias_protect" if protect else "alias_unprotect"
        with audited(self.url, action, actor, address, domain=domain, alias=alias) as (s, _):
            authorize(s, actor, "admin", "changing which aliases are protected")
            if alias in ALWAYS_PROTECTED:
                raise PermissionDenied(f"{alias} is always protected")
            d = self._domain(s, domain, create=True)
            row = s.scalar(
                select(m.ProtectedAlias).where(
                    m.ProtectedAlias.domain_id == d.id, m.ProtectedAlias.name == alias
                )
            )
            if protect and row is None:
                s.add(m.ProtectedAlias(domain_id=d.id, name=alias, created_by=actor))
            elif not protect and row is not None:
                s.delete(row)
        return self.protected_aliases(domain)
