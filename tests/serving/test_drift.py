"""Drift of production on the real server, against a real registry on SQLite and
PostgreSQL: production's stored test-split predictions are the reference; a stream like
the test split keeps the drift low, a stream of one kind of image raises it; the reading
is on /v1/domains and /metrics, and drift points reach the registry."""

from __future__ import annotations

import pytest

from mpt_core import Example
from registry import MonitoringSettings
from serving import ServeSettings, create_app
from serving.drift import DriftTracker
from serving.shadow import confidence

from ..mpt_core.synthetic import CLASSES, examples
from ..review.conftest import database
from . import factory
from .helpers import b64, local_model
from .server import serve
from .shadow_scene import wait_for
from .test_shadow import metric

WINDOW = 90
SETTINGS = {
    "poll_seconds": 0.2,
    "retry_seconds": 0.5,
    "max_wait_ms": 2.0,
    "monitor_report_seconds": 0.3,
    "drift_every_seconds": 0.3,
    "drift_min_samples": WINDOW,
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def production(request, tmp_path_factory):
    """retail v1 in production, its predictions on a test split of 90 images stored."""
    root = tmp_path_factory.mktemp(f"drift-{request.param}")
    with database(request, request.param, root) as url:
        reg = factory.new_registry(root, url)
        spec = factory.DOMAINS[0]
        factory.register(reg, "retail", factory.tune(root / "retail-1", spec, 0))
        factory.promote(reg, "retail", 1)
        test_split = interleaved(30, seed=5)
        model = local_model(reg, "retail", 1)
        rows = [
            {"image": f"test/{i}.png", "target": e.label, "prediction": p, "score": round(s, 4)}
            for i, (e, (p, s)) in enumerate(zip(test_split, scored(model, test_split), strict=True))
        ]
        reg.record_predictions(
            "retail", 1, factory.DATA_VERSION, "test", rows, target_field="label"
        )
        reg.set_monitoring("retail", MonitoringSettings(window=WINDOW), actor="ana")
        yield reg, test_split


def interleaved(per_class: int, seed: int) -> list[Example]:
    """Images of every class in turn, so that any stretch of them is like the whole."""
    rows = examples("classification", per_class, seed)
    return [rows[k * per_class + i] for i in range(per_class) for k in range(len(CLASSES))]


def scored(model, batch: list[Example]) -> list[tuple[str, float]]:
    from mpt_core.inference import predict_batch

    return [(p.value, confidence(p)) for p in predict_batch([(model, e) for e in batch])]


def send(c, batch: list[Example]) -> None:
    for start in range(0, len(batch), 10):
        items = [{"domain": "retail", "image": b64(e.image)} for e in batch[start : start + 10]]
        assert c.post("/v1/predict", json={"items": items}).status_code == 200


def drift_now(c) -> dict:
    [row] = c.get("/v1/domains").json()["domains"]
    return row["drift"]


def test_drift_stays_low_on_the_test_split_and_rises_on_a_shifted_stream(production):
    reg, test_split = production
    model = local_model(reg, "retail", 1)
    pool = examples("classification", 40, seed=9)
    counts = {c: sum(p == c for p, _ in scored(model, test_split)) for c in CLASSES}
    rare = min(counts, key=counts.get)  # the class production predicts least on its test split
    shifted = [e for e, (p, _) in zip(pool, scored(model, pool), strict=True) if p == rare]
    shifted = (shifted * WINDOW)[:WINDOW]
    with serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server, server.client() as c:
        assert drift_now(c)["state"] == "collecting"
        send(c, interleaved(30, seed=13))  # new images, drawn like the test split
        calm = wait_for(
            lambda: (d := drift_now(c))["state"] == "measured" and d, 30, "drift measured"
        )
        send(c, shifted)
        moved = wait_for(
            lambda: (d := drift_now(c))["drift"] > calm["drift"] + 0.3 and d, 30, "drift rising"
        )
        wait_for(
            lambda: metric(c, "mpt_serving_drift", domain="retail", component="max") > 0.5,
            30,
            "the drift gauge on /metrics",
        )
        points = wait_for(
            lambda: [p for p in reg.drift_history("retail") if p.drift > 0.5],
            30,
            "a drift point in the registry",
        )
    assert calm["drift"] < 0.1, calm
    assert moved["drift"] > 0.5 and moved["components"]["predictions"] > 0.5, moved
    assert calm["statistic"] == "psi" and calm["samples"] == WINDOW
    assert set(calm["components"]) == {"predictions", "confidence"}
    assert calm["reference_rows"] == len(test_split) and "test of data version" in calm["reference"]
    assert points[-1].version == 1 and points[-1].samples == WINDOW


def test_a_version_without_stored_predictions_says_why_it_has_no_drift(tmp_path):
    reg = factory.build(tmp_path, specs=[factory.DOMAINS[0]])
    with serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server, server.client() as c:
        send(c, factory.sample("classification", 3))
        found = wait_for(
            lambda: (d := drift_now(c))["state"] == "no reference" and d, 30, "no reference"
        )
    assert "no stored predictions of v1" in found["problem"]


def test_new_window_settings_keep_the_newest_predictions():
    tracker = DriftTracker(min_samples=3)
    for i in range(5):
        tracker.add("retail", 1, f"c{i}", 0.5)
    tracker.sizes["retail"] = 3  # the monitor read `monitoring.window: 3`
    tracker.add("retail", 1, "c5", 0.5)
    assert [v for v, _ in tracker.windows["retail"].copy()] == ["c3", "c4", "c5"]
    tracker.add("retail", 2, "c6", 0.5)  # a new production version starts from scratch
    assert [v for v, _ in tracker.windows["retail"].copy()] == ["c6"]
