"""The FastAPI app: POST /v1/predict, GET /v1/domains, /healthz, /readyz, /metrics, /docs.

The same app runs in one process under uvicorn (`mpt serve`) and in every Ray Serve
replica (`mpt serve --ray`); its lifespan builds the replica's `ServingService` (one
backbone copy per distinct backbone, every domain's prompts under the alias) and waits
for the first load before it takes traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpt_core import __version__
from mpt_core.features import Prediction
from registry import PromptRegistry, RegistrySettings, open_registry

from .auth import caller_sees_domains, require_viewer
from .errors import ApiError, ItemError
from .items import ReadyItem, check_items, read_items
from .schemas import (
    DomainsResponse,
    ErrorResponse,
    PredictResponse,
    inline_refs,
    multipart_schema,
    predict_request,
)
from .service import ServingService, without_domains
from .settings import ServeSettings

log = logging.getLogger("serving")
Viewer = Annotated[Any, Depends(require_viewer)]

ROUTES = "POST /v1/predict, GET /v1/domains, /healthz, /readyz, /metrics, /docs"
ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "malformed body, or items refused for different reasons",
        401: "a bearer token is needed (registry with users)",
        404: "unknown domain, or no version under the alias",
        413: "too many items, image or body too large",
        415: "not an image, or neither JSON nor multipart",
        422: "a field missing or wrong for the domain's task",
        429: "too many failed token attempts from this address or for this token id",
        503: "the domain's version is loading or failed to load, or the registry cannot be "
        "read and the token was not verified recently",
    }.items()
}


class BodyTooLarge(Exception):
    pass


class ObserveAndLimit:
    """ASGI middleware: refuses bodies over the limit (Content-Length first, then while
    reading) and records each request's route, status and latency."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        length = dict(scope["headers"]).get(b"content-length", b"0")
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge
            return message

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if length.isdigit() and int(length) > self.max_body:
                await _too_large(self.max_body)(scope, receive, observed)
            else:
                await self.app(scope, limited, observed)
        finally:
            service = getattr(scope["app"].state, "service", None)
            if service is not None:
                route = getattr(scope.get("route"), "path", "other")
                service.metrics.requests.labels(route, str(status)).inc()
                service.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _too_large(limit: int) -> JSONResponse:
    return _error(
        ApiError(
            413,
            f"the request body is over {limit / 2**20:.0f} MB",
            fix="send fewer or smaller images per request (the server's limit is "
            "MPT_SERVE_MAX_REQUEST_MB)",
        )
    )


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI, max_body: int) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _too_large(max_body)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"][1:]) or str(first["loc"][0])
        return _error(
            ApiError(422, f"{name}: {first['msg']}", field=name, fix="see the API at /docs")
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        fix = f"the API has {ROUTES}" if exc.status_code in (404, 405) else None
        return _error(ApiError(exc.status_code, str(exc.detail), fix=fix, headers=exc.headers))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("serving: internal error on %s", request.url.path, exc_info=exc)
        return _error(ApiError(500, "internal error; the server log has the details"))


def _result(item: ReadyItem, prediction: Prediction) -> dict[str, Any]:
    d = item.deployed
    out: dict[str, Any] = {
        "index": item.index,
        "domain": d.domain,
        "alias": d.alias,
        "version": d.version,
        "task": d.task,
        "prediction": prediction.value,
        "scores": dict(sorted(prediction.scores.items(), key=lambda kv: -kv[1])),
        "backbone": d.backbone.to_dict(),
    }
    wanted = item.embedding or prediction.value is None  # nothing ranked: the embedding is it
    if wanted and prediction.embedding is not None:  # generative backbones have none
        out["embedding"] = prediction.embedding.cpu().tolist()
    return out


def create_app(
    settings: ServeSettings | None = None,
    registry_settings: RegistrySettings | None = None,
    *,
    registry: PromptRegistry | None = None,
) -> FastAPI:
    """The serving app. `registry` (an open registry) or `registry_settings` (opened in
    each process that runs the app, e.g. every Ray Serve replica; default: MPT_* env)."""
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        reg = registry or await run_in_threadpool(open_registry, registry_settings)
        service = ServingService(settings, reg)
        app.state.service = service
        service.start()
        await run_in_threadpool(service.gate.learn)  # whether tokens are needed, known early
        if not await asyncio.to_thread(
            service.catalog.wait_synced, settings.startup_timeout_seconds
        ):
            log.warning("serving: the first load is still running; /readyz says 503 until then")
        _, ready = service.readiness()
        log.info(
            "serving: %s: %s",
            ready["status"],
            ", ".join(f"{d} v{v}" for d, v in ready["serving"].items()) or "no domain",
        )
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    app = FastAPI(
        title="mpt-platform serving",
        version=__version__,
        description="Predictions from every domain's prompts under one alias, on shared "
        "frozen backbones. Items of different domains are batched together.",
        lifespan=lifespan,
    )
    app.add_middleware(ObserveAndLimit, max_body=settings.max_request_bytes)
    install_error_handlers(app, settings.max_request_bytes)

    @app.post(
        "/v1/predict",
        summary="Predict for a batch of images; items may mix domains",
        response_model=None,
        responses={200: {"model": PredictResponse}, **ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": multipart_schema()},
                    "application/json": {
                        "schema": inline_refs(predict_request().model_json_schema())
                    },
                },
            }
        },
    )
    async def predict(
        request: Request,
        user: Viewer,
        partial: Annotated[
            bool, Query(description="Serve the valid items and report the others in place.")
        ] = False,
    ) -> JSONResponse:
        service: ServingService = request.app.state.service
        raw = await read_items(request, settings)
        snapshot = service.catalog.snapshot()  # this request's versions, one per domain
        checked = await run_in_threadpool(check_items, raw, snapshot, settings)
        errors = [c for c in checked if isinstance(c, ItemError)]
        for e in errors:
            service.metrics.refused.labels(str(e.status)).inc()
        if errors and not (partial and len(errors) < len(checked)):
            raise ApiError.for_items(errors, len(checked))
        ready = [c for c in checked if isinstance(c, ReadyItem)]
        predictions = await service.batcher.submit(
            [(r.deployed.model, r.example, (r.deployed.domain, r.deployed.version)) for r in ready],
            [r.source for r in ready],
        )
        results: dict[int, dict[str, Any]] = {
            r.index: _result(r, p) for r, p in zip(ready, predictions, strict=True)
        }
        for e in errors:
            results[e.index] = {"index": e.index, "error": e.to_dict()}
        return JSONResponse({"results": [results[i] for i in sorted(results)]})

    @app.get(
        "/v1/domains",
        summary="Every domain: alias, version served, task and its value sets",
        response_model=DomainsResponse,
    )
    async def domains(request: Request, user: Viewer) -> dict[str, Any]:
        return request.app.state.service.domains()

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="200 while at least one domain is served and the registry can be read; "
        "lists failed and loading versions",
        responses={
            503: {
                "description": "nothing loaded yet, nothing loadable, or the registry "
                "cannot be read (`reason` says which)"
            }
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        status, body = request.app.state.service.readiness()
        if not await caller_sees_domains(request, settings.public_status):
            body = without_domains(body)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", summary="Prometheus metrics of this replica")
    async def metrics(request: Request) -> Response:
        m = request.app.state.service.metrics
        shown = await caller_sees_domains(request, settings.public_status)
        return Response(m.render(with_domains=shown), media_type=m.content_type)

    @app.get("/", include_in_schema=False)
    async def index() -> dict[str, str]:
        return {"service": "mpt-platform serving", "version": __version__, "routes": ROUTES}

    return app
