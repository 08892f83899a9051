"""Ray dispatch: one worker per (fake) GPU, a worker killed mid-job, failures reported."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import pytest

from flows.dispatch import tune_on_ray
from flows.jobs import TuneFailure, TuneOutcome
from flows.pipeline import PreparedDomain, build_job
from flows.versioning import DataVersion
from mpt_core import tiny_backbone

from .domain_factory import make_domain
from .retrain_fixtures import local_ray

pytestmark = pytest.mark.slow  # local Ray clusters: about a minute


class _NoRegistry:
    def resolve(self, domain):
        return None


def job_for(tmp_path, task, name, epochs=2):
    domain = make_domain(tmp_path, task, per_class=3, name=name)
    prepared = PreparedDomain(domain, DataVersion("0" * 32, domain.data_dir, 0, 0, ""), None)
    job = build_job(prepared, backbone(), _NoRegistry(), None)
    return type(job)(
        **{**job.__dict__, "train_config": {**job.train_config, "epochs": epochs, "patience": 0}}
    )


_backbone = None


def backbone():
    global _backbone
    _backbone = _backbone or tiny_backbone("shipped")
    return _backbone


@pytest.fixture
def ray_with_fake_gpus():
    with local_ray(num_cpus=2, num_gpus=2):
        yield


@pytest.fixture
def ray_cpus():
    with local_ray(num_cpus=2):
        yield


def test_one_worker_per_gpu_each_domain_once(tmp_path, ray_with_fake_gpus):
    jobs = [job_for(tmp_path, t, f"d-{t}") for t in ("classification", "vqa", "retrieval")]
    results, info = tune_on_ray(backbone(), jobs)
    assert (info.gpus, info.workers) == (2, 2)
    assert all(isinstance(r, TuneOutcome) for r in results.values())
    assert sorted(results) == ["d-classification", "d-retrieval", "d-vqa"]
    assert len({r.worker for r in results.values()}) == 2  # two actors shared the queue
    outcome = results["d-vqa"]
    assert (
        outcome.artifact.tensors
        and "test" in outcome.metrics
        and outcome.production_metrics is None
    )


def _kill_soon(pid: int, delay: float = 1.0) -> None:
    def kill():
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill, daemon=True).start()


def test_a_killed_worker_is_replaced_and_its_domain_retried(tmp_path, ray_cpus):
    jobs = [
        job_for(tmp_path, "classification", "slow", epochs=400),
        job_for(tmp_path, "vqa", "other"),
    ]
    killed: list[int] = []

    def on_dispatch(domain, pid):
        if domain == "slow" and not killed:
            killed.append(pid)
            _kill_soon(pid)

    results, _ = tune_on_ray(backbone(), jobs, on_dispatch=on_dispatch)
    assert (
        killed
        and isinstance(results["slow"], TuneOutcome)
        and isinstance(results["other"], TuneOutcome)
    )
    assert not results["slow"].worker.endswith(f":{killed[0]}")


def test_a_domain_that_keeps_killing_workers_fails_alone(tmp_path, ray_cpus):
    jobs = [
        job_for(tmp_path, "classification", "doomed", epochs=400),
        job_for(tmp_path, "vqa", "fine"),
    ]

    def on_dispatch(domain, pid):
        if domain == "doomed":
            _kill_soon(pid, 0.5)

    results, _ = tune_on_ray(backbone(), jobs, on_dispatch=on_dispatch, max_attempts=2)
    assert isinstance(results["fine"], TuneOutcome)
    failure = results["doomed"]
    assert (
        isinstance(failure, TuneFailure)
        and failure.attempts == 2
        and "worker died" in failure.error
    )
