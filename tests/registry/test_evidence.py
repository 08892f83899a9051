"""Review evidence stored with versions: per-example predictions, thumbnails, training
history, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from registry import InvalidRecord, NotFoundError
from registry.evidence import MAX_THUMBNAILS

from .conftest import BACKBONE, make_artifact, metrics
from .test_registry import data

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
        ({"image": "a", "target": "a", "prediction": "b", "label": "x"}, r"unknown field.*label"),
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
