"""Rendering shared by the routes: the Jinja environment, its filters, and `render`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from .auth import Viewer

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def _num(value: Any, digits: int = 4) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:+.{digits}f}"


def _trend(value: Any, eps: float = 1e-9) -> str:
    if not isinstance(value, int | float):
        return "none"
    return "up" if value > eps else "down" if value < -eps else "same"


def _dt(value: datetime | None) -> str:
    return "–" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _short(value: Any, n: int = 12) -> str:
    text = "–" if value is None else str(value)
    return text if len(text) <= n else text[:n] + "…"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, signed=_signed, trend=_trend, dt=_dt, short=_short)
    return env


templates = Jinja2Templates(env=environment())


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    viewer: Viewer | None = None,
    status: int = 200,
) -> Response:
    data = {"viewer": viewer, "message": None, "error": None, **(context or {})}
    return templates.TemplateResponse(request, template, data, status_code=status)
