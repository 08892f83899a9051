"""Live evidence of a promotion request, beside its test-split evidence: what the candidate
answered of production's traffic as its shadow (requests, agreement with production and
its 95 % Wilson interval, the newest disagreements) and the drift of the domain's
production over time, all from what `mpt serve` replicas reported to the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup

from registry import (
    MonitoringSettings,
    PromptRegistry,
    RequestInfo,
    ShadowEvidence,
    ShadowSample,
)
from registry.policy import check_shadow

from .charts import drift_svg
from .views import data_uri

MAX_INTERVAL_WIDTH = 0.2
"""An agreement whose 95 % interval is wider than this is too uncertain to lean on."""
DRIFT_POINTS_SHOWN = 288
"""The newest drift points in the chart (a day at one point every five minutes)."""


@dataclass(frozen=True)
class LiveCard:
    """One item on which the candidate and production disagreed on live traffic."""

    at: datetime
    image_sha256: str
    thumbnail: str | None
    """data: URI of the kept thumbnail; None where the domain keeps no images."""
    inputs: str | None
    production: str | None
    production_score: float | None
    candidate: str | None
    candidate_score: float | None


@dataclass(frozen=True)
class DriftChart:
    """A domain's drift of production over time, for the request and domain pages."""

    chart: Markup | None
    now: float | None
    threshold: float | None


@dataclass
class LiveEvidence:
    production: int | None
    candidate: int
    settings: MonitoringSettings | None
    """The domain's `monitoring:` block as `mpt run` stored it; None: never stored."""
    found: ShadowEvidence | None
    check: dict[str, Any]
    """The policy's shadow rule against the live tally (registry.policy.check_shadow):
    requests, agreed, agreement, interval, rule, passed, reasons."""
    drift: DriftChart
    cards: list[LiveCard] = field(default_factory=list)
    warning: str | None = None

    @property
    def similarity(self) -> float | None:
        return self.found.similarity if self.found else None


def shadow_warning(
    production: int | None, settings: MonitoringSettings | None, check: dict[str, Any]
) -> str | None:
    """Why the live numbers cannot be leaned on yet, or None when they can."""
    if production is None:
        return "No production version yet: there is no traffic to shadow."
    requests, interval = check["requests"], check["interval"]
    if requests == 0:
        fraction = settings.shadow_fraction if settings else 0.0
        if fraction == 0:
            return (
                "No shadow traffic: monitoring.shadow_fraction is 0 in this domain's "
                "domain.yaml (as `mpt run` last stored it); set it (e.g. 0.1) and run "
                "`mpt run` to let the candidate answer a share of production's requests."
            )
        return (
            f"No shadow request yet: {fraction:g} of production's requests go to the "
            "candidate once an `mpt serve` replica has loaded it."
        )
    low, high = interval
    if high - low > MAX_INTERVAL_WIDTH:
        return (
            f"Too few shadow requests to say much: with {requests} the agreement with "
            f"production lies anywhere between {low:.1%} and {high:.1%} (95 % interval)."
        )
    return None


def card(x: ShadowSample) -> LiveCard:
    inputs = " · ".join(str(v) for v in x.inputs.values()) or None
    return LiveCard(
        at=x.at,
        image_sha256=x.image_sha256,
        thumbnail=data_uri(x.thumbnail) if x.thumbnail else None,
        inputs=inputs,
        production=x.production_value,
        production_score=x.production_score,
        candidate=x.shadow_value,
        candidate_score=x.shadow_score,
    )


def drift_chart(
    reg: PromptRegistry, domain: str, settings: MonitoringSettings | None
) -> DriftChart:
    """The domain's newest drift points as a chart, its latest reading and threshold."""
    points = reg.drift_history(domain, DRIFT_POINTS_SHOWN)
    threshold = settings.drift_threshold if settings else None
    return DriftChart(
        drift_svg([(p.at, p.drift) for p in points], threshold),
        points[-1].drift if points else None,
        threshold,
    )


def live_evidence(reg: PromptRegistry, r: RequestInfo) -> LiveEvidence:
    """The request's live evidence (against the production version it was opened on)."""
    settings = reg.monitoring(r.domain)
    found = None
    if r.base_version is not None:
        found = reg.shadow_evidence(r.domain, r.version, r.base_version)
    requests, agreed = (found.tally.requests, found.tally.agreed) if found else (0, 0)
    rule = ((r.policy_report or {}).get("policy") or {}).get("shadow")
    check = check_shadow(rule, requests, agreed)
    drift = drift_chart(reg, r.domain, settings)
    return LiveEvidence(
        production=r.base_version,
        candidate=r.version,
        settings=settings,
        found=found,
        check=check,
        cards=[card(x) for x in found.samples] if found else [],
        drift=drift,
        warning=shadow_warning(r.base_version, settings, check),
    )
