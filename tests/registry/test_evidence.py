"""Review evidence stored with versions: per-example predictions, thumbnails, training
history, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from registry import InvalidRecord, NotFoundError, Policy, ReviewEvidence
from registry.resources.evidence import MAX_THUMBNAILS

from .conftest import BACKBONE, make_artifact, metrics, statements
from .test_registry import data, promote

ROWS = [
    {"image": "images/0.png", "target": "cat", "prediction": "cat", "score": 0.9},
    {"image": "images/1.png", "target": "dog", "prediction": "cat", "score": 0.55},
    {"image": "images/2.png", "question": "is it a dog?", "target": "yes", "prediction": "no"},
]


def jpeg(colour=(200, 30, 30), size=24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def version(reg, tmp_path):
    data(reg)
    return reg.register_version(
        "retail",
        make_artifact(tmp_path / "art", "one"),
        method="mpt",
        config={"preset": "mpt"},
        data_version="d" * 32,
        backbone=BACKBONE,
        metrics={"test": metrics(0.8, a=0.8)},
        training_history=[{"epoch": 1, "train_loss": 1.2}, {"epoch": 2, "train_loss": 0.7}],
    )


def test_training_history_is_stored_with_the_version(reg, version):
    assert [h["train_loss"] for h in reg.get_version("retail", 1).training_history] == [1.2, 0.7]


def test_predictions_round_trip_and_are_replaced_on_re_evaluation(reg, version):
    assert reg.predictions("retail", 1, "d" * 32) is None
    reg.record_predictions("retail", 1, "d" * 32, "test", ROWS, target_field="label")
    got = reg.predictions("retail", 1, "d" * 32, "test")
    assert got.rows == ROWS and got.target_field == "label" and got.version == 1
    reg.record_predictions("retail", 1, "d" * 32, "test", ROWS[:1], target_field="label")
    assert reg.predictions("retail", 1, "d" * 32).rows == ROWS[:1]
    assert reg.predictions("retail", 1, "d" * 32, "val") is None
    data(reg, md5="e" * 32)  # the same version on newer data keeps both records
    reg.record_predictions("retail", 1, "e" * 32, "test", ROWS, target_field="label")
    assert len(reg.predictions("retail", 1, "e" * 32).rows) == 3
    assert len(reg.predictions("retail", 1, "d" * 32).rows) == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": "a.png", "target": "cat"}, r"row 1: 'prediction' is missing"),
        ({"image": "", "target": "a", "prediction": "b"}, r"row 1: 'image' must be a non-empty"),
        ({"image": "a", "target": "a", "prediction": 3}, r"row 1: 'prediction' must be a"),
        ({"image": "a", "target": "a", "prediction": "b", "score": 1.5}, r"score must be in"),
        ({"image": "a", "target": "a", "prediction": "b", "Bad Key": "x"}, r"'Bad Key' is not a"),
        ({"image": "a", "target": "a", "prediction": "b", "question": 3}, r"input 'question' must"),
    ],
)
def test_a_bad_prediction_row_is_named_and_nothing_is_stored(reg, version, row, message):
    with pytest.raises(InvalidRecord, match=message):
        reg.record_predictions("retail", 1, "d" * 32, "test", [ROWS[0], row], target_field="x")
    assert reg.predictions("retail", 1, "d" * 32) is None


def test_predictions_need_a_known_version_and_data_version(reg, version):
    with pytest.raises(NotFoundError, match="retail v7 does not exist"):
        reg.record_predictions("retail", 7, "d" * 32, "test", ROWS, target_field="label")
    with pytest.raises(NotFoundError, match=r"data version f+ of retail is not recorded"):
        reg.record_predictions("retail", 1, "f" * 32, "test", ROWS, target_field="label")


def test_thumbnails_are_small_jpegs_capped_and_upserted(reg, version):
    reg.record_thumbnails("retail", "d" * 32, "test", {"images/1.png": jpeg()})
    reg.record_thumbnails("retail", "d" * 32, "test", {"images/1.png": jpeg((0, 0, 200))})
    got = reg.thumbnails("retail", "d" * 32, "test", ["images/1.png", "images/9.png"])
    assert list(got) == ["images/1.png"]
    assert Image.open(io.BytesIO(got["images/1.png"])).getpixel((5, 5))[2] > 150
    with pytest.raises(InvalidRecord, match="is not JPEG data"):
        reg.record_thumbnails("retail", "d" * 32, "test", {"a.png": b"\x89PNG...."})
    with pytest.raises(InvalidRecord, match="at most 32000"):
        reg.record_thumbnails("retail", "d" * 32, "test", {"a.png": jpeg() + bytes(40_000)})
    many = {f"images/{i}.png": jpeg() for i in range(MAX_THUMBNAILS + 1)}
    with pytest.raises(InvalidRecord, match=f"{MAX_THUMBNAILS + 1} thumbnails .* at most 48"):
        reg.record_thumbnails("retail", "d" * 32, "test", many)
    assert list(reg.thumbnails("retail", "d" * 32, "test")) == ["images/1.png"]


def test_domains_with_versions_are_listed(reg, version):
    data(reg, domain="medical")  # a domain with data but no version is not listed
    assert reg.domains() == ["retail"]


# ---------------------------------------------------------------- evidence with a candidate
MD5 = "d" * 32
PRODUCTION_ON_MD5 = (1, metrics(0.7, a=0.7))
"""Production v1's metrics as the retrain measured them on the candidate's data."""


def register_candidate(reg, evidence, production=PRODUCTION_ON_MD5, run="run-2"):
    """A retrain's candidate v2 against production v1, with its review evidence."""
    return reg.register_candidate(
        "retail",
        {"prompts.safetensors": b"tensors-two", "prompt_config.json": b"{}"},
        method="mpt",
        config={"preset": "mpt", "run": run},
        data_version=MD5,
        backbone=BACKBONE,
        metrics={"test": metrics(0.9, a=0.9)},
        policy=Policy("accuracy"),
        production=production,
        created_by="retrain-flow",
        flow_run_id=run,
        primary_metric="accuracy",
        evidence=evidence,
    )


def test_a_candidate_is_registered_with_both_versions_predictions_and_thumbnails(reg, version):
    promote(reg, "retail", 1)
    production = [{**row, "prediction": row["target"]} for row in ROWS]
    evidence = ReviewEvidence("test", "label", ROWS, production, {"images/1.png": jpeg()})
    v, request = register_candidate(reg, evidence)
    assert (v.number, v.primary_metric, request.policy_report["production_version"]) == (
        2,
        "accuracy",
        1,
    )
    assert reg.get_version("retail", 2).primary_metric == "accuracy"
    assert reg.predictions("retail", 2, MD5).rows == ROWS
    assert reg.predictions("retail", 1, MD5).rows == production
    assert reg.predictions("retail", 1, MD5).target_field == "label"
    assert list(reg.thumbnails("retail", MD5, "test")) == ["images/1.png"]
    assert reg.get_version("retail", 1).metrics("test", MD5)["accuracy"] == 0.7


def test_a_failure_writing_the_predictions_leaves_no_version_request_or_predictions(reg, version):
    """Production's second row lacks its prediction: the registry refuses it after the
    candidate version, its evaluation, production's evaluation, the request and the
    candidate's predictions reached the database in the same transaction, and all of
    them are rolled back."""
    promote(reg, "retail", 1)
    requests = reg.requests()
    broken = [ROWS[0], {"image": "images/1.png", "target": "dog"}]
    evidence = ReviewEvidence("test", "label", ROWS, broken, {"images/1.png": jpeg()})
    refused = r"predictions of retail v1 on test of d+, row 1: 'prediction' is missing"
    with statements(reg.url) as seen, pytest.raises(InvalidRecord, match=refused):
        register_candidate(reg, evidence)
    written = " ".join(seen)
    for table in ("prompt_versions", "evaluations", "promotion_requests", "predictions"):
        assert f"INSERT INTO {table}" in written, table
    assert [v.number for v in reg.list_versions("retail")] == [1]
    assert reg.requests() == requests
    assert reg.predictions("retail", 1, MD5) is None and reg.predictions("retail", 2, MD5) is None
    assert reg.thumbnails("retail", MD5, "test") == {}
    assert reg.get_version("retail", 1).metrics("test", MD5)["accuracy"] == 0.8  # not 0.7
    assert [e.version for e in reg.audit_log(domain="retail") if e.action == "request"] == [1]

    production = [{**row, "prediction": row["target"]} for row in ROWS]
    fixed = ReviewEvidence("test", "label", ROWS, production)
    v, request = register_candidate(reg, fixed)  # the retry writes everything once
    assert (v.number, request.version) == (2, 2)
    assert reg.predictions("retail", 1, MD5).rows == production


def test_production_predictions_need_the_production_version(reg, version):
    evidence = ReviewEvidence("test", "label", ROWS, ROWS)
    with pytest.raises(InvalidRecord, match="no production version was given"):
        register_candidate(reg, evidence, production=None)
    assert [v.number for v in reg.list_versions()] == [1]


def test_rows_may_carry_their_quality_and_the_set_what_its_task_says(reg, version):
    from registry import TaskEvidence

    task = TaskEvidence("captioning", closed=False, generates_text=True, example_metric="cider")
    rows = [{"image": "a.png", "target": "a cat", "prediction": "a dog", "quality": 1.7}]
    reg.record_predictions("retail", 1, "d" * 32, "test", rows, target_field="caption", task=task)
    got = reg.predictions("retail", 1, "d" * 32)
    assert got.rows == rows and got.task == task
    for bad in (-1.0, float("nan"), "high"):
        with pytest.raises(InvalidRecord, match="row 0: quality must be a finite number >= 0"):
            reg.record_predictions(
                "retail", 1, "d" * 32, "test", [{**rows[0], "quality": bad}], target_field="c"
            )
    closed = TaskEvidence("classification", closed=True, generates_text=False)
    with pytest.raises(InvalidRecord, match="carry a quality but task 'classification' names no"):
        reg.record_predictions("retail", 1, "d" * 32, "test", rows, target_field="c", task=closed)
    reg.record_predictions("retail", 1, "d" * 32, "test", ROWS, target_field="label")
    assert reg.predictions("retail", 1, "d" * 32).task is None  # stored without: unknown
