"""Review evidence from the flow side: per-example predictions of candidate and production
on the test split, thumbnails of the disagreements, stored with the version by the
pipeline (tiny backbone, no Ray, no Prefect)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from flows import predictions
from flows.jobs import Row
from flows.pipeline import PreparedDomain, build_job, record_data, register_outcome
from flows.predictions import evidence_for, predict_rows, thumbnail, worth_a_look
from flows.validation import validate_domain
from flows.versioning import DataVersion
from flows.worker import run_tune_job
from mpt_core import evaluate, tiny_backbone

from ..mpt_core.synthetic import examples, make_task
from .domain_factory import make_domain


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone("shipped")


def rows_for(batch) -> list[Row]:
    return [Row(image=f"images/{i}.png", split="test") for i in range(len(batch))]


@pytest.mark.parametrize("task", ["classification", "vqa", "retrieval"])
def test_rows_align_with_the_examples_and_agree_with_the_metrics(backbone, task):
    from mpt_core import build_prompts

    model = build_prompts(backbone, "mpt", make_task(task))
    batch = examples(task, per_class=3)
    rows = predict_rows(model, batch, rows_for(batch), batch_size=4)  # several batches
    assert [r["image"] for r in rows] == [f"images/{i}.png" for i in range(len(batch))]
    field = model.task.target_field
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


def test_thumbnails_are_small_jpegs_of_the_disagreements_only(backbone, monkeypatch):
    from mpt_core import TrainConfig, build_prompts, fit

    batch = examples("classification", per_class=4)
    cand = build_prompts(backbone, "mpt", make_task("classification"), seed=1)
    fit(cand, batch, None, TrainConfig(epochs=15, batch_size=6, lr=0.05, progress=False))
    prod = build_prompts(backbone, "coop", make_task("classification"), seed=2)
    evidence = evidence_for(cand, prod, batch, rows_for(batch))
    expected = worth_a_look(evidence.candidate, evidence.production)
    assert expected and sorted(evidence.thumbnails) == sorted(expected)
    for jpeg in evidence.thumbnails.values():
        image = Image.open(io.BytesIO(jpeg))
        assert image.format == "JPEG" and max(image.size) <= predictions.THUMBNAIL_PX
    monkeypatch.setattr(predictions, "MAX_THUMBNAILS", 1)
    assert len(evidence_for(cand, prod, batch, rows_for(batch)).thumbnails) == 1
    alone = evidence_for(cand, None, batch, rows_for(batch))
    assert alone.production is None
    assert sorted(alone.thumbnails) == sorted(worth_a_look(alone.candidate, None))


def test_thumbnail_keeps_the_aspect_ratio():
    jpeg = thumbnail(Image.new("RGB", (400, 100), (10, 200, 10)), size=96)
    assert Image.open(io.BytesIO(jpeg)).size == (96, 24)


def test_the_pipeline_stores_predictions_thumbnails_and_the_training_curve(
    backbone, tmp_path, monkeypatch
):
    from registry import open_registry

    registry = open_registry()
    domain = make_domain(tmp_path, "classification", per_class=3)
    prepared = PreparedDomain(
        domain,
        DataVersion("5" * 32, domain.data_dir, 0, 0, ""),
        validate_domain(domain, tmp_path / "report"),
    )
    record_data(prepared, registry, tmp_path / "reports")

    def tune_and_register():
        job = build_job(prepared, backbone, registry, "run-1")
        job = type(job)(**{**job.__dict__, "train_config": {"epochs": 2, "batch_size": 8}})
        outcome = run_tune_job(backbone, job)
        return register_outcome(
            prepared, outcome, backbone, registry, job.production_version, "run-1"
        )

    first = tune_and_register()
    registry.approve(first.request_id, reviewer="ben")
    registry.add_user("ben", "reviewer")  # authentication on: the flow's service account acts
    second = tune_and_register()
    assert (second.version, second.production_version) == (2, 1)
    assert registry.get_request(second.request_id).requested_by == "retrain-flow"
    cand = registry.predictions(domain.name, 2, "5" * 32, "test")
    prod = registry.predictions(domain.name, 1, "5" * 32, "test")
    tests = [r for r in domain_rows(domain) if r["split"] == "test"]
    assert [r["image"] for r in cand.rows] == [r["image"] for r in tests]
    assert [r["target"] for r in prod.rows] == [r["label"] for r in tests]
    assert cand.target_field == "label"
    accuracy = sum(r["prediction"] == r["target"] for r in cand.rows) / len(cand.rows)
    version = registry.get_version(domain.name, 2)
    assert accuracy == pytest.approx(version.metrics("test")["accuracy"])
    assert [h["epoch"] for h in version.training_history] == [1, 2]
    thumbs = registry.thumbnails(domain.name, "5" * 32, "test")
    assert thumbs and set(thumbs) <= {r["image"] for r in tests}
    assert set(thumbs) >= set(worth_a_look(cand.rows, prod.rows))


def domain_rows(domain) -> list[dict[str, str]]:
    from .domain_factory import read_rows

    return read_rows(domain)
