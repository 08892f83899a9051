"""Retraining when a domain drifts: a check, deployed next to the cron schedules, that
starts a domain's retrain when the drift of its production (what `mpt serve` replicas
report to the registry) is above the domain's `monitoring.drift_threshold`.

At most one retrain per domain per `monitoring.cooldown_hours`, however many checks run at
once: each claims the retrain in the registry first (a compare-and-swap, audited as
`drift_retrain`), and gives the claim back (audited as refused) when the retrain could not
be started. Why a retrain started (the drift, its threshold, when it was measured) travels
to the retrain flow as its `trigger` parameter: in the flow run's parameters, and in the
lineage of the version it registers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger

from registry import PromptRegistry, open_registry

CHECK_SECONDS = 300
"""How often the deployed check runs."""
DEPLOYMENT = "drift-check"
ACTOR = "drift-check"

Start = Callable[[str, dict[str, Any]], str]
"""(domain, trigger) -> the id of the retrain run it started."""


@dataclass(frozen=True)
class Drifted:
    """A domain whose production drifted above its threshold."""

    domain: str
    version: int
    drift: float
    threshold: float
    samples: int
    at: datetime
    cooldown_hours: float

    def trigger(self) -> dict[str, Any]:
        return {
            "kind": "drift",
            "drift": self.drift,
            "threshold": self.threshold,
            "statistic": "psi",
            "production_version": self.version,
            "samples": self.samples,
            "measured_at": self.at.isoformat(),
        }


def drifted(registry: PromptRegistry) -> list[Drifted]:
    """Domains whose newest drift point, measured on the version production serves now,
    is above their `drift_threshold` (three registry reads in all)."""
    targets = registry.monitor_targets()
    latest = registry.latest_drift()
    production = registry.alias_targets()
    out = []
    for domain, target in sorted(targets.items()):
        threshold, point = target.settings.drift_threshold, latest.get(domain)
        if threshold is None or point is None or point.version != production.get(domain):
            continue  # no threshold, nothing measured, or a version no longer served
        if point.drift > threshold:
            out.append(
                Drifted(
                    domain,
                    point.version,
                    point.drift,
                    threshold,
                    point.samples,
                    point.at,
                    target.settings.cooldown_hours,
                )
            )
    return out


def check_drift(
    registry: PromptRegistry, start: Start, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Start one retrain of each drifted domain not retrained for drift within its
    cooldown. Returns a row per drifted domain: started (with the run), cooling down (with
    when the last one started), or failed to start (with why; the claim is given back)."""
    rows = []
    for d in drifted(registry):
        when = now or datetime.now(UTC)
        row: dict[str, Any] = {"domain": d.domain, "drift": d.drift, "threshold": d.threshold}
        claimed, previous = registry.claim_drift_retrain(
            d.domain,
            cooldown=timedelta(hours=d.cooldown_hours),
            actor=ACTOR,
            detail=d.trigger(),
            now=when,
        )
        if not claimed:
            rows.append({**row, "status": "cooling down", "last_started": previous})
            continue
        try:
            run = start(d.domain, {**d.trigger(), "claimed_at": when.isoformat()})
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            registry.release_drift_retrain(
                d.domain, claimed_at=when, previous=previous, actor=ACTOR, error=error
            )
            rows.append({**row, "status": "not started", "error": error})
            continue
        rows.append({**row, "status": "started", "run": run})
    return rows


def deployed_retrains(deployments: dict[str, str]) -> Start:
    """Starts a domain's retrain deployment ("<flow>/<name>", as `mpt schedule apply` or
    `serve` made it next to this check) now, with the trigger as a parameter; returns the
    flow run's id without waiting for the run."""

    def start(domain: str, trigger: dict[str, Any]) -> str:
        from prefect.deployments import run_deployment

        if domain not in deployments:
            raise LookupError(
                f"no retrain deployment of {domain!r} was applied with this check; run "
                "`mpt schedule apply` (or `mpt schedule serve`) for its domains folder"
            )
        run = run_deployment(
            deployments[domain], parameters={"trigger": trigger}, timeout=0, tags=["drift"]
        )
        return str(run.id)

    return start


@flow(name=DEPLOYMENT, log_prints=True)
def drift_check_flow(deployments: dict[str, str]) -> list[dict[str, Any]]:
    """Start the retrain of every domain whose production drifted above its threshold;
    `deployments`: domain -> its retrain deployment ("<flow>/<name>")."""
    logger = get_run_logger()
    rows = check_drift(open_registry(), deployed_retrains(deployments))
    for row in rows:
        logger.info(
            "domain %s: drift %.3f > %.3f: %s",
            row["domain"],
            row["drift"],
            row["threshold"],
            row["status"] + (f" ({row['error']})" if "error" in row else ""),
        )
    return rows
