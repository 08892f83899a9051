"""A promotion request: candidate vs production side by side, and the decisions.

The registry decides whether a decision is allowed (role, reviewer != requester, final
decisions, superseded requests, failed policy without an override); a refusal comes back
on the same page with the registry's reason, and nothing moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from registry.constants import MAX_ID
from registry.errors import ConflictError, InvalidRecord, PermissionDenied, RuleViolation

from ..auth import CurrentViewer, Viewer, client_address
from ..live import live_evidence
from ..views import request_view
from ..web import render

router = APIRouter()
DONE = {
    "approved": "Approved: the alias moved.",
    "overridden": "Approved with an override: the alias moved, recorded as an override.",
    "rejected": "Rejected.",
}


def parse_id(text: str) -> int:
    """A request id from the path: ASCII digits, within what the column holds."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_ID:
        raise HTTPException(404, f"there is no promotion request {text!r}")
    return int(text)


def request_page(
    request: Request,
    request_id: int,
    viewer: Viewer,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    reg = request.app.state.registry
    view = request_view(reg, request_id)
    message = DONE.get(request.query_params.get("done", "")) if error is None else None
    return render(
        request,
        "request.html",
        {"v": view, "live": live_evidence(reg, view.request), "error": error, "message": message},
        viewer=viewer,
        status=status,
    )


@router.get("/requests/{request_id}")
def show_request(request: Request, request_id: str, viewer: CurrentViewer) -> Response:
    return request_page(request, parse_id(request_id), viewer)


def _decide(
    request: Request, request_id: str, viewer: Viewer, csrf_token: str, act: Callable[[], str]
) -> Response:
    number = parse_id(request_id)
    request.app.state.sessions.check_csrf(viewer.session, csrf_token)
    try:
        done = act()
    except PermissionDenied as exc:
        return request_page(request, number, viewer, error=str(exc), status=403)
    except InvalidRecord as exc:
        return request_page(request, number, viewer, error=str(exc), status=400)
    except (RuleViolation, ConflictError) as exc:
        return request_page(request, number, viewer, error=str(exc), status=409)
    return RedirectResponse(f"/requests/{number}?done={done}", status_code=303)


@router.post("/requests/{request_id}/approve")
def approve(
    request: Request,
    request_id: str,
    viewer: CurrentViewer,
    csrf_token: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    override_reason: Annotated[str, Form()] = "",
) -> Response:
    def act() -> str:
        decided = request.app.state.registry.approve(
            parse_id(request_id),
            reviewer=viewer.name,
            comment=comment.strip(),
            override_reason=override_reason.strip() or None,
            address=client_address(request),
        )
        # what the registry recorded: an override only where the policy failed
        return "approved" if decided.policy_passed else "overridden"

    return _decide(request, request_id, viewer, csrf_token, act)


@router.post("/requests/{request_id}/reject")
def reject(
    request: Request,
    request_id: str,
    viewer: CurrentViewer,
    csrf_token: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> Response:
    def act() -> str:
        request.app.state.registry.reject(
            parse_id(request_id),
            reviewer=viewer.name,
            comment=comment.strip(),
            address=client_address(request),
        )
        return "rejected"

    return _decide(request, request_id, viewer, csrf_token, act)
