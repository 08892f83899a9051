"""Who may call the API: the `Gate` of one server, and the FastAPI dependency
`require_viewer` that asks it.

Built on the registry's users and roles: `PromptRegistry.auth_enabled()` (an active user
exists, or MPT_AUTH=required) and `PromptRegistry.authenticate(token) -> UserInfo | None`
(roles ordered viewer < requester < reviewer < admin, `registry.ROLES`). While
authentication is off the API is open, as on the embedded default (loopback); a registry
object without those methods counts as off. When it is on, a request needs
`Authorization: Bearer <token>` of an active user with at least the viewer role.

Every token is checked against the registry, so a revoked one stops working at once.
While the registry cannot be read (the catalog's last poll failed, or this very check
does), a token the registry verified within `token_cache_seconds` is still accepted, and
any other gets a 503 naming the cause: the versions already loaded keep serving the
callers known a moment ago, and nothing answers 500. Once the registry is back (the
catalog sees it within one polling interval) every token is checked against it again.

Failed attempts are throttled per client address and per token id
(`registry.throttle`): over the limit, a 429 says when to retry, and the moment a key
is blocked is recorded in the audit log.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from registry import role_at_least
from registry.errors import RegistryError, RegistryUnavailable, short_reason
from registry.resources.users import check_role, digest, token_key_id
from registry.throttle import Blocked, FailureThrottle, Key

from .errors import ApiError
from .settings import ServeSettings

log = logging.getLogger("serving")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mpt-serving"'}
CACHED_TOKENS = 1024
RETRY_SECONDS = 5


def auth_required(registry: Any) -> bool:
    """Whether requests need a token: the registry's own answer, False for a registry
    object that has no user support."""
    enabled = getattr(registry, "auth_enabled", None)
    return callable(enabled) and callable(getattr(registry, "authenticate", None)) and enabled()


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "(unknown)"


def _unavailable(problem: str) -> ApiError:
    return ApiError(
        503,
        problem,
        fix="retry shortly: the server reconnects by itself (GET /readyz says when the "
        "registry is back)",
        headers={"Retry-After": str(RETRY_SECONDS)},
    )


class Gate:
    """Checks bearer tokens for one server: throttle, registry, then the short cache of
    tokens the registry verified (used only while the registry cannot be read)."""

    def __init__(
        self,
        registry: Any,
        settings: ServeSettings,
        registry_down: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.registry = registry
        self.cache_seconds = settings.token_cache_seconds
        self.throttle = FailureThrottle(
            settings.auth_failures, settings.auth_failure_window_seconds
        )
        self._registry_down = registry_down
        self._verified: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._auth_on: bool | None = None  # the registry's last answer

    def learn(self) -> None:
        """Ask the registry now whether tokens are needed (at start-up), so that the answer
        is known should the registry become unreadable before the first request."""
        try:
            self._auth_on_now()
        except ApiError:  # the registry cannot be read yet: the first request asks again
            log.warning("serving: cannot tell yet whether the API needs tokens")

    # ------------------------------------------------------------------ the check
    def user(self, token: str | None, address: str, minimum: str = "viewer") -> Any:
        """The user behind `token` with at least the role `minimum`; None while
        authentication is off. Else an ApiError: 401, 403, 429, or 503 while the
        registry cannot be read and the token was not verified recently."""
        if token is None:
            if not self._auth_on_now():
                return None
            raise ApiError(
                401,
                "this server needs a bearer token",
                field="Authorization",
                fix=f"send 'Authorization: Bearer <token>' of a registry user ({minimum} "
                "role or above)",
                headers=CHALLENGE,
            )
        key_id = token_key_id(token)
        keys: list[Key] = [("address", address)] + ([("token id", key_id)] if key_id else [])
        blocked = self.throttle.blocked(keys)
        if blocked is not None:
            raise self._too_many(blocked)
        user = self._authenticate(token)
        if user is None:
            if not self._auth_on_now():
                return None  # an open server ignores tokens, as it always has
            for newly in self.throttle.failed(keys):
                self._audit_blocked(newly, address)
            raise ApiError(
                401,
                "the bearer token is not valid",
                field="Authorization",
                fix="use a current token of a registry user",
                headers=CHALLENGE,
            )
        role = getattr(user, "role", None)
        if not role_at_least(role, minimum):
            raise ApiError(
                403,
                f"user {getattr(user, 'name', '?')!r} has the role {role!r}; this needs "
                f"{minimum} or above",
                field="Authorization",
                fix="ask an admin for the role",
            )
        return user

    def _authenticate(self, token: str) -> Any:
        """The registry's answer (and remember it), or, while it cannot be read, the
        user it gave for this token within the last `cache_seconds`."""
        key = digest(token)
        down = self._registry_down()
        if down is None and callable(getattr(self.registry, "authenticate", None)):
            try:
                user = self.registry.authenticate(token)
            except RegistryUnavailable as exc:
                down = short_reason(exc)
            else:
                with self._lock:
                    if user is None:
                        self._verified.pop(key, None)
                        return None
                    self._verified[key] = (user, time.monotonic())
                    self._verified.move_to_end(key)
                    while len(self._verified) > CACHED_TOKENS:
                        self._verified.popitem(last=False)
                    self._auth_on = True
                return user
        elif down is None:
            return None  # a registry without users
        with self._lock:
            user, at = self._verified.get(key, (None, -math.inf))
        if user is not None and time.monotonic() - at <= self.cache_seconds:
            return user
        if self._auth_on is False:
            return None  # open when the registry was last read: no token is needed
        raise _unavailable(
            f"the registry cannot be read ({down}), and this token was not verified in the "
            f"last {self.cache_seconds:g} s (MPT_SERVE_TOKEN_CACHE_SECONDS)"
        )

    def _auth_on_now(self) -> bool:
        """Whether tokens are needed: the registry's answer, or its last one while it
        cannot be read."""
        down = self._registry_down()
        if down is None:
            try:
                on = auth_required(self.registry)
            except RegistryUnavailable as exc:
                down = short_reason(exc)
            else:
                self._auth_on = on
                return on
        if self._auth_on is not None:
            return self._auth_on
        raise _unavailable(
            f"the registry cannot be read ({down}), so whether this server needs a token "
            "is not known yet"
        )

    # ------------------------------------------------------------------ throttling
    def _too_many(self, blocked: Blocked) -> ApiError:
        wait = math.ceil(blocked.retry_after)
        at = datetime.now(UTC) + timedelta(seconds=wait)
        return ApiError(
            429,
            f"too many failed token attempts from {blocked.what} ({self.throttle.limit} "
            f"within {self.throttle.window_seconds:g} s); retry in {wait} s, after "
            f"{at:%H:%M:%S} UTC",
            field="Authorization",
            fix="check the token (an admin gives a new one with `mpt user rotate`); the "
            "server's limit is MPT_SERVE_AUTH_FAILURES failed attempts per "
            "MPT_SERVE_AUTH_FAILURE_WINDOW_SECONDS",
            headers={"Retry-After": str(wait)},
        )

    def _audit_blocked(self, blocked: Blocked, address: str) -> None:
        kind, value = blocked.key
        log.warning(
            "serving: %s blocked for %.0f s after %d failed token attempts",
            blocked.what,
            blocked.retry_after,
            self.throttle.limit,
        )
        record = getattr(self.registry, "record_audit", None)
        if not callable(record):
            return
        try:
            record(
                "token_throttled",
                "(unknown)",
                outcome="refused",
                address=address,
                blocked=kind,
                **({"key_id": value} if kind == "token id" else {}),
                failures=self.throttle.limit,
                window_seconds=self.throttle.window_seconds,
                retry_after_seconds=round(blocked.retry_after, 1),
            )
        except RegistryError as exc:  # the log above has it; the refusal stands
            log.warning("serving: could not record the block in the audit log: %s", exc)


def require_role(minimum: str):
    """A dependency that lets through users with `minimum` or a higher role."""
    check_role(minimum)

    async def dependency(request: Request) -> Any:
        gate: Gate = request.app.state.service.gate
        user = await run_in_threadpool(
            gate.user, _bearer(request), client_address(request), minimum
        )
        request.state.user = user
        return user

    return dependency


async def caller_sees_domains(request: Request, public: bool) -> bool:
    """Whether /readyz and /metrics may name domains and versions to this caller: always
    when they are public (MPT_SERVE_PUBLIC_STATUS), else when the caller passes as a
    viewer (anyone, while authentication is off)."""
    if public:
        return True
    gate: Gate = request.app.state.service.gate
    try:
        await run_in_threadpool(gate.user, _bearer(request), client_address(request))
    except ApiError:
        return False
    return True


require_viewer = require_role("viewer")
