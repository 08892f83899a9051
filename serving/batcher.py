"""Dynamic batching across requests and domains.

Request handlers put items on one queue and await their futures. One worker thread takes
the first waiting item, lets others join it for at most `max_wait` (or until
`max_batch_size`), and runs the whole batch, whatever domains it mixes, through
`predict_batch`: one image-stem pass per backbone, then each domain's prompted part.
One thread runs every forward pass, which the backbones' prompt hooks require, and
keeps torch's own threads busy with one batch at a time.
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

import torch

from mpt_core import Example
from mpt_core.features import Prediction
from mpt_core.inference import DomainModel, predict_batch

from .metrics import ServingMetrics

log = logging.getLogger("serving")

Runner = Callable[[Sequence[tuple[DomainModel, Example]]], list[Prediction]]


@dataclass
class _Job:
    model: DomainModel
    example: Example
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    label: tuple[str, int]  # (domain, version), for metrics


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
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_seconds
        self.metrics = metrics
        self.threads = threads
        self.run = run
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
        self, items: Sequence[tuple[DomainModel, Example, tuple[str, int]]]
    ) -> list[Prediction]:
        """Predictions for (model, example, (domain, version)) items, in order."""
        loop = asyncio.get_running_loop()
        futures = []
        for model, example, label in items:
            future = loop.create_future()
            self._queue.put(_Job(model, example, future, loop, label))
            futures.append(future)
        self.metrics.queue.inc(len(items))
        return list(await asyncio.gather(*futures))

    # ------------------------------------------------------------------ the worker thread
    def _work(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
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
        started = time.perf_counter()
        try:
            outcomes = list(zip(live, self.run([(j.model, j.example) for j in live]), strict=True))
            errors: list[tuple[_Job, BaseException]] = []
        except Exception:
            log.exception("serving: a batch of %d items failed; retrying per model", len(live))
            outcomes, errors = self._per_model(live)
        self.metrics.observe_batch(
            len(live), time.perf_counter() - started, [j.label for j, _ in outcomes]
        )
        for job, prediction in outcomes:
            self._reply(job, prediction, None)
        for job, error in errors:
            self._reply(job, None, error)

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
