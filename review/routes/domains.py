"""A domain: its history timeline, production at a time T, versions, rollback; and the
files of a data version's validation report (GX Data Docs), served only from inside
that report's directory."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from registry import PRODUCTION
from registry.constants import MAX_ID
from registry.errors import ConflictError, InvalidRecord, PermissionDenied, RuleViolation
from registry.timeparse import parse_when

from ..auth import CurrentViewer, Viewer, client_address
from ..live import drift_chart
from ..views import local_report_dir, version_rows
from ..web import render

router = APIRouter()
REPORT_HEADERS = {
    # Generated HTML under our origin: scripts may run, but in a sandbox with no access to
    # the session (unique origin, no cookies, no same-origin requests, no forms).
    "content-security-policy": "sandbox allow-scripts allow-popups",
    "x-content-type-options": "nosniff",
}


def _known(request: Request, domain: str) -> None:
    if domain not in request.app.state.registry.domains():
        raise HTTPException(404, f"there is no domain {domain!r} with registered versions")


def domain_page(
    request: Request,
    domain: str,
    viewer: Viewer,
    *,
    at: str | None = None,
    error: str | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    reg = request.app.state.registry
    _known(request, domain)
    at_result = None
    if at:
        try:
            when = parse_when(at)
        except InvalidRecord as exc:
            error = error or str(exc)
            status = 400 if status == 200 else status
        else:
            at_result = (when, reg.alias_at(domain, when, PRODUCTION))
    history = reg.history(domain)
    requests = reg.requests(domain)
    rows = version_rows(reg.list_versions(domain), history, requests)
    current = reg.resolve(domain)
    return render(
        request,
        "domain.html",
        {
            "domain": domain,
            "current": current,
            "history": list(reversed(history)),
            "rows": rows,
            "requests": list(reversed(requests)),
            "protected": reg.protected_aliases(domain),
            "aliases": reg.aliases(domain),
            "at": at or "",
            "at_result": at_result,
            "rollback_targets": [
                r for r in rows if r.was_production and r.version.number != current
            ],
            "drift": drift_chart(reg, domain, reg.monitoring(domain)),
            "error": error,
            "message": message,
        },
        viewer=viewer,
        status=status,
    )


@router.get("/domains/{domain}")
def show_domain(
    request: Request, domain: str, viewer: CurrentViewer, at: str | None = None
) -> Response:
    done = request.query_params.get("done")
    message = "Rolled back: production moved." if done == "rolled-back" else None
    return domain_page(request, domain, viewer, at=at, message=message)


@router.post("/domains/{domain}/rollback")
def rollback(
    request: Request,
    domain: str,
    viewer: CurrentViewer,
    version: Annotated[int, Form(ge=1, le=MAX_ID)],
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    _known(request, domain)
    request.app.state.sessions.check_csrf(viewer.session, csrf_token)
    try:
        request.app.state.registry.rollback(
            domain,
            version,
            actor=viewer.name,
            reason=reason.strip(),
            address=client_address(request),
        )
    except PermissionDenied as exc:
        return domain_page(request, domain, viewer, error=str(exc), status=403)
    except (RuleViolation, ConflictError, InvalidRecord) as exc:
        return domain_page(request, domain, viewer, error=str(exc), status=409)
    return RedirectResponse(f"/domains/{domain}?done=rolled-back", status_code=303)


def resolve_inside(root: Path, relative: str) -> Path | None:
    """`root/relative` if it is a file inside `root` once every symlink is followed."""
    if "\x00" in relative or relative.startswith(("/", "\\")):
        return None
    base = root.resolve()
    try:
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return target if target.is_relative_to(base) and target.is_file() else None


@router.get("/domains/{domain}/data/{md5}/report/{path:path}")
def report_file(
    request: Request, domain: str, md5: str, path: str, viewer: CurrentViewer
) -> Response:
    data = request.app.state.registry.data_version(domain, md5)
    if data is None:
        raise HTTPException(404, f"data version {md5} of {domain!r} is not recorded")
    root = local_report_dir(data.report_uri)
    if root is None:
        raise HTTPException(
            404, f"the validation report of data version {md5} is not stored on this machine"
        )
    target = resolve_inside(root, path)
    if target is None:
        raise HTTPException(404, f"{path!r} is not a file of this data version's report")
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media, headers=REPORT_HEADERS)
