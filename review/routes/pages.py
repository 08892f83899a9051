"""The domains overview and the list of promotion requests."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from registry.constants import REQUEST_STATUSES

from ..auth import CurrentViewer
from ..views import overview
from ..web import render

router = APIRouter()


@router.get("/")
def domains_overview(request: Request, viewer: CurrentViewer) -> Response:
    rows = overview(request.app.state.registry)
    return render(request, "overview.html", {"rows": rows}, viewer=viewer)


@router.get("/requests")
def request_list(request: Request, viewer: CurrentViewer, status: str = "pending") -> Response:
    wanted = status if status in REQUEST_STATUSES else None
    items = request.app.state.registry.requests(status=wanted)
    return render(
        request,
        "requests.html",
        {"items": list(reversed(items)), "status": wanted or "all", "statuses": REQUEST_STATUSES},
        viewer=viewer,
    )
