"""Charts as inline SVG drawn on the server (no plotting library, no JS): the training
curve (train loss on the left axis, the validation metric 0..1 on the right) and a
domain's drift over time."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 48, 14, 34
LOSS_COLOUR, VAL_COLOUR = "#3867d6", "#e17b20"


def _ticks(low: float, high: float, n: int = 4) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / n
    return [low + i * step for i in range(n + 1)]


def _polyline(points: list[tuple[float, float]], colour: str, dashed: bool = False) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points
    )
    return (
        f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>' + dots
    )


def training_curve_svg(history: list[dict[str, Any]]) -> Markup | None:
    """An SVG of loss and validation metric per epoch, or None without a history."""
    rows = [h for h in history if isinstance(h.get("epoch"), int | float)]
    if not rows:
        return None
    val_key = next((k for k in rows[0] if k.startswith("val_")), None)
    epochs = [float(h["epoch"]) for h in rows]
    losses = [float(h["train_loss"]) for h in rows if "train_loss" in h]
    x0, x1 = min(epochs), max(epochs)
    span = (x1 - x0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(epoch: float) -> float:
        return LEFT + (epoch - x0) / span * plot_w

    lo, hi = (min(losses), max(losses)) if losses else (0.0, 1.0)
    lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-6 else (lo, hi)

    def y_loss(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * plot_h

    def y_val(v: float) -> float:
        return TOP + (1.0 - v) * plot_h

    parts = [
        f'<svg class="curve" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'role="img" aria-label="training curve" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fbfbfd" '
        'stroke="#d5d8e0"/>',
    ]
    for t in _ticks(lo, hi):
        yy = y_loss(t)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eceef3"/>'
            f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="{LOSS_COLOUR}">{t:.2f}</text>'
        )
    if val_key:
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            parts.append(
                f'<text x="{LEFT + plot_w + 6}" y="{y_val(t) + 4:.1f}" font-size="10" '
                f'fill="{VAL_COLOUR}">{t:.2f}</text>'
            )
    step = max(1, round(len(epochs) / 8))
    for e in epochs[::step]:
        parts.append(
            f'<text x="{x(e):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle" font-size="10" '
            f'fill="#555">{e:g}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" '
        'font-size="11" fill="#555">epoch</text>'
    )
    if losses:
        points = [(x(float(h["epoch"])), y_loss(float(h["train_loss"]))) for h in rows]
        parts.append(_polyline(points, LOSS_COLOUR))
    if val_key:
        points = [
            (x(float(h["epoch"])), y_val(float(h[val_key])))
            for h in rows
            if isinstance(h.get(val_key), int | float)
        ]
        parts.append(_polyline(points, VAL_COLOUR, dashed=True))
    legend = [("train loss", LOSS_COLOUR)] + ([(val_key, VAL_COLOUR)] if val_key else [])
    for i, (label, colour) in enumerate(legend):
        lx = LEFT + 8 + i * 150
        parts.append(
            f'<rect x="{lx}" y="{TOP + 6}" width="12" height="3" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="{TOP + 11}" font-size="11" fill="#333">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


DRIFT_W, DRIFT_H, DRIFT_RIGHT = 560, 160, 96
DRIFT_COLOUR, THRESHOLD_COLOUR = "#8854d0", "#eb3b5a"
PSI_READINGS = ((0.1, "0.1 moderate"), (0.25, "0.25 large"))
"""PSI's common reading: below 0.1 little change, 0.1-0.25 moderate, above 0.25 large."""


def drift_svg(points: list[tuple[datetime, float]], threshold: float | None) -> Markup | None:
    """A small SVG of a domain's drift (PSI) over time, with PSI's usual reading lines and
    the domain's retrain threshold; None without points."""
    if not points:
        return None
    plot_w, plot_h = DRIFT_W - LEFT - DRIFT_RIGHT, DRIFT_H - TOP - BOTTOM
    top = max([d for _, d in points] + [threshold or 0.0, 0.3]) * 1.1
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0).total_seconds() or 1.0

    def x(at: datetime) -> float:
        return LEFT + (at - t0).total_seconds() / span * plot_w

    def y(value: float) -> float:
        return TOP + (top - value) / top * plot_h

    parts = [
        f'<svg class="curve drift" viewBox="0 0 {DRIFT_W} {DRIFT_H}" width="{DRIFT_W}" '
        f'height="{DRIFT_H}" role="img" aria-label="drift over time" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fbfbfd" '
        'stroke="#d5d8e0"/>',
    ]
    lines = [(v, label, "#c8ccd6") for v, label in PSI_READINGS]
    if threshold is not None:
        lines.append((threshold, f"retrain {threshold:g}", THRESHOLD_COLOUR))
    for value, label, colour in lines:
        yy = y(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" '
            f'stroke="{colour}" stroke-dasharray="4 3"/>'
            f'<text x="{LEFT + plot_w + 4}" y="{yy + 4:.1f}" font-size="10" '
            f'fill="{colour}">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{LEFT - 6}" y="{y(0) + 4:.1f}" text-anchor="end" font-size="10" '
        f'fill="#555">0</text>'
    )
    for at, anchor in ((t0, "start"), (t1, "end")):
        parts.append(
            f'<text x="{x(at):.1f}" y="{TOP + plot_h + 14}" text-anchor="{anchor}" '
            f'font-size="10" fill="#555">{at:%Y-%m-%d %H:%M}</text>'
        )
    parts.append(_polyline([(x(at), y(d)) for at, d in points], DRIFT_COLOUR))
    parts.append("</svg>")
    return Markup("".join(parts))
