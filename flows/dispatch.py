"""Tune many domains on Ray workers that share one frozen backbone.

Each worker is an actor (one per GPU when the cluster has GPUs, else one per CPU slot)
that loads the backbone once by name, checks its weights' sha256 against the driver's, and
tunes domains from a queue. Jobs are small: the worker materialises each domain's data
version from the DVC remote itself. Only prompt tensors and metrics come back. A worker
that dies mid-job has its domain retried on another worker (a replacement is started);
after `max_attempts` the domain is reported as failed and the others still finish. While
jobs run, each worker's last finished epoch is polled for progress.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from cluster.ray import ray_session

from .jobs import BackboneRef, Failure, TuneJob, TuneOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    cpus: int
    gpus: int
    workers: int
    started_here: bool


def _tune_failure(domain: str, error: str, attempts: int) -> Failure:
    return Failure(
        domain, "tune", f"tuning failed after {attempts} attempt(s): {error}", attempts=attempts
    )


class WorkerStartError(RuntimeError):
    """A tuning worker could not start (its backbone did not load or did not match)."""


def _actor_error(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__


def _poll(running: dict, on_epoch: Callable[[dict], None]) -> None:
    import ray

    refs = [entry[0].progress.remote() for entry in running.values()]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5)
    rows = []
    for ref in ready:
        try:
            row = ray.get(ref)
        except Exception:  # a worker that just died is reported by the main loop
            continue
        if row:
            rows.append(row)
    for row in _joined_parts(rows):
        on_epoch(row)


def _joined_parts(rows: list[dict]) -> list[dict]:
    """Progress rows, with the parts of one domain's shared embedding pass summed into one
    row (images done and to do, images/s over the workers)."""
    parts: dict[str, list[dict]] = {}
    out = []
    for row in rows:
        if "part" in row:
            parts.setdefault(row["domain"], []).append(row)
        else:
            out.append(row)
    for domain, shares in parts.items():
        total = {k: sum(r.get(k, 0) for r in shares) for k in ("done", "total", "rate")}
        out.append({"domain": domain, "stage": "embedding", **total, "workers": len(shares)})
    return out


SHARED_EMBEDDING_ROWS = 1000
"""A data version of this many rows is embedded by every worker together (one share
each) before it is tuned; a smaller one by the worker that tunes it."""


def _embed_shared(
    jobs, idle: deque, spawn, on_epoch, poll_seconds: float, threshold: int
) -> dict[str, dict[str, float]]:
    """The embedding pass of the large data versions, one share per worker, streamed:
    each worker takes the next share when it is done. A share that fails is left to the
    tuning job, which embeds whatever is not stored. Returns domain -> {embedded, seconds}
    (from its first share's start to its last one's end)."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    workers = len(idle)
    queue = deque(
        (job, part, workers)
        for job in jobs
        if workers > 1 and job.data.rows >= threshold
        for part in range(workers)
    )
    running: dict = {}
    spans: dict[str, list[float]] = {}
    embedded: dict[str, int] = {}
    while queue or running:
        while queue and idle:
            job, part, parts = queue.popleft()
            actor, pid = idle.popleft()
            running[actor.embed.remote(job, part, parts)] = (actor, pid, job)
            spans.setdefault(job.domain, [time.perf_counter(), 0.0])
        done_list, _ = ray.wait(list(running), num_returns=1, timeout=poll_seconds)
        if not done_list:
            if on_epoch is not None:
                _poll(running, on_epoch)
            continue
        actor, pid, job = running.pop(done_list[0])
        spans[job.domain][1] = time.perf_counter()
        try:
            embedded[job.domain] = embedded.get(job.domain, 0) + ray.get(done_list[0])
            idle.append((actor, pid))
        except RayActorError as exc:
            log.warning("worker %s died while embedding %s: %s", pid, job.domain, exc)
            idle.append(spawn())
        except RayTaskError as exc:
            log.warning("a share of %s's embedding failed (left to tuning): %s", job.domain, exc)
            idle.append((actor, pid))
    return {
        domain: {"embedded": embedded.get(domain, 0), "seconds": end - start}
        for domain, (start, end) in spans.items()
    }


def _worker_class():
    import ray

    # Two threads: `progress` answers while `tune` runs.
    @ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=2)
    class TuningWorker:
        """Holds one copy of the frozen backbone; tunes one domain at a time."""

        def __init__(self, ref: BackboneRef, threads: int) -> None:
            import torch

            from .worker import load_ref

            torch.set_num_threads(max(1, threads))
            backbone = load_ref(ref)
            self.backbone = backbone.cuda() if torch.cuda.is_available() else backbone
            self.name = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"
            self.last_epoch: dict | None = None

        def pid(self) -> int:
            return os.getpid()

        def progress(self) -> dict | None:
            return self.last_epoch

        def tune(self, job: TuneJob) -> TuneOutcome:
            from .worker import run_tune_job

            def on_epoch(row: dict) -> None:
                self.last_epoch = {"domain": job.domain, **row}

            self.last_epoch = None
            return run_tune_job(self.backbone, job, worker=self.name, on_epoch=on_epoch)

        def embed(self, job: TuneJob, part: int, parts: int) -> int:
            from .worker import embed_part

            def on_progress(row: dict) -> None:
                self.last_epoch = {"domain": job.domain, "part": part, **row}

            self.last_epoch = None
            return embed_part(self.backbone, job, part, parts, on_progress=on_progress)

    return TuningWorker


def tune_on_ray(
    backbone: BackboneRef,
    jobs: Sequence[TuneJob],
    *,
    address: str | None = None,
    max_attempts: int = 2,
    max_workers: int | None = None,
    on_dispatch: Callable[[str, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    poll_seconds: float = 1.0,
    shared_embedding_rows: int = SHARED_EMBEDDING_ROWS,
) -> tuple[dict[str, TuneOutcome | Failure], ClusterInfo]:
    """Run every job on workers holding `backbone`; returns domain -> outcome or failure,
    and what the cluster was. A data version of `shared_embedding_rows` rows or more is
    first embedded by all workers together. `on_epoch(row)` sees each worker's latest
    progress (embedding or epoch, with its domain) as it is polled."""
    with ray_session(address) as connection:  # before importing Ray: see ray_session
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        actors: list = []
        try:
            resources = ray.cluster_resources()
            gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
            slots = gpus or cpus
            large = any(j.data.rows >= shared_embedding_rows for j in jobs)
            n = max(1, min(slots if large else len(jobs), slots, max_workers or slots))
            threads = max(1, cpus // n)
            options = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}
            worker_cls = _worker_class().options(**options)

            def spawn():
                actor = worker_cls.remote(backbone, threads)
                actors.append(actor)
                try:
                    return actor, ray.get(actor.pid.remote())
                except RayActorError as exc:  # the backbone failed to load on the worker
                    raise WorkerStartError(_actor_error(exc)) from None

            idle = deque(spawn() for _ in range(n))
            shared = _embed_shared(jobs, idle, spawn, on_epoch, poll_seconds, shared_embedding_rows)
            queue = deque(jobs)
            attempts: dict[str, int] = {}
            running: dict = {}
            results: dict[str, TuneOutcome | Failure] = {}
            while queue or running:
                while queue and idle:
                    job = queue.popleft()
                    actor, pid = idle.popleft()
                    attempts[job.domain] = attempts.get(job.domain, 0) + 1
                    running[actor.tune.remote(job)] = (actor, pid, job)
                    if on_dispatch:
                        on_dispatch(job.domain, pid)
                done_list, _ = ray.wait(list(running), num_returns=1, timeout=poll_seconds)
                if not done_list:
                    if on_epoch is not None:
                        _poll(running, on_epoch)
                    continue
                done = done_list[0]
                actor, pid, job = running.pop(done)
                try:
                    results[job.domain] = ray.get(done)
                    idle.append((actor, pid))
                except RayActorError as exc:
                    log.warning("worker %s died while tuning %s: %s", pid, job.domain, exc)
                    if attempts[job.domain] < max_attempts:
                        queue.appendleft(job)
                    else:
                        results[job.domain] = _tune_failure(
                            job.domain,
                            f"worker died while tuning ({type(exc).__name__}): {exc}",
                            attempts[job.domain],
                        )
                    idle.append(spawn())  # keep the pool at strength
                except RayTaskError as exc:
                    cause = exc.cause if exc.cause is not None else exc
                    results[job.domain] = _tune_failure(
                        job.domain, f"{type(cause).__name__}: {cause}", attempts[job.domain]
                    )
                    idle.append((actor, pid))
            for domain, done in shared.items():  # what the workers embedded together
                outcome = results.get(domain)
                if isinstance(outcome, TuneOutcome):
                    features = dict(outcome.features)
                    features["embedded"] = features.get("embedded", 0) + done["embedded"]
                    features["embed_seconds"] = round(
                        features.get("embed_seconds", 0) + done["seconds"], 3
                    )
                    results[domain] = replace(outcome, features=features)
            info = ClusterInfo(
                address=ray.get_runtime_context().gcs_address,
                cpus=cpus,
                gpus=gpus,
                workers=n,
                started_here=connection.local,
            )
            return results, info
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
