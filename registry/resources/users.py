"""Users, roles, tokens and authorization: who may do what in the registry.

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
import os
import re
import secrets
import threading
from collections import OrderedDict
from typing import NamedTuple

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from .. import models as m
from ..errors import ConflictError, InvalidRecord, NotFoundError, PermissionDenied, RegistryError
from ..roles import RANK, ROLES, role_at_least

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


def authorize_admin(s: Session, actor: str | None, what: str) -> None:
    """User administration: `actor=None` is the operator with direct database access (the
    bootstrap path, like `airflow users create`), who needs no role."""
    if actor is not None:
        authorize(s, actor, "admin", what)


# ---------------------------------------------------------------------- tokens
class NewToken(NamedTuple):
    """A fresh token and what the user's row keeps of it."""

    token: str
    key_id: str
    salt: str
    digest: str


def new_token() -> NewToken:
    """A fresh token (scrypt takes ~50 ms: make it before opening the transaction)."""
    key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(16)
    return NewToken(f"{TOKEN_PREFIX}{key_id}_{secret}", key_id, salt.hex(), _hash(secret, salt))


def token_key_id(token: str | None) -> str | None:
    """The public key id of a well-formed token (it names the user the token claims to
    be; throttling counts failures per key id), else None."""
    match = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
    return match.group(1) if match else None


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()


def digest(secret: str) -> str:
    """The sha256 hex a session row (or the proven-token cache) keys a secret by."""
    return hashlib.sha256(secret.encode()).hexdigest()


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


def authenticate(s: Session, token: str | None) -> m.User | None:
    """The active user whose token this is, else None. The same work is done whether
    or not the key id exists, and the answer never says which part was wrong."""
    match = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
    if match is None:
        return None
    key_id, secret = match.groups()
    cache_key = digest(token.strip())
    user = s.scalar(select(m.User).where(m.User.key_id == key_id))
    usable = user is not None and user.active and not user.service and user.token_hash
    if usable and hmac.compare_digest(_proven.get(cache_key) or "", user.token_hash):
        return user
    salt = bytes.fromhex(user.token_salt) if usable else _DUMMY_SALT
    hashed = _hash(secret, salt)
    if usable and hmac.compare_digest(hashed, user.token_hash):
        _proven.put(cache_key, user.token_hash)
        return user
    return None


# ---------------------------------------------------------------------- users
def find(s: Session, name: str) -> m.User | None:
    return s.scalar(select(m.User).where(m.User.name == name))


def read(s: Session, name: str) -> m.User:
    user = find(s, name)
    if user is None:
        raise NotFoundError(f"user {name!r} does not exist; `mpt user list` shows the users")
    return user


def read_all(s: Session) -> list[m.User]:
    return list(s.scalars(select(m.User).order_by(m.User.name)))


def add(s: Session, name: str, role: str, token: NewToken, *, created_by: str) -> m.User:
    """A new user with `role` proven by `token` (of which the row keeps only the hash)."""
    check_name(name)
    check_role(role)
    existing = find(s, name)
    if existing is not None:
        state = "active" if existing.active else "revoked"
        raise ConflictError(
            f"user {name!r} already exists ({existing.role}, {state}); "
            f"`mpt user rotate {name}` gives an active user a new token"
        )
    user = m.User(
        name=name,
        role=role,
        key_id=token.key_id,
        token_salt=token.salt,
        token_hash=token.digest,
        service=False,
        active=True,
        created_by=created_by,
    )
    s.add(user)
    s.flush()
    return user


def ensure_service_account(s: Session, name: str) -> m.User:
    """A token-less requester for code with direct database access (the retrain flow);
    it can register and request, never decide, and never turns authentication on."""
    check_name(name)
    user = find(s, name)
    if user is None:
        user = m.User(name=name, role="requester", service=True, active=True, created_by=operator())
        s.add(user)
        s.flush()
    elif not user.service:
        raise ConflictError(
            f"{name!r} is a person's account, not a service account; pick another name"
        )
    return user


def revoke(s: Session, name: str) -> m.User:
    """Deactivate a user: their token and sessions stop working at once. Their name
    stays in the history and audit log, and is not given to anyone else."""
    user = read(s, name)
    if user.active:
        user.active, user.revoked_at = False, m.utcnow()
        user.key_id = user.token_salt = user.token_hash = None
        end_sessions(s, user)
    s.flush()
    return user


def rotate(s: Session, name: str, token: NewToken) -> m.User:
    """Give an active user `token`; the old one and their sessions stop working."""
    user = read(s, name)
    if not user.active or user.service:
        kind = "revoked" if not user.active else "a service account (no token)"
        raise PermissionDenied(f"user {name!r} is {kind}; it cannot get a token")
    user.key_id, user.token_salt, user.token_hash = token.key_id, token.salt, token.digest
    user.token_rotated_at = m.utcnow()
    end_sessions(s, user)
    s.flush()
    return user


def end_sessions(s: Session, user: m.User) -> None:
    s.execute(
        update(m.UserSession)
        .where(m.UserSession.user_id == user.id, m.UserSession.ended_at.is_(None))
        .values(ended_at=m.utcnow())
    )
