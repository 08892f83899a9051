"""Live evidence on one replica: shadow versions and drift of production, kept in step with
the registry by a thread of their own, fed by the batcher thread, reported to the registry.

What it never does is touch production: its thread reads the registry's monitoring
targets (each domain's `monitoring:` settings and the version shadowing production),
loads shadow versions through a catalog of their own (sharing production's backbones),
loads each production version's test-split predictions as the drift reference, and every
`monitor_report_seconds` sends what the batcher counted. A registry that cannot be read
or written leaves the shadows and references already loaded in place and the counts kept
(bounded) for the next report; a shadow that fails to load is retried like a production
version, and is only absent meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from registry import PromptRegistry
from registry.errors import short_reason
from registry.records import (
    DriftPoint,
    MonitoringReport,
    MonitoringSettings,
    MonitorTarget,
    ShadowSample,
    ShadowTally,
)

from .batcher import Served
from .catalog import BackboneLoader, Catalog, Snapshot
from .drift import DriftTracker, Reference
from .metrics import ServingMetrics
from .settings import ServeSettings
from .shadow import Sampled, ShadowPlan, ShadowRunner, confidence

log = logging.getLogger("serving")

MAX_UNSENT_SAMPLES = 200
"""Disagreement samples kept for the next report while the registry cannot take them."""


class Monitor:
    def __init__(
        self,
        registry: PromptRegistry,
        settings: ServeSettings,
        metrics: ServingMetrics,
        *,
        backbones: BackboneLoader,
        production: Callable[[], Snapshot],
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.production = production
        self.shadows = Catalog(
            registry,
            "shadow",
            device=backbones.device,
            poll_seconds=settings.poll_seconds,
            retry_seconds=settings.retry_seconds,
            backbones=backbones,
        )
        self.runner = ShadowRunner(
            metrics, queue_size=settings.shadow_queue, batch_size=settings.shadow_batch
        )
        self.drift = DriftTracker(settings.drift_min_samples)
        self.targets: dict[str, MonitorTarget] = {}
        self.registry_error: str | None = None
        self._unsent_tallies: dict[tuple[str, int, int], ShadowTally] = {}
        self._unsent_samples: list[ShadowSample] = []
        self._reference_tried: dict[tuple[str, int], float] = {}
        self._last_report = time.monotonic()
        self._last_drift: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the batcher's side
    def select(self, domains: Sequence[str]) -> list[ShadowPlan | None]:
        return self.runner.select(domains)

    def observe(self, served: Sequence[Served]) -> None:
        """After production answered: every item into its domain's drift window, the
        picked ones onto the shadow queue."""
        picked = []
        for item in served:
            self.drift.add(
                item.domain, item.version, item.prediction.value, confidence(item.prediction)
            )
            if item.plan is not None:
                shared = self.runner.shares_features(item.plan, item.model)
                picked.append(
                    Sampled(
                        item.plan,
                        item.version,
                        item.model,
                        item.example,
                        item.source,
                        item.prediction,
                        item.features if shared else None,
                        time.monotonic(),
                    )
                )
        if picked:
            self.runner.offer(picked)

    def pending(self) -> bool:
        return self.runner.pending()

    def work(self) -> None:
        self.runner.work()

    # ------------------------------------------------------------------ its own thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mpt-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.report()  # what was counted since the last report

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            try:
                self.refresh()
                if time.monotonic() - self._last_report >= self.settings.monitor_report_seconds:
                    self.report()
            except Exception:  # never let the monitor die; production does not depend on it
                log.exception("serving: the monitor's refresh failed")

    def refresh(self) -> None:
        """Targets from the registry, shadows loaded, drift references loaded, plans set."""
        try:
            self.targets = self.registry.monitor_targets()
            self.registry_error = None
        except Exception as exc:  # keep the last targets; the production catalog says why
            self.registry_error = short_reason(exc)
        production = self.production()
        for domain in production.served:
            settings = self._settings(domain)
            self.drift.sizes[domain] = settings.window
        self._references(production)
        if not self.settings.shadow:
            return
        wanted = {
            d: t.shadow
            for d, t in self.targets.items()
            if t.shadow is not None and d in production.served
        }
        shadows = self.shadows.sync(wanted) if wanted or self.shadows.snapshot().served else None
        plans = {}
        for domain, deployed in (shadows.served if shadows else {}).items():
            target = self.targets[domain]
            if deployed.version == wanted.get(domain):
                plans[domain] = ShadowPlan(
                    deployed,
                    target.settings.shadow_fraction,
                    target.settings.keep_images,
                    target.shadow_source or "",
                )
        self.runner.plans = plans

    def _settings(self, domain: str) -> MonitoringSettings:
        target = self.targets.get(domain)
        return target.settings if target else MonitoringSettings()

    def _references(self, production: Snapshot) -> None:
        """Load the test-split predictions of each production version without a reference
        (a version without stored predictions is asked again after `retry_seconds`)."""
        for domain, deployed in production.served.items():
            key = (domain, deployed.version)
            if key in self.drift.references:
                continue
            tried = self._reference_tried.get(key)
            if tried is not None and time.monotonic() - tried < self.settings.retry_seconds:
                continue
            self._reference_tried[key] = time.monotonic()
            try:
                info = self.registry.get_version(domain, deployed.version)
                stored = self.registry.predictions(domain, deployed.version, info.data_version)
                source = f"v{deployed.version} on test of data version {info.data_version[:12]}"
                if stored is None:
                    self.drift.problems[key] = (
                        f"no stored predictions of v{deployed.version} on the test split of "
                        f"its data version {info.data_version[:12]} (a retrain stores them)"
                    )
                    continue
                self.drift.references[key] = Reference.from_rows(
                    deployed.version, stored.rows, source
                )
                self.drift.problems.pop(key, None)
            except Exception as exc:
                self.drift.problems[key] = f"the reference could not be read: {short_reason(exc)}"

    # ------------------------------------------------------------------ reports
    def report(self) -> None:
        """Send what was counted (and drift points that are due) to the registry; what it
        does not take is kept, bounded, for the next report."""
        self._last_report = time.monotonic()
        tallies, samples = self.runner.take()
        for t in tallies:
            key = (t.domain, t.version, t.production)
            earlier = self._unsent_tallies.get(key)
            self._unsent_tallies[key] = t if earlier is None else earlier + t
        self._unsent_samples = (self._unsent_samples + samples)[-MAX_UNSENT_SAMPLES:]
        drift = self._drift_points()
        report = MonitoringReport(
            list(self._unsent_tallies.values()), list(self._unsent_samples), drift
        )
        if not (report.tallies or report.samples or report.drift):
            return
        try:
            self.registry.record_monitoring(report)
        except Exception as exc:
            self.metrics.monitor_failures.inc()
            log.warning(
                "serving: the registry did not take this replica's shadow and drift report "
                "(kept for the next one): %s",
                short_reason(exc),
            )
            return
        self._unsent_tallies, self._unsent_samples = {}, []

    def _drift_points(self) -> list[DriftPoint]:
        """Gauges for every domain measured now; a point for the registry for those whose
        last one is `drift_every_seconds` old."""
        now, points = time.monotonic(), []
        for domain in list(self.drift.windows):
            reading = self.drift.reading(domain)
            if reading is None:
                continue
            for component, value in {**reading.components, "max": reading.drift}.items():
                self.metrics.drift.labels(domain, component).set(value)
            self.metrics.drift_samples.labels(domain).set(reading.samples)
            if now - self._last_drift.get(domain, -1e18) < self.settings.drift_every_seconds:
                continue
            self._last_drift[domain] = now
            points.append(
                DriftPoint(
                    domain=domain,
                    version=reading.version,
                    at=datetime.now(UTC),
                    drift=reading.drift,
                    components=reading.components,
                    samples=reading.samples,
                )
            )
        return points

    # ------------------------------------------------------------------ descriptions
    def describe(self, domain: str, version: int | None) -> dict[str, Any]:
        """What /v1/domains says of the domain's shadow and drift."""
        target = self.targets.get(domain)
        settings = self._settings(domain)
        shadow: dict[str, Any] = {
            "fraction": settings.shadow_fraction,
            "version": target.shadow if target else None,
            "source": target.shadow_source if target else None,
        }
        snap = self.shadows.snapshot()
        plan = self.runner.plans.get(domain)
        failure = snap.failures.get(domain)
        if not self.settings.shadow:
            shadow["state"] = "off on this server"
        elif shadow["version"] is None:
            shadow["state"] = "none"
        elif plan is not None:
            shadow["state"] = "shadowing"
        else:
            shadow["state"] = "failed" if failure else "loading"
        shadow["failure"] = failure.to_dict() if failure else None
        shadow["since_start"] = self.runner.summary(domain)
        return {"shadow": shadow, "drift": self.drift.status(domain, version)}
