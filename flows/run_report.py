"""What a run reports: the run table's rows and notes (`mpt run` prints them), and the
Prefect artifacts the retrain flow publishes (a markdown summary per domain with its
training curve, and a metrics table)."""

from __future__ import annotations

import base64
import io
from typing import Any

from .pipeline import DomainResult

NOTE_CHARS = 160
"""The run table's note column keeps this much of a reason (the row that failed included);
the full reason is in the JSON output, the Prefect artifacts and the logs."""


def note(r: DomainResult) -> str:
    """The reason shown in the run table: the first problem line, cut to NOTE_CHARS."""
    lines = [line.strip() for line in r.message.splitlines() if line.strip()]
    if r.status == "invalid" and len(lines) > 1:
        text = lines[1].removeprefix("- ")  # the first failed check, with its rows
        if len(lines) > 2:
            text += f" (+{len(lines) - 2} more problem(s))"
    else:
        text = lines[0] if lines else ""
    return text if len(text) <= NOTE_CHARS else text[: NOTE_CHARS - 1] + "…"


def summary_row(r: DomainResult) -> dict[str, Any]:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    return {
        "domain": r.domain,
        "status": r.status,
        "data_version": (r.data_version or "-")[:12],
        "validation": r.validation,
        "metric": r.metric or "-",
        "candidate": fmt(r.candidate) + (f" (v{r.version})" if r.version else ""),
        "production": fmt(r.production)
        + (f" (v{r.production_version})" if r.production_version else ""),
        "request": f"#{r.request_id}" if r.request_id else "-",
        "tune_s": "-" if r.tune_seconds is None else f"{r.tune_seconds:.1f}",
        "embedded": f"{r.features['embedded']}/{r.features['images']}" if r.features else "-",
        "note": note(r),
    }


def curve_png(result: DomainResult) -> str | None:
    """The training curve (train loss, and the validation metric where there is one) as a
    base64 PNG, or None without a history."""
    if not result.history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    epochs = [h["epoch"] for h in result.history]
    ax.plot(epochs, [h["train_loss"] for h in result.history], label="train loss")
    val_key = next((k for k in result.history[0] if k.startswith("val_")), None)
    if val_key:
        ax.plot(epochs, [h[val_key] for h in result.history], label=val_key)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def publish(results: list[DomainResult]) -> None:
    """Prefect artifacts: a markdown summary per domain, a metrics table, training curves."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    for r in results:
        lines = [
            f"# Retrain: `{r.domain}`",
            "",
            f"- status: **{r.status}**" + (f" (in {r.stage})" if r.stage else ""),
            f"- data version: `{r.data_version or '-'}`",
            f"- validation: {r.validation}",
        ]
        if r.status == "registered":
            prod = "-" if r.production is None else f"{r.production:.4f} (v{r.production_version})"
            lines += [
                f"- candidate v{r.version}: {r.metric} = {r.candidate:.4f}; production: {prod}",
                f"- promotion request #{r.request_id}: policy "
                + ("passed" if r.policy_passed else f"FAILED ({r.message})"),
                f"- **decision needed**: `mpt promote approve {r.request_id} --user <reviewer>` "
                f"or `mpt promote reject {r.request_id} --comment ...`",
            ]
        elif r.message:
            lines += ["", "```", r.message, "```"]
        png = curve_png(r)
        if png:
            lines += ["", f"![training curve](data:image/png;base64,{png})"]
        create_markdown_artifact(
            "\n".join(lines),
            key=f"retrain-{r.domain}".lower(),
            description=f"retrain of {r.domain}",
        )
    create_table_artifact(
        [summary_row(r) for r in results], key="retrain-metrics", description="retrain run"
    )
