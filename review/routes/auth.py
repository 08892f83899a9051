"""Login with a token, logout. A refused token gets one answer whatever was wrong; failed
logins are throttled per client address and per token id (`registry.throttle`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from registry.resources.users import token_key_id
from registry.throttle import Blocked, Key

from ..auth import (
    LOGIN_COOKIE,
    LOGIN_NONCE_SECONDS,
    SESSION_COOKIE,
    CurrentViewer,
    client_address,
    safe_next,
)
from ..web import render

router = APIRouter()
REFUSED = (
    "That token was not accepted. Check that you pasted all of it, or ask an admin for a new one."
)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_form(request: Request, next_: str, error: str | None = None, status: int = 200):
    state = request.app.state
    cookie, nonce = state.sessions.login_nonce()
    response = render(
        request,
        "login.html",
        {
            "next": safe_next(next_),
            "nonce": nonce,
            "no_users": not state.registry.auth_enabled(),
            "error": error,
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=LOGIN_NONCE_SECONDS,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    return _login_form(request, next)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    nonce: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    state = request.app.state
    state.sessions.check_login_nonce(request.cookies.get(LOGIN_COOKIE), nonce)
    reg = state.registry
    address = client_address(request) or "(unknown)"
    key_id = token_key_id(token)
    keys: list[Key] = [("address", address)] + ([("token id", key_id)] if key_id else [])
    blocked = state.login_throttle.blocked(keys)
    if blocked is not None:
        return _throttled(request, next, blocked)
    user = reg.authenticate(token)
    if user is None:
        reg.record_audit(
            "login", "(unknown)", outcome="refused", address=address, reason="token not accepted"
        )
        for newly in state.login_throttle.failed(keys):
            _audit_blocked(request, newly, address)
        return _login_form(request, next, REFUSED, status=401)
    secret = reg.create_session(user.name, ttl=state.sessions.ttl, address=client_address(request))
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        state.sessions.cookie(secret),
        max_age=max(1, math.ceil(state.sessions.ttl.total_seconds())),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def _throttled(request: Request, next_: str, blocked: Blocked) -> Response:
    """The login form again, 429, saying when the next try is let through."""
    wait = math.ceil(blocked.retry_after)
    at = datetime.now(UTC) + timedelta(seconds=wait)
    who = "this address" if blocked.key[0] == "address" else "this token"
    response = _login_form(
        request,
        next_,
        f"Too many failed logins from {who}. Try again in {wait} s (after {at:%H:%M:%S} "
        "UTC); check that you pasted all of the token, or ask an admin for a new one.",
        status=429,
    )
    response.headers["Retry-After"] = str(wait)
    return response


def _audit_blocked(request: Request, blocked: Blocked, address: str) -> None:
    """One audit record when a key reaches the limit (not one per refused attempt)."""
    throttle = request.app.state.login_throttle
    kind, value = blocked.key
    request.app.state.registry.record_audit(
        "login_throttled",
        "(unknown)",
        outcome="refused",
        address=address,
        blocked=kind,
        **({"key_id": value} if kind == "token id" else {}),
        failures=throttle.limit,
        window_seconds=throttle.window_seconds,
        retry_after_seconds=round(blocked.retry_after, 1),
    )


@router.post("/logout")
def logout(
    request: Request, viewer: CurrentViewer, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    state = request.app.state
    state.sessions.check_csrf(viewer.session, csrf_token)
    state.registry.end_session(viewer.session, address=client_address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """For load balancers and tests: the app is up (it does not touch the database)."""
    return {"status": "ok"}
