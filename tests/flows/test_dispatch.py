"""Ray dispatch: one worker per (fake) GPU, a worker killed mid-job, failures reported."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import pytest

from flows.dispatch import WorkerStartError, tune_on_ray
from flows.jobs import BackboneRef, Failure, TuneOutcome

from .retrain_fixtures import TINY, local_ray, pushed_job

pytestmark = pytest.mark.slow  # local Ray clusters: about a minute


def job_for(tmp_path, task, name, epochs=2):
    return pushed_job(tmp_path / "repo", task, name, epochs=epochs)


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
    results, info = tune_on_ray(TINY, jobs)
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

    results, _ = tune_on_ray(TINY, jobs, on_dispatch=on_dispatch)
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

    results, _ = tune_on_ray(TINY, jobs, on_dispatch=on_dispatch, max_attempts=2)
    assert isinstance(results["fine"], TuneOutcome)
    failure = results["doomed"]
    assert isinstance(failure, Failure) and (failure.stage, failure.attempts) == ("tune", 2)
    assert failure.message.startswith("tuning failed after 2 attempt(s): worker died")


def test_progress_is_polled_while_workers_tune(tmp_path, ray_cpus):
    seen = []
    results, _ = tune_on_ray(
        TINY,
        [job_for(tmp_path, "classification", "watched", epochs=60)],
        on_epoch=seen.append,
        poll_seconds=0.2,
    )
    assert isinstance(results["watched"], TuneOutcome)
    assert seen and all(r["domain"] == "watched" and r["epochs"] == 60 for r in seen)
    assert 1 <= seen[0]["epoch"] <= seen[-1]["epoch"] <= 60


def test_a_worker_whose_backbone_differs_is_refused(tmp_path, ray_cpus):
    wrong = BackboneRef("shipped", "tiny", (), "0" * 64)
    with pytest.raises(WorkerStartError, match="install the same weights on every node"):
        tune_on_ray(wrong, [job_for(tmp_path, "classification", "x")])


def test_a_large_data_version_is_embedded_by_every_worker_before_it_is_tuned(tmp_path, ray_cpus):
    from mpt_core.featurestore import FeatureStore

    job = job_for(tmp_path, "classification", "big")
    rows = []
    results, info = tune_on_ray(
        TINY, [job], shared_embedding_rows=job.data.rows, on_epoch=rows.append, poll_seconds=0.2
    )
    outcome = results["big"]
    assert info.workers == 2 and isinstance(outcome, TuneOutcome)
    features = outcome.features
    assert features["embedded"] == features["images"]  # each image once, by the shares
    store = FeatureStore.from_env()
    assert sum(1 for _ in store.root.rglob("*.safetensors")) >= 2  # a share from each worker
    shared = [r for r in rows if r.get("workers")]
    assert all(r["stage"] == "embedding" and r["done"] <= r["total"] for r in shared)
