"""Tune many domains on Ray workers that share one frozen backbone.

The backbone goes into the object store once; each worker is an actor (one per GPU when
the cluster has GPUs, else one per CPU slot) that receives it once and tunes domains from
a queue. Only prompt tensors and metrics come back. A worker that dies mid-job has its
domain retried on another worker (a replacement is started); after `max_attempts` the
domain is reported as failed and the others still finish.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mpt_core.backbones.base import Backbone

from .jobs import TuneFailure, TuneJob, TuneOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    cpus: int
    gpus: int
    workers: int
    started_here: bool


def restore_env(snapshot: dict[str, str]) -> None:
    """ray.init exports RAY_* (and PYTHONBREAKPOINT) into this process; undo that."""
    for key in set(os.environ) - set(snapshot):
        del os.environ[key]
    os.environ.update(snapshot)


def connect(address: str | None = None) -> bool:
    """Connect to the cluster at `address`, or start a local Ray. True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return False
    ray.init(
        address="local",  # always a fresh local Ray, never one found on the machine
        num_cpus=os.cpu_count() or 1,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    return True


def _worker_class():
    import ray

    @ray.remote(max_restarts=0, max_task_retries=0)
    class TuningWorker:
        """Holds one copy of the frozen backbone; tunes one domain at a time."""

        def __init__(self, backbone: Backbone, threads: int) -> None:
            import torch

            torch.set_num_threads(max(1, threads))
            self.backbone = backbone.cuda() if torch.cuda.is_available() else backbone
            self.name = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"

        def pid(self) -> int:
            return os.getpid()

        def tune(self, job: TuneJob) -> TuneOutcome:
            from .worker import run_tune_job

            return run_tune_job(self.backbone, job, worker=self.name)

    return TuningWorker


def tune_on_ray(
    backbone: Backbone,
    jobs: Sequence[TuneJob],
    *,
    address: str | None = None,
    max_attempts: int = 2,
    max_workers: int | None = None,
    on_dispatch: Callable[[str, int], None] | None = None,
) -> tuple[dict[str, TuneOutcome | TuneFailure], ClusterInfo]:
    """Run every job; returns domain -> outcome or failure, and what the cluster was."""
    env = dict(os.environ)  # before importing Ray, which exports RAY_* variables
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    started_here = connect(address)
    actors: list = []
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        slots = gpus or cpus
        n = max(1, min(len(jobs), slots, max_workers or slots))
        threads = max(1, cpus // n)
        options = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}
        worker_cls = _worker_class().options(**options)
        backbone_ref = ray.put(backbone)  # the weights enter the object store once

        def spawn():
            actor = worker_cls.remote(backbone_ref, threads)
            actors.append(actor)
            return actor, ray.get(actor.pid.remote())

        idle = deque(spawn() for _ in range(n))
        queue = deque(jobs)
        attempts: dict[str, int] = {}
        running: dict = {}
        results: dict[str, TuneOutcome | TuneFailure] = {}
        while queue or running:
            while queue and idle:
                job = queue.popleft()
                actor, pid = idle.popleft()
                attempts[job.domain] = attempts.get(job.domain, 0) + 1
                running[actor.tune.remote(job)] = (actor, pid, job)
                if on_dispatch:
                    on_dispatch(job.domain, pid)
            (done,), _ = ray.wait(list(running), num_returns=1)
            actor, pid, job = running.pop(done)
            try:
                results[job.domain] = ray.get(done)
                idle.append((actor, pid))
            except RayActorError as exc:
                log.warning("worker %s died while tuning %s: %s", pid, job.domain, exc)
                if attempts[job.domain] < max_attempts:
                    queue.appendleft(job)
                else:
                    results[job.domain] = TuneFailure(
                        job.domain,
                        f"worker died while tuning ({type(exc).__name__}): {exc}",
                        attempts[job.domain],
                    )
                idle.append(spawn())  # keep the pool at strength
            except RayTaskError as exc:
                cause = exc.cause if exc.cause is not None else exc
                results[job.domain] = TuneFailure(
                    job.domain, f"{type(cause).__name__}: {cause}", attempts[job.domain]
                )
                idle.append((actor, pid))
        info = ClusterInfo(
            address=ray.get_runtime_context().gcs_address,
            cpus=cpus,
            gpus=gpus,
            workers=n,
            started_here=started_here,
        )
        return results, info
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started_here:
            ray.shutdown()
            restore_env(env)
