"""Shadow traffic on the real server (uvicorn, HTTP, a real registry on SQLite and
PostgreSQL): for a known stream of items, the counts and the agreement the registry
holds are exactly what the two versions give outside the server; production's answers
are production's; a shadow that fails to load or to predict changes nothing for
production and is counted."""

from __future__ import annotations

import re

import httpx
import pytest

from flows.domains import get_domain
from flows.pipeline import apply_monitoring
from mpt_core.thumbnails import THUMBNAIL_PX
from registry import MonitoringSettings
from serving import ServeSettings, create_app

from ..mpt_core.synthetic import CLASSES
from ..review.conftest import database
from . import shadow_scene as scene
from .helpers import assert_scores, local_model, local_scores
from .server import serve

SETTINGS = {
    "poll_seconds": 0.2,
    "retry_seconds": 0.5,
    "max_wait_ms": 2.0,
    "monitor_report_seconds": 0.3,
}
DOMAINS = (scene.RETAIL, scene.FACTORY, scene.CAPTIONS)
N = 10


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shadowed(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"shadow-{request.param}")
    with database(request, request.param, root) as url:
        yield scene.build(root, DOMAINS, url)


def metric(c: httpx.Client, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{"):
            got = ",".join(sorted(re.findall(r'\w+="[^"]*"', line.split("}")[0])))
            if got == wanted:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def shadowing(c: httpx.Client, domains) -> bool:
    states = {d["domain"]: d["shadow"]["state"] for d in c.get("/v1/domains").json()["domains"]}
    return all(states.get(d.domain) == "shadowing" for d in domains)


def test_counts_and_agreement_are_exact_for_a_known_traffic_mix(shadowed):
    streams = {d.domain: scene.stream(d, N) for d in DOMAINS}
    items = {d: [scene.item(d, e) for e in examples] for d, examples in streams.items()}
    app = create_app(ServeSettings(**SETTINGS), registry=shadowed)
    with serve(app) as server, server.client() as c:
        scene.wait_for(lambda: shadowing(c, DOMAINS), 60, "every candidate loaded")
        answers = {d: [] for d in streams}
        for i in range(N):  # one request at a time: the server sees the items in order
            batch = [items[d.domain][i] for d in DOMAINS]
            r = c.post("/v1/predict", json={"items": batch})
            assert r.status_code == 200, r.text
            for d, result in zip(DOMAINS, r.json()["results"], strict=True):
                answers[d.domain].append(result)
        for d in DOMAINS:
            want = scene.expected(shadowed, d, streams[d.domain])

            def reported(d=d, want=want):
                found = shadowed.shadow_evidence(d.domain, 2, 1)
                return found if found and found.requests == want.requests else None

            found = scene.wait_for(reported, 30, f"{d.domain}'s tally in the registry")
            assert found.tally.agreed == want.agreed, d.domain
            assert (found.tally.errors, found.tally.dropped) == (0, 0)
            assert sum(found.tally.shadow_values.values()) == want.requests
            assert [a["version"] for a in answers[d.domain]] == [1] * N  # production's
            assert [a["prediction"] for a in answers[d.domain]] == want.production
            assert len(found.samples) == len(want.disagreeing)
            expected_hashes = {scene.sha256_of(items[d.domain][i]) for i in want.disagreeing}
            assert {x.image_sha256 for x in found.samples} == expected_hashes
            kept = [x.thumbnail is not None for x in found.samples]
            assert kept == [d.keep_images] * len(found.samples)
            answered = metric(
                c,
                "mpt_serving_shadow_items_total",
                domain=d.domain,
                version="2",
                outcome="answered",
            )
            assert answered == want.requests
        domains = {x["domain"]: x for x in c.get("/v1/domains").json()["domains"]}
    retail = scene.RETAIL
    assert (
        retail.fraction == 0.5
        and scene.expected(shadowed, retail, streams["retail"]).requests == N // 2
    )
    model = local_model(shadowed, "retail", 1)
    for answer, expected in zip(
        answers["retail"], local_scores(model, streams["retail"]), strict=True
    ):
        assert_scores(answer["scores"], expected)  # production's answers, untouched
    captions = shadowed.shadow_evidence("captions", 2, 1)
    assert captions.tally.similarity_n == N and 0.0 <= captions.similarity <= 1.0
    assert shadowed.shadow_evidence("retail", 2, 1).tally.similarity_n == 0  # scored answers
    since = domains["manufacturing"]["shadow"]["since_start"]["v2 vs v1"]
    assert since["answered"] == N and domains["manufacturing"]["shadow"]["fraction"] == 1.0
    assert domains["retail"]["shadow"]["source"].startswith("request #")
    samples = shadowed.shadow_evidence("retail", 2, 1).samples
    if samples:
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(samples[0].thumbnail)) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) <= THUMBNAIL_PX


def _answers(c: httpx.Client, items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        r = c.post("/v1/predict", json={"items": [item]})
        assert r.status_code == 200, r.text
        out.append(r.json()["results"][0])
    return out


def test_a_shadow_that_fails_to_predict_leaves_production_untouched(tmp_path, monkeypatch):
    reg = scene.build(tmp_path, (scene.RETAIL,))
    reg.set_monitoring("retail", MonitoringSettings(shadow_fraction=1.0), actor="ana")
    examples = scene.stream(scene.RETAIL, 6)
    items = [scene.item("retail", e) for e in examples]
    with serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server, server.client() as c:
        scene.wait_for(lambda: shadowing(c, (scene.RETAIL,)), 60, "the candidate loaded")
        shadow = server.service.monitor.runner.plans["retail"].deployed.model

        def broken(*args, **kwargs):
            raise RuntimeError("the candidate's prompts are broken")

        monkeypatch.setattr(shadow, "embed_prepared", broken)
        got = _answers(c, items)
        scene.wait_for(
            lambda: (e := reg.shadow_evidence("retail", 2, 1)) and e.tally.errors == 6,
            30,
            "six shadow errors reported",
        )
        assert c.get("/readyz").json()["status"] == "ok"
        failed = metric(
            c,
            "mpt_serving_shadow_items_total",
            domain="retail",
            version="2",
            outcome="failed",
        )
    expected = local_model(reg, "retail", 1).predict(examples)
    assert [a["prediction"] for a in got] == expected and {a["version"] for a in got} == {1}
    assert failed == 6 and reg.shadow_evidence("retail", 2, 1).requests == 0


def test_a_shadow_that_fails_to_load_leaves_production_untouched(tmp_path):
    reg = scene.build(tmp_path, (scene.RETAIL,))
    reg.store.delete(reg.get_version("retail", 2).artifact_sha256)  # its blob is gone
    examples = scene.stream(scene.RETAIL, 4)
    with serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server, server.client() as c:

        def failed():
            [row] = c.get("/v1/domains").json()["domains"]
            return row["shadow"]["state"] == "failed" and row

        row = scene.wait_for(failed, 30, "the candidate's load failure shown")
        got = _answers(c, [scene.item("retail", e) for e in examples])
        ready = c.get("/readyz")
    assert row["shadow"]["failure"]["version"] == 2 and row["state"] == "serving"
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    expected = local_model(reg, "retail", 1).predict(examples)
    assert [a["prediction"] for a in got] == expected
    assert reg.shadow_evidence("retail", 2, 1) is None


def test_a_full_queue_drops_and_counts_and_shadows_can_be_switched_off(tmp_path):
    reg = scene.build(tmp_path, (scene.RETAIL,))
    reg.set_monitoring("retail", MonitoringSettings(shadow_fraction=1.0), actor="ana")
    examples = scene.stream(scene.RETAIL, 8)
    items = [scene.item("retail", e) for e in examples]
    tight = ServeSettings(**{**SETTINGS, "max_wait_ms": 50.0}, shadow_queue=1, max_batch_size=8)
    with serve(create_app(tight, registry=reg)) as server, server.client() as c:
        scene.wait_for(lambda: shadowing(c, (scene.RETAIL,)), 60, "the candidate loaded")
        r = c.post("/v1/predict", json={"items": items})  # one batch of 8, one queue place
        assert r.status_code == 200

        def counted():
            e = reg.shadow_evidence("retail", 2, 1)
            return e and e.requests + e.tally.dropped == 8 and e

        found = scene.wait_for(counted, 30, "every picked item answered or dropped")
    assert (found.requests, found.tally.dropped) == (1, 7)

    off = ServeSettings(**SETTINGS, shadow=False)
    with serve(create_app(off, registry=reg)) as server, server.client() as c:
        assert c.post("/v1/predict", json={"items": items}).status_code == 200
        [row] = c.get("/v1/domains").json()["domains"]
    assert row["shadow"]["state"] == "off on this server"
    assert reg.shadow_evidence("retail", 2, 1).requests == 1


def test_a_domain_yaml_monitoring_block_makes_the_server_shadow_its_domain(tmp_path):
    """The path a user takes: `monitoring:` in domain.yaml, stored by `mpt run` (its
    `apply_monitoring` step), read by the server."""
    reg = scene.build(tmp_path, (scene.RETAIL,), monitored=False)
    folder = tmp_path / "domains" / "retail"
    folder.mkdir(parents=True)
    (folder / "domain.yaml").write_text(
        "task: classification\n"
        f"labels: [{', '.join(CLASSES)}]\n"
        "monitoring:\n  shadow_fraction: 1.0\n  keep_images: true\n  window: 120\n"
    )
    domain = get_domain(tmp_path / "domains", "retail")
    assert apply_monitoring(domain, reg) and not apply_monitoring(domain, reg)  # once
    items = [scene.item("retail", e) for e in scene.stream(scene.RETAIL, 4)]
    with serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server, server.client() as c:
        scene.wait_for(lambda: shadowing(c, (scene.RETAIL,)), 60, "the candidate loaded")
        [row] = c.get("/v1/domains").json()["domains"]
        _answers(c, items)
        found = scene.wait_for(
            lambda: (e := reg.shadow_evidence("retail", 2, 1)) and e.requests == 4 and e,
            30,
            "four shadow answers reported",
        )
    assert row["shadow"]["fraction"] == 1.0 and row["shadow"]["version"] == 2
    assert row["drift"]["window"] == 120
    assert all(x.thumbnail is not None for x in found.samples)
    applied = [a for a in reg.audit_log(domain="retail") if a.action == "monitoring_set"]
    assert [a.actor for a in applied] == ["retrain-flow"]
    assert applied[0].detail["shadow_fraction"] == 1.0
