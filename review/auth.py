"""Sessions and CSRF for the review pages.

Logging in checks a token with the registry (`authenticate`) and opens a session there;
the cookie carries the session's random secret, signed and time-stamped (itsdangerous),
so a tampered or stale cookie is refused before the database is asked. Every form
carries a CSRF token, an HMAC of the session secret; the login form, which has no session
yet, uses a signed nonce cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from itsdangerous import BadSignature, TimestampSigner

from registry import UserInfo, role_at_least

SESSION_COOKIE = "mpt_session"
LOGIN_COOKIE = "mpt_login"
LOGIN_NONCE_SECONDS = 3600


class LoginRequired(Exception):
    """No live session: the browser goes to the login page, then back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfFailed(Exception):
    """A form came without this session's CSRF token (or with a wrong one)."""


@dataclass(frozen=True)
class Viewer:
    """The logged-in user of a request."""

    user: UserInfo
    session: str
    csrf: str

    @property
    def name(self) -> str:
        return self.user.name

    def at_least(self, role: str) -> bool:
        return role_at_least(self.user.role, role)


class Sessions:
    def __init__(self, key: bytes, ttl: timedelta) -> None:
        self.ttl = ttl
        self._signer = TimestampSigner(key, salt="mpt-review-session")
        self._login_signer = TimestampSigner(key, salt="mpt-review-login")
        self._csrf_key = hmac.new(key, b"mpt-review-csrf", hashlib.sha256).digest()

    # ---------------------------------------------------------------- session cookie
    def cookie(self, secret: str) -> str:
        return self._signer.sign(secret).decode()

    def secret(self, cookie: str | None) -> str | None:
        """The session secret of a cookie that is ours and not older than the TTL."""
        if not cookie:
            return None
        try:
            return self._signer.unsign(cookie, max_age=self.ttl.total_seconds()).decode()
        except BadSignature:  # also SignatureExpired
            return None

    # ---------------------------------------------------------------- CSRF
    def csrf(self, secret: str) -> str:
        return hmac.new(self._csrf_key, secret.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, secret: str, submitted: str | None) -> None:
        if not submitted or not _same(self.csrf(secret), submitted):
            raise CsrfFailed()

    def login_nonce(self) -> tuple[str, str]:
        """(cookie value, form value) for the login form."""
        nonce = secrets.token_urlsafe(24)
        return self._login_signer.sign(nonce).decode(), nonce

    def check_login_nonce(self, cookie: str | None, submitted: str | None) -> None:
        try:
            nonce = self._login_signer.unsign(cookie or "", max_age=LOGIN_NONCE_SECONDS).decode()
        except BadSignature:
            raise CsrfFailed() from None
        if not submitted or not _same(nonce, submitted):
            raise CsrfFailed()


def _same(expected: str, submitted: str) -> bool:
    """Constant-time equality of a secret and what a form sent, which may hold any text
    (`hmac.compare_digest` refuses non-ASCII strings, so compare their UTF-8 bytes)."""
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace"))


def next_path(request: Request) -> str:
    """Where to go after logging in: this page, or for a form post the page it came from."""
    path = request.url.path
    if request.method != "GET":
        path = path.rsplit("/", 1)[0] or "/"
    elif request.url.query:
        path = f"{path}?{request.url.query}"
    return path


def safe_next(target: str | None) -> str:
    """Only local paths: never another site (`//evil`, `https://...`, `/\\evil`)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def login_url(next_: str) -> str:
    return "/login" if next_ == "/" else f"/login?next={quote(next_, safe='/')}"


def client_address(request: Request) -> str | None:
    """The client's address (uvicorn's proxy headers support puts a trusted proxy's
    X-Forwarded-For here)."""
    return request.client.host if request.client else None


def current_viewer(request: Request) -> Viewer:
    """FastAPI dependency: the logged-in user, or LoginRequired."""
    state = request.app.state
    secret = state.sessions.secret(request.cookies.get(SESSION_COOKIE))
    user = state.registry.session_user(secret) if secret else None
    if user is None:
        raise LoginRequired(next_path(request))
    return Viewer(user, secret, state.sessions.csrf(secret))


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
