"""Who may call the API: one FastAPI dependency, `require_viewer`.

Built on the registry's users and roles: `PromptRegistry.auth_enabled()` (an active user
exists, or MPT_AUTH=required) and `PromptRegistry.authenticate(token) -> UserInfo | None`
(roles ordered viewer < requester < reviewer < admin, `registry.ROLES`). While
authentication is off the API is open, as on the embedded default (loopback); a registry
object without those methods counts as off. When it is on, a request needs
`Authorization: Bearer <token>` of an active user with at least the viewer role.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from registry import role_at_least
from registry.resources.users import check_role

from .errors import ApiError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mpt-serving"'}


def auth_required(registry: Any) -> bool:
    """Whether requests need a token: the registry's own answer, False for a registry
    object that has no user support."""
    enabled = getattr(registry, "auth_enabled", None)
    return callable(enabled) and callable(getattr(registry, "authenticate", None)) and enabled()


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_role(minimum: str):
    """A dependency that lets through users with `minimum` or a higher role."""
    check_role(minimum)

    async def dependency(request: Request) -> Any:
        registry = request.app.state.service.registry
        token = _bearer(request)
        # A valid token is an active user's, so authentication is on: one database visit
        # for the usual request; whether it is on is asked only when the token is not.
        user = None
        if token is not None and callable(getattr(registry, "authenticate", None)):
            user = await run_in_threadpool(registry.authenticate, token)
        if user is None:
            if not await run_in_threadpool(auth_required, registry):
                return None
            if token is None:
                raise ApiError(
                    401,
                    "this server needs a bearer token",
                    field="Authorization",
                    fix=f"send 'Authorization: Bearer <token>' of a registry user ({minimum} "
                    "role or above)",
                    headers=CHALLENGE,
                )
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
        request.state.user = user
        return user

    return dependency


require_viewer = require_role("viewer")
