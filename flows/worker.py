"""The tuning work done inside a worker, as a plain function (tests call it directly)."""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import time
from pathlib import Path

from PIL import Image

from mpt_core import Example, TrainConfig, build_prompts, evaluate, fit, load_prompts, save_prompts
from mpt_core.artifacts import CONFIG, TENSORS
from mpt_core.backbones.base import Backbone
from mpt_core.tasks import task_from_dict

from .jobs import ArtifactBlob, TuneJob, TuneOutcome
from .predictions import evidence_for


def _examples(job: TuneJob, split: str) -> list[Example]:
    out = []
    for row in job.rows:
        if row.split != split:
            continue
        with Image.open(io.BytesIO(job.images[row.image])) as image:
            out.append(
                Example(
                    image.convert("RGB"),
                    label=row.label,
                    caption=row.caption,
                    question=row.question,
                    answer=row.answer,
                )
            )
    return out


def _to_blob(directory: Path) -> ArtifactBlob:
    return ArtifactBlob((directory / CONFIG).read_text(), (directory / TENSORS).read_bytes())


def blob_to_dir(blob: ArtifactBlob, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG).write_text(blob.config_json)
    (directory / TENSORS).write_bytes(blob.tensors)
    return directory


def run_tune_job(backbone: Backbone, job: TuneJob, worker: str | None = None) -> TuneOutcome:
    """Tune the job's prompts on `backbone`, evaluate them (and production) on the same
    splits, and return the artifact bytes and metrics."""
    spec = dict(job.task)
    task = task_from_dict(spec.pop("name"), spec)
    train, val, test = (_examples(job, s) for s in ("train", "val", "test"))
    model = build_prompts(
        backbone, job.preset, task, seed=job.train_config.get("seed", 0), **job.overrides
    )
    started = time.perf_counter()
    result = fit(model, train, val or None, TrainConfig(**{**job.train_config, "progress": False}))
    seconds = time.perf_counter() - started
    metrics = {"test": evaluate(model, test)}
    if val:
        metrics["val"] = evaluate(model, val)
    production_metrics = production = None
    with tempfile.TemporaryDirectory() as tmp:
        if job.production is not None:
            production = load_prompts(blob_to_dir(job.production, Path(tmp) / "prod"), backbone)
            production_metrics = evaluate(production, test)
        evidence = evidence_for(model, production, test, [r for r in job.rows if r.split == "test"])
        out = save_prompts(model, Path(tmp) / "candidate", extra=job.extra)
        artifact = _to_blob(out)
    return TuneOutcome(
        domain=job.domain,
        artifact=artifact,
        metrics=json.loads(json.dumps(metrics)),
        production_metrics=production_metrics,
        history=result.history,
        seconds=seconds,
        worker=worker or f"{socket.gethostname()}:{os.getpid()}",
        trainable_parameters=model.num_trainable(),
        evidence=evidence,
    )
