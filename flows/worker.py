"""The tuning work done inside a worker, as plain functions (tests call them directly)."""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

from mpt_core import evaluate, fit, load_backbone
from mpt_core.artifacts import prompts_from_bytes, prompts_to_bytes
from mpt_core.backbones.base import Backbone
from mpt_core.errors import BackboneMismatchError, DataError
from mpt_core.featurestore import FeatureStore, Progress
from mpt_core.training import embed_examples

from .datacache import DataCache
from .dataset import read_rows, rows_digest, split_examples
from .fitted import FittedPrompts, restore
from .jobs import BackboneRef, TuneJob, TuneOutcome
from .predictions import evidence_for, relative_images

EpochCallback = Callable[[dict[str, Any]], None]


def node_cache() -> DataCache:
    """This node's data cache: `$MPT_HOME/cache/data` (default ~/.mpt/cache/data)."""
    home = Path(os.environ.get("MPT_HOME") or Path.home() / ".mpt").expanduser()
    return DataCache(home / "cache" / "data")


def load_ref(ref: BackboneRef) -> Backbone:
    """Load the backbone a job names, and check its weights are the ones the driver saw."""
    backbone = load_backbone(ref.family, ref.name, **dict(ref.options))
    if ref.sha256 and backbone.identity.weights_sha256 != ref.sha256:
        raise BackboneMismatchError(
            f"backbone {ref.describe()} on {socket.gethostname()} has weights sha256 "
            f"{backbone.identity.weights_sha256[:12]}…, not {ref.sha256[:12]}… as on the "
            "driver: install the same weights on every node"
        )
    return backbone


def job_examples(job: TuneJob, cache: DataCache) -> dict[str, list]:
    """The job's examples per split, from its data version materialised on this node; the
    rows must be exactly those the driver validated."""
    return _job_data(job, cache)[1]


def _job_data(job: TuneJob, cache: DataCache) -> tuple[Path, dict]:
    """(the data version's folder on this node, the job's examples per split)."""
    data_dir = cache.materialise(job.data.location, job.data.md5)
    rows = read_rows(job.data.layout, data_dir)
    if rows_digest(rows) != job.data.rows_sha256:
        raise DataError(
            f"{job.domain}: the rows read from data version {job.data.md5} differ from the "
            "rows validated on the driver; re-run (the data changed while it was versioned)"
        )
    return data_dir, split_examples(rows, data_dir)


def embedding_progress(domain: str, report: EpochCallback | None) -> Progress | None:
    """A feature store's progress callback that reports the embedding pass as a row
    {domain, stage: embedding, done, total, rate (images/s)}."""
    if report is None:
        return None
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - started, 1e-9)
        report({"domain": domain, "stage": "embedding", "done": done, "total": total,
                "rate": rate})  # fmt: skip

    return progress


def embed_part(
    backbone: Backbone,
    job: TuneJob,
    part: int,
    parts: int,
    *,
    cache: DataCache | None = None,
    store: FeatureStore | None = None,
    on_progress: EpochCallback | None = None,
) -> int:
    """Part `part` of `parts` of a job's embedding pass: the frozen features of one
    contiguous share of its images (train, val, test) put in the node's feature store, so
    that several workers embed one large data version together before it is tuned.
    Returns how many images this part computed (those already stored are not)."""
    _, splits = _job_data(job, cache or node_cache())
    store = store or FeatureStore.from_env()
    images = list(dict.fromkeys(e.image for split in splits.values() for e in split))
    share = images[len(images) * part // parts : len(images) * (part + 1) // parts]
    model = job.spec.build(backbone)
    before = store.embedded
    if share:
        model.prepare_images(
            share, store=store, on_progress=embedding_progress(job.domain, on_progress)
        )
    return store.embedded - before


def run_tune_job(
    backbone: Backbone,
    job: TuneJob,
    *,
    cache: DataCache | None = None,
    store: FeatureStore | None = None,
    worker: str | None = None,
    on_epoch: EpochCallback | None = None,
) -> TuneOutcome:
    """Tune the job's prompts on `backbone`, evaluate them (and production) on the same
    splits, and return the artifact bytes and metrics. The frozen features of every image
    come from the node's feature store (`$MPT_HOME/cache/features`): only images it does
    not hold yet are embedded, and training reads them a batch at a time."""
    data_dir, splits = _job_data(job, cache or node_cache())
    store = store or FeatureStore.from_env()
    embedded_before = store.embedded
    train, val, test = splits["train"], splits["val"], splits["test"]
    model = job.spec.build(backbone)
    everything = [e.image for e in (*train, *val, *test)]
    embedding_started = time.perf_counter()
    view = model.prepare_images(
        everything, store=store, on_progress=embedding_progress(job.domain, on_epoch)
    )
    embed_seconds = time.perf_counter() - embedding_started
    cut = [0, len(train), len(train) + len(val), len(everything)]
    train_view, val_view, test_view = (view.take(range(a, b)) for a, b in pairwise(cut))
    started = time.perf_counter()
    result = restore(model, job, FittedPrompts())  # the chosen search trial's own fit
    if result is None:
        result = fit(
            model,
            train,
            val or None,
            job.spec.train,
            on_epoch=on_epoch,
            prepared=(train_view, val_view if val else None),
        )
    seconds = time.perf_counter() - started
    # The test split is embedded once per model: for its metrics and its per-example rows.
    embedded = embed_examples(model, test, prepared=test_view)
    metrics = {"test": evaluate(model, test, embedded=embedded)}
    if val and job.spec.train.final == "refit":
        # The refitted prompts have trained on val: what they score there is no estimate.
        # Recorded instead: the fold fits' mean held-out metric at the chosen epoch.
        if result.best_value is not None:
            metrics["val"] = {result.metric: result.best_value}
    elif val:
        metrics["val"] = evaluate(model, val, prepared=val_view)
    production_metrics = production = production_embedded = None
    if job.production is not None:
        production = prompts_from_bytes(
            job.production, backbone, source=f"{job.domain} v{job.production_version}"
        )
        production_embedded = embed_examples(production, test, store=store)
        production_metrics = evaluate(production, test, embedded=production_embedded)
    evidence = evidence_for(
        model,
        production,
        test,
        relative_images(test, data_dir),
        embedded=(embedded, production_embedded),
    )
    features = {
        "images": len(set(everything)),
        "embedded": store.embedded - embedded_before,
        "embed_seconds": round(embed_seconds, 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    extra = {**job.extra, "spec": job.spec.to_dict(), "features": features}
    return TuneOutcome(
        domain=job.domain,
        artifact=prompts_to_bytes(model, extra=extra),
        metrics=json.loads(json.dumps(metrics)),
        production_metrics=production_metrics,
        history=result.history,
        seconds=seconds,
        worker=worker or f"{socket.gethostname()}:{os.getpid()}",
        trainable_parameters=model.num_trainable(),
        backbone=backbone.identity.to_dict(),
        evidence=evidence,
        features=features,
    )
