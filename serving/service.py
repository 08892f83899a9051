"""One replica's serving state: the catalog of loaded versions, the batcher, the monitor
(shadow versions and drift), the metrics, and what /v1/domains and /readyz say about
them. No HTTP here."""

from __future__ import annotations

import logging
from typing import Any

from registry import PromptRegistry

from .auth import Gate
from .batcher import Batcher
from .catalog import Catalog, Snapshot, resolve_device
from .metrics import ServingMetrics
from .monitor import Monitor
from .settings import ServeSettings

log = logging.getLogger("serving")


class ServingService:
    def __init__(self, settings: ServeSettings, registry: PromptRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = ServingMetrics()
        self.device = resolve_device(settings.device)
        self._seen_failures: set[tuple[str, int, str]] = set()
        self._gauged: set[str] = set()
        self.catalog = Catalog(
            registry,
            settings.alias,
            device=self.device,
            poll_seconds=settings.poll_seconds,
            retry_seconds=settings.retry_seconds,
            on_change=self._changed,
        )
        self.gate = Gate(registry, settings, lambda: self.catalog.snapshot().registry_error)
        self.monitor = Monitor(
            registry,
            settings,
            self.metrics,
            backbones=self.catalog.backbones,
            production=self.catalog.snapshot,
        )
        self.batcher = Batcher(
            max_batch_size=settings.max_batch_size,
            max_wait_seconds=settings.max_wait_ms / 1000,
            metrics=self.metrics,
            threads=settings.threads,
            observer=self.monitor,
        )

    def start(self) -> None:
        self.batcher.start()
        self.catalog.start()
        self.monitor.start()

    def stop(self) -> None:
        self.catalog.stop()
        self.batcher.stop()
        self.monitor.stop()

    def _changed(self, snapshot: Snapshot) -> None:
        for domain, deployed in snapshot.served.items():
            self.metrics.version.labels(domain, snapshot.alias).set(deployed.version)
        for domain in self._gauged - set(snapshot.served):
            self.metrics.version.remove(domain, snapshot.alias)
        self._gauged = set(snapshot.served)
        for f in snapshot.failures.values():
            key = (f.domain, f.version, f.at.isoformat())
            if key not in self._seen_failures:
                self._seen_failures.add(key)
                self.metrics.load_failures.labels(f.domain, str(f.version)).inc()

    # ------------------------------------------------------------------ descriptions
    def domains(self) -> dict[str, Any]:
        snap = self.catalog.snapshot()
        rows = []
        for name in sorted(set(snap.targets) | set(snap.served)):
            deployed, target = snap.served.get(name), snap.targets.get(name)
            failure = snap.failures.get(name)
            if deployed is not None:
                state = "serving"
            elif target is None:
                state = "no version"
            else:
                state = "failed" if failure else "loading"
            task = deployed.model.task if deployed else None
            rows.append(
                {
                    "domain": name,
                    "alias": snap.alias,
                    "state": state,
                    "version": deployed.version if deployed else None,
                    "task": {"name": task.name, **task.to_dict()} if task else None,
                    "inputs": list(task.inputs) if task else [],
                    "optional_inputs": list(task.optional_inputs) if task else [],
                    "method": deployed.method if deployed else None,
                    "backbone": deployed.backbone.to_dict() if deployed else None,
                    "loaded_at": deployed.loaded_at.isoformat() if deployed else None,
                    "failure": failure.to_dict() if failure else None,
                    **self.monitor.describe(name, deployed.version if deployed else None),
                }
            )
        return {"alias": snap.alias, "domains": rows}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body). 200 while at least one domain is served and the registry
        can be read; `status` says `degraded` when a version failed to load or is still
        loading. 503 before the first load, with nothing to serve, or while the registry
        cannot be read (`reason` says why; the versions already loaded keep serving)."""
        snap = self.catalog.snapshot()
        serving = {d: v.version for d, v in sorted(snap.served.items())}
        loading = sorted(
            d
            for d, t in snap.targets.items()
            if t is not None and d not in snap.failures and serving.get(d) != t
        )
        body: dict[str, Any] = {
            "alias": snap.alias,
            "serving": serving,
            "failures": [f.to_dict() for _, f in sorted(snap.failures.items())],
            "loading": loading,
            "no_version": sorted(d for d, t in snap.targets.items() if t is None),
            "registry_error": snap.registry_error,
            "last_sync": snap.last_sync.isoformat() if snap.last_sync else None,
            "backbones": [str(b) for b in self.catalog.backbones.loaded()],
        }
        if not snap.synced:
            return 503, {"status": "loading", **body}
        if snap.registry_error:
            reason = (
                f"the registry cannot be read ({snap.registry_error}); the versions already "
                "loaded keep serving, alias moves wait until it is back"
            )
            return 503, {"status": "unavailable", "reason": reason, **body}
        if not serving:
            reason = f"no domain has a loadable version under the alias {snap.alias!r}"
            return 503, {"status": "unavailable", "reason": reason, **body}
        degraded = snap.failures or loading
        return 200, {"status": "degraded" if degraded else "ok", **body}


def without_domains(body: dict[str, Any]) -> dict[str, Any]:
    """A readiness body that names no domain or version (MPT_SERVE_PUBLIC_STATUS=false)."""
    return {k: body[k] for k in ("status", "reason") if k in body}
