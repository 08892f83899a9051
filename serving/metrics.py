"""Prometheus metrics of one server (or one Ray Serve replica), on a registry of its own."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mpt_serving_requests",
            "HTTP requests by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "mpt_serving_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.items = Counter(
            "mpt_serving_items",
            "items predicted, by domain and prompt version",
            ["domain", "version"],
            registry=r,
        )
        self.refused = Counter(
            "mpt_serving_items_refused", "items refused, by HTTP status", ["status"], registry=r
        )
        self.batch_size = Histogram(
            "mpt_serving_batch_size",
            "items per backbone batch (any domains)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "mpt_serving_batch_seconds",
            "time to run one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Gauge("mpt_serving_queue_items", "items waiting for a batch", registry=r)
        self.version = Gauge(
            "mpt_serving_version",
            "prompt version served per domain and alias",
            ["domain", "alias"],
            registry=r,
        )
        self.load_failures = Counter(
            "mpt_serving_load_failures",
            "versions that failed to load",
            ["domain", "version"],
            registry=r,
        )

        self.shadow_items = Counter(
            "mpt_serving_shadow_items",
            "items sampled for a shadow version, by outcome: answered, dropped (its queue was "
            "full), failed",
            ["domain", "version", "outcome"],
            registry=r,
        )
        self.shadow_queue = Gauge(
            "mpt_serving_shadow_queue_items", "items waiting for their shadow", registry=r
        )
        self.shadow_seconds = Histogram(
            "mpt_serving_shadow_batch_seconds",
            "time a shadow version took for one group of items (after production answered)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.drift = Gauge(
            "mpt_serving_drift",
            "drift (population stability index) of production's predictions against its "
            "test split, per domain and component (predictions, confidence, max)",
            ["domain", "component"],
            registry=r,
        )
        self.drift_samples = Gauge(
            "mpt_serving_drift_window_items",
            "production predictions in the window drift is measured over",
            ["domain"],
            registry=r,
        )
        self.monitor_failures = Counter(
            "mpt_serving_monitor_report_failures",
            "reports of shadow tallies and drift the registry did not take (kept for the next)",
            registry=r,
        )

    def observe_batch(self, size: int, seconds: float, labels: Sequence[tuple[str, int]]) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        for (domain, version), n in Tally(labels).items():
            self.items.labels(domain, str(version)).inc(n)

    def render(self, *, with_domains: bool = True) -> bytes:
        """The text exposition; without the series that name a domain (and so its
        version) for callers who may not see them (MPT_SERVE_PUBLIC_STATUS=false)."""
        return generate_latest(self.registry if with_domains else _WithoutDomains(self.registry))


class _WithoutDomains:
    """The metric families of a registry that have no sample labelled with a domain."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if not any("domain" in sample.labels for sample in family.samples):
                yield family
