"""Shadow traffic: a domain's candidate (the version of its open promotion request, or a
named alias) also answers a sample of the items production answered, after production
has answered them, and only how the two compare is kept.

The batcher thread does it all, because every forward pass of a backbone must run in one
thread; production comes first:
- before a batch runs, `select` picks its items for the shadow: a fixed share per domain
  (`monitoring.shadow_fraction`), spread evenly (0.1 is every tenth item), so N items
  give exactly N x fraction shadow answers;
- after production's answers are on their way to the clients, `offer` puts the picked
  items on a bounded queue (a full queue drops the item and counts it) with the batch's
  frozen features when the shadow starts from the same ones (`feature_key`), so it
  scores from production's image stems instead of encoding the image again;
- `work` answers up to `batch_size` queued items when no production item is waiting.
A shadow that fails is counted as an error for its own items; nothing it does reaches
production's answers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import torch

from mpt_core import Example
from mpt_core.features import Prediction
from mpt_core.inference import DomainModel, predict_batch
from mpt_core.tasks.base import Task
from mpt_core.tasks.text_metrics import token_f1
from mpt_core.thumbnails import thumbnail
from registry.records import ShadowSample, ShadowTally
from registry.tallies import (
    CONFIDENCE_BINS,
    LATENCY_BUCKETS_MS,
    confidence_bin,
    latency_bucket,
    merge_counts,
)

from .catalog import Deployed
from .metrics import ServingMetrics

log = logging.getLogger("serving")

SAMPLES_PER_FLUSH = 8
"""Disagreements kept per (shadow, production) pair between two reports (the registry
keeps the newest of them)."""
NO_VALUE = "(none)"


def generates_text(task: Task) -> bool:
    """A task whose answers are generated text (captions, open answers): exact match is
    too strict alone, so a text similarity is kept beside it."""
    return task.backbone_kind == "generative"


def confidence(prediction: Prediction) -> float | None:
    """The prediction's probability among its candidates (None: generated text)."""
    if prediction.value is None or not prediction.scores:
        return None
    return prediction.scores.get(prediction.value)


@dataclass(frozen=True)
class ShadowPlan:
    """What shadows a domain now: the loaded version and the settings."""

    deployed: Deployed
    fraction: float
    keep_images: bool
    source: str

    def shares_features(self, production: DomainModel) -> bool:
        """The shadow starts from the frozen features production's model computes (same
        backbone weights, output and preprocessing): it scores from them."""
        return self.deployed.model.feature_key == production.feature_key


@dataclass
class Sampled:
    """A production item picked for the shadow, with what production answered."""

    plan: ShadowPlan
    production_version: int
    model: DomainModel
    example: Example
    source: bytes
    prediction: Prediction
    features: torch.Tensor | None
    queued_at: float


@dataclass
class _Counts:
    """A mutable ShadowTally, counted by the batcher thread."""

    requests: int = 0
    agreed: int = 0
    similarity_sum: float = 0.0
    similarity_n: int = 0
    errors: int = 0
    dropped: int = 0
    latency_ms: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    shadow_values: dict[str, int] = field(default_factory=dict)
    production_values: dict[str, int] = field(default_factory=dict)
    shadow_confidence: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    production_confidence: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)

    def tally(self, domain: str, version: int, production: int) -> ShadowTally:
        return ShadowTally(
            domain=domain,
            version=version,
            production=production,
            requests=self.requests,
            agreed=self.agreed,
            similarity_sum=self.similarity_sum,
            similarity_n=self.similarity_n,
            errors=self.errors,
            dropped=self.dropped,
            latency_ms=tuple(self.latency_ms),
            shadow_values=dict(self.shadow_values),
            production_values=dict(self.production_values),
            shadow_confidence=tuple(self.shadow_confidence),
            production_confidence=tuple(self.production_confidence),
        )


Key = tuple[str, int, int]
"""(domain, shadow version, production version)"""


class ShadowRunner:
    def __init__(
        self,
        metrics: ServingMetrics,
        *,
        queue_size: int,
        batch_size: int,
        run: Callable[..., list[Prediction]] = predict_batch,
    ) -> None:
        self.metrics = metrics
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.run = run
        self.plans: Mapping[str, ShadowPlan] = {}
        """domain -> its shadow now; replaced whole by the monitor."""
        self._queue: deque[Sampled] = deque()
        self._due: dict[str, float] = {}
        self._counts: dict[Key, _Counts] = {}
        self._samples: dict[Key, list[ShadowSample]] = {}
        self._lock = threading.Lock()  # the monitor thread takes what the batcher counted
        self._failing: set[tuple[str, int]] = set()
        self.totals: dict[Key, _Counts] = {}
        """Everything counted since start (for /v1/domains and the metrics)."""

    # ------------------------------------------------------------------ the batcher thread
    def select(self, domains: Sequence[str]) -> list[ShadowPlan | None]:
        """For each item (by domain) of a batch about to run, its shadow if it is picked.
        Spread evenly: an item is picked each time the domain's running share reaches 1."""
        plans, out = self.plans, []
        for domain in domains:
            plan = plans.get(domain)
            if plan is None or plan.fraction <= 0:
                out.append(None)
                continue
            due = self._due.get(domain, 0.0) + plan.fraction
            picked = due >= 1.0 - 1e-9
            self._due[domain] = due - 1.0 if picked else due
            out.append(plan if picked else None)
        return out

    @staticmethod
    def shares_features(plan: ShadowPlan | None, model: DomainModel) -> bool:
        return plan is not None and plan.shares_features(model)

    def offer(self, items: Sequence[Sampled]) -> None:
        """Queue picked items (after production answered them); a full queue drops."""
        for item in items:
            if len(self._queue) >= self.queue_size:
                self._bump(item, "dropped")
                continue
            if item.features is not None:
                item.features = item.features.clone()  # not the whole batch's tensor
            self._queue.append(item)
        self.metrics.shadow_queue.set(len(self._queue))

    def pending(self) -> bool:
        return bool(self._queue)

    def work(self) -> None:
        """Answer up to `batch_size` queued items, one shadow version at a time."""
        chunk = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
        self.metrics.shadow_queue.set(len(self._queue))
        groups: dict[tuple[int, bool], list[Sampled]] = {}
        for item in chunk:
            groups.setdefault((id(item.plan.deployed.model), item.features is not None), []).append(
                item
            )
        for (_, shared), group in groups.items():
            self._answer(group, shared)

    def _answer(self, group: list[Sampled], shared: bool) -> None:
        deployed = group[0].plan.deployed
        pairs = [(deployed.model, item.example) for item in group]
        started = time.perf_counter()
        try:
            prepared = [item.features for item in group] if shared else None
            answers = self.run(pairs, prepared)
        except Exception as exc:
            self._failed(group, exc)
            return
        seconds = time.perf_counter() - started
        self._failing.discard((deployed.domain, deployed.version))
        self.metrics.shadow_seconds.observe(seconds)
        per_item_ms = seconds * 1000 / len(group)
        for item, answer in zip(group, answers, strict=True):
            self._compare(item, answer, per_item_ms)

    def _failed(self, group: list[Sampled], exc: Exception) -> None:
        deployed = group[0].plan.deployed
        key = (deployed.domain, deployed.version)
        if key not in self._failing:  # once per failing spell, not once per item
            self._failing.add(key)
            log.error(
                "serving: shadow %s v%d failed on %d item(s); production is not affected: %s: %s",
                *key,
                len(group),
                type(exc).__name__,
                exc,
            )
        for item in group:
            self._bump(item, "errors")

    def _compare(self, item: Sampled, shadow: Prediction, ms: float) -> None:
        prod = item.prediction
        agreed = shadow.value == prod.value
        similarity = None
        if generates_text(item.model.task):
            similarity = token_f1(prod.value or "", shadow.value or "")
        sample = None if agreed else self._disagreement(item, shadow)
        with self._lock:
            counts, total = self._both(item)
            for c in (counts, total):
                c.requests += 1
                c.agreed += agreed
                if similarity is not None:
                    c.similarity_sum += similarity
                    c.similarity_n += 1
            counts.latency_ms[latency_bucket(ms)] += 1
            counts.shadow_values = merge_counts(counts.shadow_values, {shadow.value or NO_VALUE: 1})
            counts.production_values = merge_counts(
                counts.production_values, {prod.value or NO_VALUE: 1}
            )
            for histogram, p in (
                (counts.shadow_confidence, shadow),
                (counts.production_confidence, prod),
            ):
                c = confidence(p)
                if c is not None:
                    histogram[confidence_bin(c)] += 1
            if sample is not None:
                kept = self._samples.setdefault(self._key(item), [])
                if len(kept) < SAMPLES_PER_FLUSH:
                    kept.append(sample)
        d = item.plan.deployed
        self.metrics.shadow_items.labels(d.domain, str(d.version), "answered").inc()

    def _disagreement(self, item: Sampled, shadow: Prediction) -> ShadowSample | None:
        """The sample of a disagreement, unless this pair has enough until the next report
        (checked before the image is hashed or a thumbnail made)."""
        key = self._key(item)
        if len(self._samples.get(key, ())) >= SAMPLES_PER_FLUSH:
            return None
        example = item.example
        inputs = {f: example.get(f) for f in item.model.task.contract.inputs}
        source = item.source or example.image.tobytes()
        return ShadowSample(
            domain=key[0],
            version=key[1],
            production=key[2],
            at=datetime.now(UTC),
            image_sha256=hashlib.sha256(source).hexdigest(),
            inputs={k: v for k, v in inputs.items() if isinstance(v, str)},
            production_value=item.prediction.value,
            production_score=confidence(item.prediction),
            shadow_value=shadow.value,
            shadow_score=confidence(shadow),
            thumbnail=thumbnail(example.image) if item.plan.keep_images else None,
        )

    @staticmethod
    def _key(item: Sampled) -> Key:
        d = item.plan.deployed
        return (d.domain, d.version, item.production_version)

    def _both(self, item: Sampled) -> tuple[_Counts, _Counts]:
        """(counts since the last report, counts since start) of the item's pair."""
        key = self._key(item)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _Counts()
        total = self.totals.get(key)
        if total is None:
            total = self.totals[key] = _Counts()
        return counts, total

    def _bump(self, item: Sampled, what: str) -> None:
        """One more dropped or failed item of the pair."""
        with self._lock:
            for c in self._both(item):
                setattr(c, what, getattr(c, what) + 1)
        d = item.plan.deployed
        outcome = {"dropped": "dropped", "errors": "failed"}[what]
        self.metrics.shadow_items.labels(d.domain, str(d.version), outcome).inc()

    # ------------------------------------------------------------------ the monitor thread
    def take(self) -> tuple[list[ShadowTally], list[ShadowSample]]:
        """What was counted since the last call (for a report to the registry)."""
        with self._lock:
            counts, samples = self._counts, self._samples
            self._counts, self._samples = {}, {}
        tallies = [c.tally(*key) for key, c in counts.items()]
        return tallies, [x for kept in samples.values() for x in kept]

    def summary(self, domain: str) -> dict[str, dict[str, float | int | None]]:
        """Since this server started, per (shadow, production) pair of `domain`:
        answered, agreement, similarity, errors, dropped."""
        with self._lock:
            pairs = [(k, c) for k, c in self.totals.items() if k[0] == domain]
            return {
                f"v{k[1]} vs v{k[2]}": {
                    "answered": c.requests,
                    "agreement": c.agreed / c.requests if c.requests else None,
                    "similarity": c.similarity_sum / c.similarity_n if c.similarity_n else None,
                    "errors": c.errors,
                    "dropped": c.dropped,
                }
                for k, c in pairs
            }
