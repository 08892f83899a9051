"""Dynamic batching across requests and domains.

Request handlers put items on one queue and await their futures. One worker thread takes
the first waiting item, lets others join it for at most `max_wait` (or until
`max_batch_size`), and runs the whole batch, whatever domains it mixes, through
`predict_batch`: one image-stem pass per backbone, then each domain's prompted part.
One thread runs every forward pass, which the backbones' prompt hooks require, and
keeps torch's own threads busy with one batch at a time.

An observer (the replica's `Monitor`) sees every batch after its answers are on their way
to the clients (drift windows, items picked for a shadow version) and gets the thread
when no production item waits (the shadow answers): production never waits for more
than one small slice of its work, and nothing it does fails a production item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from mpt_core import Example
from mpt_core.features import Prediction
from mpt_core.inference import DomainModel, predict_batch

from .metrics import ServingMetrics

log = logging.getLogger("serving")

Runner = Callable[..., list[Prediction]]
"""`predict_batch`: run(items) -> predictions, or run(items, None, features) filling
`features` with each item's frozen features (asked only while a shadow wants them)."""


class Observer(Protocol):
    """What the batcher tells about its batches, and lends its thread to (`Monitor`)."""

    def select(self, domains: Sequence[str]) -> list[Any]:
        """Per item of a batch about to run: its shadow plan if picked, else None."""

    def observe(self, served: Sequence[Served]) -> None:
        """The batch's items with their answers, after the answers were sent."""

    def pending(self) -> bool:
        """Background work is waiting for the thread."""

    def work(self) -> None:
        """One small slice of it."""


@dataclass
class _Job:
    model: DomainModel
    example: Example
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    label: tuple[str, int]  # (domain, version), for metrics
    source: bytes = b""
    """The image as the client sent it (a shadow disagreement keeps its sha256)."""


@dataclass
class Served:
    """One production item as a batch answered it, for the observer."""

    domain: str
    version: int
    model: DomainModel
    example: Example
    source: bytes
    prediction: Prediction
    features: torch.Tensor | None
    """Its frozen features, when the batch kept them for a shadow."""
    plan: Any
    """Its shadow plan if it was picked (`Observer.select`), else None."""


_STOP = object()


def _resolve(future: asyncio.Future, value: object, error: BaseException | None) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class Batcher:
    def __init__(
        self,
        *,
        max_batch_size: int,
        max_wait_seconds: float,
        metrics: ServingMetrics,
        threads: int | None = None,
        run: Runner = predict_batch,
        observer: Observer | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_seconds
        self.metrics = metrics
        self.threads = threads
        self.run = run
        self.observer = observer
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="mpt-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def submit(
        self,
        items: Sequence[tuple[DomainModel, Example, tuple[str, int]]],
        sources: Sequence[bytes] | None = None,
    ) -> list[Prediction]:
        """Predictions for (model, example, (domain, version)) items, in order.
        `sources[i]`: item i's image bytes as sent (for the observer)."""
        loop = asyncio.get_running_loop()
        futures = []
        for i, (model, example, label) in enumerate(items):
            future = loop.create_future()
            source = sources[i] if sources is not None else b""
            self._queue.put(_Job(model, example, future, loop, label, source))
            futures.append(future)
        self.metrics.queue.inc(len(items))
        return list(await asyncio.gather(*futures))

    # ------------------------------------------------------------------ the worker thread
    def _work(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            if self.observer is not None and self._observer_pending():
                try:
                    first = self._queue.get_nowait()
                except queue.Empty:
                    self._background()
                    continue
            else:
                first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            self._execute(batch)
            if stop:
                return

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch_size:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            batch.append(job)
        return batch, False

    def _execute(self, batch: list[_Job]) -> None:
        self.metrics.queue.dec(len(batch))
        live = [job for job in batch if not job.future.done()]
        if not live:
            return
        plans = self._select(live)
        features = self._features_wanted(live, plans)
        started = time.perf_counter()
        pairs = [(j.model, j.example) for j in live]
        try:
            answers = self.run(pairs) if features is None else self.run(pairs, None, features)
            outcomes = list(zip(live, answers, strict=True))
            errors: list[tuple[_Job, BaseException]] = []
        except Exception:
            log.exception("serving: a batch of %d items failed; retrying per model", len(live))
            outcomes, errors = self._per_model(live)
            features = None  # the retried items' features were not kept
        self.metrics.observe_batch(
            len(live), time.perf_counter() - started, [j.label for j, _ in outcomes]
        )
        for job, prediction in outcomes:
            self._reply(job, prediction, None)
        for job, error in errors:
            self._reply(job, None, error)
        if plans is not None:
            self._observe(live, outcomes, plans, features)

    # ------------------------------------------------------------------ the observer
    def _select(self, live: list[_Job]) -> list[Any] | None:
        if self.observer is None:
            return None
        try:
            return self.observer.select([j.label[0] for j in live])
        except Exception:
            log.exception("serving: the monitor failed to pick shadow items; none picked")
            return [None] * len(live)

    @staticmethod
    def _features_wanted(live: list[_Job], plans: list[Any] | None) -> list | None:
        """A list to collect the batch's frozen features in, when a picked item's shadow
        starts from the same ones as its production model."""
        if plans is None:
            return None
        for job, plan in zip(live, plans, strict=True):
            if plan is not None and plan.shares_features(job.model):
                return [None] * len(live)
        return None

    def _observe(
        self,
        live: list[_Job],
        outcomes: list[tuple[_Job, Prediction]],
        plans: list[Any],
        features: list | None,
    ) -> None:
        index = {id(job): i for i, job in enumerate(live)}
        served = []
        for job, prediction in outcomes:
            i = index[id(job)]
            served.append(
                Served(
                    job.label[0],
                    job.label[1],
                    job.model,
                    job.example,
                    job.source,
                    prediction,
                    features[i] if features is not None else None,
                    plans[i],
                )
            )
        try:
            self.observer.observe(served)
        except Exception:
            log.exception("serving: the monitor failed on a batch; production is not affected")

    def _observer_pending(self) -> bool:
        try:
            return self.observer.pending()
        except Exception:
            return False

    def _background(self) -> None:
        try:
            self.observer.work()
        except Exception:
            log.exception("serving: the monitor's background work failed")

    def _per_model(self, jobs: list[_Job]):
        """After a failed batch: each model's items on their own, so one broken domain
        fails only its own items."""
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(id(job.model), []).append(job)
        outcomes, errors = [], []
        for group in groups.values():
            try:
                predictions = self.run([(j.model, j.example) for j in group])
                outcomes += list(zip(group, predictions, strict=True))
            except Exception as exc:
                log.exception("serving: %s v%d failed on %d items", *group[0].label, len(group))
                errors += [(job, exc) for job in group]
        return outcomes, errors

    @staticmethod
    def _reply(job: _Job, value: object, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is shutting down
            job.loop.call_soon_threadsafe(_resolve, job.future, value, error)
