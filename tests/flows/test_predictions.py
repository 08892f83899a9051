"""Review evidence from the flow side: per-example predictions of candidate and production
on the test split, thumbnails of the disagreements, stored with the version by the
pipeline (tiny backbone, no Ray, no Prefect)."""

from __future__ import annotations

import dataclasses
import io
import subprocess

import pytest
from PIL import Image

from flows import predictions
from flows.datacache import DataCache, RemoteLocation
from flows.dataset import layout_of, read_rows, rows_digest
from flows.pipeline import PreparedDomain, build_job, register_outcome
from flows.predictions import (
    evidence_for,
    predict_rows,
    relative_images,
    worth_a_look,
)
from flows.versioning import DataVersioner, RemoteSpec
from flows.worker import run_tune_job
from mpt_core import evaluate, load_backbone
from mpt_core.thumbnails import THUMBNAIL_PX, thumbnail

from ..mpt_core.synthetic import examples, make_task
from .domain_factory import make_domain
from .retrain_fixtures import TINY


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("shipped", "tiny")


def images_for(batch) -> list[str]:
    return [f"images/{i}.png" for i in range(len(batch))]


@pytest.mark.parametrize("task", ["classification", "vqa", "retrieval"])
def test_rows_align_with_the_examples_and_agree_with_the_metrics(backbone, task):
    from mpt_core import build_prompts

    model = build_prompts(backbone, "mpt", make_task(task))
    batch = examples(task, per_class=3)
    rows = predict_rows(model, batch, images_for(batch), batch_size=4)  # several batches
    assert [r["image"] for r in rows] == [f"images/{i}.png" for i in range(len(batch))]
    field = model.task.contract.target
    assert [r["target"] for r in rows] == [getattr(e, field) for e in batch]
    assert all(0 < r["score"] <= 1 for r in rows)
    assert ("question" in rows[0]) == (task == "vqa")
    top1 = {"classification": "accuracy", "vqa": "accuracy", "retrieval": "i2t_r1"}[task]
    correct = sum(r["prediction"] == r["target"] for r in rows) / len(rows)
    assert correct == pytest.approx(evaluate(model, batch)[top1])


def test_disagreements_or_candidate_mistakes_are_worth_a_look():
    cand = [
        {"image": "a", "target": "x", "prediction": "x"},
        {"image": "b", "target": "x", "prediction": "y"},
        {"image": "b", "target": "y", "prediction": "y"},  # same image, another question
        {"image": "c", "target": "y", "prediction": "x"},
    ]
    prod = [{**r, "prediction": p} for r, p in zip(cand, ["x", "x", "x", "x"], strict=True)]
    assert worth_a_look(cand, prod) == ["b"]  # c: both wrong the same way, no disagreement
    assert worth_a_look(cand, None) == ["b", "c"]
    with pytest.raises(ValueError, match="different examples"):
        worth_a_look(cand, prod[:2])


def test_where_examples_are_scored_one_by_one_the_biggest_losses_come_first():
    qualities = {"a": (0.9, 0.2), "b": (0.5, 0.5), "c": (0.1, 0.8), "d": (0.4, 0.1)}
    cand = [
        {"image": i, "target": "t", "prediction": "p", "quality": c}
        for i, (c, _) in qualities.items()
    ]
    prod = [{**r, "prediction": "q", "quality": qualities[r["image"]][1]} for r in cand]
    assert worth_a_look(cand, prod) == ["c", "b", "d", "a"]  # lost 0.7, 0, gained 0.3, 0.7
    assert worth_a_look(cand, None) == ["c", "d", "b", "a"]  # alone: its weakest first


def test_generated_text_rows_carry_each_examples_own_score(tmp_path):
    from mpt_core import CaptioningTask, build_prompts, tiny_backbone
    from registry import TaskEvidence

    model = build_prompts(tiny_backbone("hf-blip2"), "coop", CaptioningTask(max_new_tokens=4))
    batch = examples("captioning", per_class=1)
    rows = predict_rows(model, batch, images_for(batch))
    assert all(r["score"] is None and r["quality"] >= 0 for r in rows)
    first_of_image = rows[0::2]  # the toy writes two reference captions per image
    cider = evaluate(model, batch)["cider"]
    assert sum(r["quality"] for r in first_of_image) / len(first_of_image) == pytest.approx(
        cider, abs=1e-3
    )
    evidence = evidence_for(model, None, batch, images_for(batch))
    assert evidence.task == TaskEvidence("captioning", False, True, "cider")
    assert predictions.task_evidence(make_task("vqa")) == TaskEvidence("vqa", True, False, None)


def test_thumbnails_are_small_jpegs_of_the_disagreements_only(backbone, monkeypatch):
    from mpt_core import TrainConfig, build_prompts, fit

    batch = examples("classification", per_class=4)
    cand = build_prompts(backbone, "mpt", make_task("classification"), seed=1)
    fit(cand, batch, None, TrainConfig(epochs=15, batch_size=6, lr=0.05, progress=False))
    prod = build_prompts(backbone, "coop", make_task("classification"), seed=2)
    evidence = evidence_for(cand, prod, batch, images_for(batch))
    expected = worth_a_look(evidence.candidate, evidence.production)
    assert expected and sorted(evidence.thumbnails) == sorted(expected)
    for jpeg in evidence.thumbnails.values():
        image = Image.open(io.BytesIO(jpeg))
        assert image.format == "JPEG" and max(image.size) <= THUMBNAIL_PX
    monkeypatch.setattr(predictions, "MAX_THUMBNAILS", 1)
    assert len(evidence_for(cand, prod, batch, images_for(batch)).thumbnails) == 1
    alone = evidence_for(cand, None, batch, images_for(batch))
    assert alone.production is None
    assert sorted(alone.thumbnails) == sorted(worth_a_look(alone.candidate, None))


def test_images_are_named_relative_to_the_data_folder(tmp_path):
    from mpt_core import Example

    batch = [Example(tmp_path / "data" / "images" / "a.png"), Example(tmp_path / "data" / "b.png")]
    assert relative_images(batch, tmp_path / "data") == ["images/a.png", "b.png"]


def test_thumbnail_keeps_the_aspect_ratio():
    jpeg = thumbnail(Image.new("RGB", (400, 100), (10, 200, 10)), size=96)
    assert Image.open(io.BytesIO(jpeg)).size == (96, 24)


def test_the_pipeline_stores_predictions_thumbnails_and_the_training_curve(backbone, tmp_path):
    """Worker -> pipeline -> registry, as the flow runs them (no Ray, no Prefect): the first
    candidate stores where it is wrong; the second, both versions' predictions on the same
    data and the disagreements; both their training curves. Authentication is on for the
    second: the flow acts as its service account."""
    from registry import open_registry

    registry = open_registry()
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    domain = make_domain(root, "classification", per_class=3)
    versioner = DataVersioner(root, RemoteSpec(str(root / "remote")))
    data = versioner.track(domain.data_dir)
    versioner.push(domain.data_dir)
    rows = read_rows(layout_of(domain.config), domain.data_dir)
    prepared = PreparedDomain(domain, data, rows_digest(rows))
    registry.record_data_version(
        domain.name, data.md5, rows=len(rows), row_counts={}, validation_passed=True
    )
    cache = DataCache(tmp_path / "cache")

    def tune_and_register(run: str):  # a retry of the same flow run registers nothing new
        job = build_job(prepared, TINY, registry, RemoteLocation(str(root / "remote")), run)
        train = dataclasses.replace(job.spec.train, epochs=2, patience=0)
        job = dataclasses.replace(job, spec=dataclasses.replace(job.spec, train=train))
        outcome = run_tune_job(backbone, job, cache=cache)
        return register_outcome(prepared, outcome, registry, job.production_version, run)

    first = tune_and_register("run-1")
    tests = [r for r in rows if r.split == "test"]
    alone = registry.predictions(domain.name, 1, data.md5, "test")
    assert [r["image"] for r in alone.rows] == [r.image for r in tests]
    assert set(registry.thumbnails(domain.name, data.md5, "test")) == set(
        worth_a_look(alone.rows, None)
    )
    registry.approve(first.request_id, reviewer="ben")
    registry.add_user("ben", "reviewer")
    second = tune_and_register("run-2")
    assert (second.version, second.production_version) == (2, 1)
    assert registry.get_request(second.request_id).requested_by == "retrain-flow"
    cand = registry.predictions(domain.name, 2, data.md5, "test")
    prod = registry.predictions(domain.name, 1, data.md5, "test")
    assert [r["target"] for r in prod.rows] == [r.fields["label"] for r in tests]
    assert cand.target_field == "label"
    accuracy = sum(r["prediction"] == r["target"] for r in cand.rows) / len(cand.rows)
    version = registry.get_version(domain.name, 2)
    assert accuracy == pytest.approx(version.metrics("test")["accuracy"])
    assert [h["epoch"] for h in version.training_history] == [1, 2]
    thumbs = registry.thumbnails(domain.name, data.md5, "test")
    assert set(worth_a_look(cand.rows, prod.rows)) <= set(thumbs) <= {r.image for r in tests}
    assert cand.task == prod.task == predictions.task_evidence(make_task("classification"))
    flow = [(e.action, e.version) for e in reversed(registry.audit_log(actor="retrain-flow"))]
    assert flow == [("register", 1), ("request", 1), ("register", 2), ("request", 2)]
