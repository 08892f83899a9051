"""The review app: `create_app(registry)` builds the FastAPI application.

Errors never show a stack trace: known registry errors become their page (404, 403, 409),
a registry database that cannot be read a 503 page naming the cause, a body over the
limit a 413 page, anything else a 500 page with a reference that the server log repeats
with the trace.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import PromptRegistry, RegistrySettings
from registry.errors import (
    InvalidRecord,
    NotFoundError,
    PermissionDenied,
    RegistryError,
    RegistryUnavailable,
    short_reason,
)
from registry.throttle import FailureThrottle

from .auth import CsrfFailed, LoginRequired, Sessions, login_url
from .routes import auth, domains, pages, requests
from .settings import ReviewSettings, signing_key
from .web import STATIC, render

log = logging.getLogger("review")

PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
REASONS = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "Registry unavailable",
}
RETRY_SECONDS = 10


class BodyTooLarge(Exception):
    """A request body over MPT_REVIEW_MAX_BODY_KB (raised while the body is read)."""


class LimitBody:
    """Refuses a request body over `max_bytes`: by its Content-Length before it is read,
    else (a chunked body) while it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_bytes:
            page = error_page(Request(scope, receive), 413, _too_large(self.max_bytes))
            await page(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> str:
    return (
        f"The request is over {limit // 1024} KB, more than any form of these pages sends "
        "(the limit is MPT_REVIEW_MAX_BODY_KB). Nothing was changed."
    )


class SecurityHeaders:
    """Adds the headers above to every response that does not set its own, and keeps
    pages out of shared caches (they show who is logged in)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in PAGE_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"cache-control" not in present and not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def error_page(request: Request, status: int, message: str) -> Response:
    return render(
        request,
        "error.html",
        {"status": status, "title": REASONS.get(status, "Error"), "detail": message},
        status=status,
    )


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return error_page(
            request,
            403,
            "The form was missing its security token or it did not match your session "
            "(CSRF check). Nothing was changed; reload the page and try again.",
        )

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return error_page(request, 404, str(exc))

    @app.exception_handler(PermissionDenied)
    async def _denied(request: Request, exc: PermissionDenied) -> Response:
        return error_page(request, 403, str(exc))

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, exc: BodyTooLarge) -> Response:
        return error_page(request, 413, _too_large(request.app.state.max_body))

    @app.exception_handler(RegistryUnavailable)
    async def _unavailable(request: Request, exc: RegistryUnavailable) -> Response:
        ref = secrets.token_hex(4)
        log.error(
            "registry unavailable [%s] on %s %s: %s", ref, request.method, request.url.path, exc
        )
        response = error_page(
            request,
            503,
            f"The registry database cannot be read ({short_reason(exc)}). These pages work "
            "again by themselves once it can; if this lasts, tell an operator (reference "
            f"{ref} in the server log).",
        )
        response.headers["Retry-After"] = str(RETRY_SECONDS)
        return response

    @app.exception_handler(RegistryError)
    async def _registry(request: Request, exc: RegistryError) -> Response:
        ref = secrets.token_hex(4)
        log.error("registry error [%s] on %s %s: %s", ref, request.method, request.url.path, exc)
        return error_page(
            request, 503, f"The registry could not answer (reference {ref} in the server log)."
        )

    @app.exception_handler(InvalidRecord)
    async def _invalid_value(request: Request, exc: InvalidRecord) -> Response:
        return error_page(request, 400, f"{exc} Nothing was changed.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI's form parsing wraps it
            return error_page(request, 413, _too_large(request.app.state.max_body))
        detail = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else None
        return error_page(request, exc.status_code, detail or "There is no page at this address.")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'input'}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return error_page(
            request, 400, f"The request was not understood ({problems}). Nothing was changed."
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        ref = secrets.token_hex(4)
        log.error(
            "unhandled error [%s] on %s %s", ref, request.method, request.url.path, exc_info=exc
        )
        return error_page(
            request, 500, f"The page failed (reference {ref}); the server log has the details."
        )


def create_app(
    registry: PromptRegistry,
    settings: ReviewSettings | None = None,
    *,
    home=None,
) -> FastAPI:
    """The review pages for `registry`. The session key comes from `settings.secret`, else
    from `<home>/review-secret` (home: MPT_HOME)."""
    settings = settings or ReviewSettings()
    home = home if home is not None else RegistrySettings().home
    app = FastAPI(title="mpt review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.registry = registry
    app.state.sessions = Sessions(
        signing_key(settings, home), timedelta(hours=settings.session_hours)
    )
    app.state.login_throttle = FailureThrottle(
        settings.login_failures, settings.login_failure_window_seconds
    )
    app.state.max_body = int(settings.max_body_kb * 1024)
    app.add_middleware(LimitBody, max_bytes=app.state.max_body)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (auth, pages, requests, domains):
        app.include_router(module.router)
    _install_error_pages(app)
    return app
