"""POST /v1/predict and the read-only endpoints, over real HTTP against uvicorn."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest

from mpt_core import Example, PromptServer
from mpt_core.inference import predict_batch
from serving import ServeSettings, create_app
from serving.batcher import Batcher
from serving.metrics import ServingMetrics
from serving.schemas import predict_item

from . import factory
from .conftest import FAST
from .helpers import assert_scores, b64, local_model, local_scores, png
from .server import serve

CAPTIONS = ["a red square", "a green square", "a blue square"]


def mixed_items() -> list[tuple[str, Example]]:
    """Items of four domains (three tasks, two backbone families), interleaved."""
    per_domain = {
        "retail": factory.sample("classification"),
        "manufacturing": [e for e in factory.examples("vqa", 1, seed=5)][-3:],
        "medical": [
            Example(e.image, candidates=tuple(CAPTIONS)) for e in factory.sample("retrieval")
        ],
        "clip-shop": factory.sample("classification", 2, seed=12),
    }
    items = [(d, e) for d, examples in per_domain.items() for e in examples]
    return items[::2] + items[1::2]


def as_json(domain: str, example: Example) -> dict:
    item = {"domain": domain, "image": b64(example.image)}
    if example.question:
        item["question"] = example.question
    if example.candidates:
        item["candidates"] = list(example.candidates)
    return item


def test_a_mixed_batch_equals_per_domain_predictions_and_the_prompt_server(client, shared_registry):
    items = mixed_items()
    response = client.post("/v1/predict", json={"items": [as_json(d, e) for d, e in items]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(items)))

    expected = {}
    for domain in dict.fromkeys(d for d, _ in items):
        model = local_model(shared_registry, domain, 1)
        mine = [e for d, e in items if d == domain]
        expected.update(zip(map(id, mine), local_scores(model, mine), strict=True))
    for (domain, example), result in zip(items, results, strict=True):
        assert (result["domain"], result["version"], result["alias"]) == (domain, 1, "production")
        assert_scores(result["scores"], expected[id(example)])
        assert result["prediction"] == max(result["scores"], key=result["scores"].get)
        version = shared_registry.get_version(domain, 1)
        assert result["backbone"] == version.backbone.to_dict()
        assert (
            result["task"]
            == {
                "clip-shop": "classification",
                "retail": "classification",
                "manufacturing": "vqa",
                "medical": "retrieval",
            }[domain]
        )

    # the library's PromptServer on the same backbone gives the same answers
    shipped = [(d, e) for d, e in items if d != "clip-shop"]
    prompt_server = PromptServer(factory.tiny("shipped"))
    for domain in dict.fromkeys(d for d, _ in shipped):
        prompt_server.add(domain, local_model(shared_registry, domain, 1))
    by_item = {id(e): r["prediction"] for (_, e), r in zip(items, results, strict=True)}
    assert prompt_server.predict(shipped) == [by_item[id(e)] for _, e in shipped]


def test_multipart_uploads_one_image_or_several(client):
    images = [e.image for e in factory.sample("classification")]
    one = client.post(
        "/v1/predict",
        data={"domain": "retail"},
        files={"image": ("a.png", png(images[0]), "image/png")},
    )
    assert one.status_code == 200, one.text
    (result,) = one.json()["results"]
    assert result["domain"] == "retail" and set(result["scores"]) == {"red", "green", "blue"}

    several = client.post(
        "/v1/predict",
        data={"domain": ["retail", "clip-shop", "retail"]},
        files=[("image", (f"{i}.png", png(im), "image/png")) for i, im in enumerate(images)],
    )
    assert several.status_code == 200, several.text
    assert [r["domain"] for r in several.json()["results"]] == ["retail", "clip-shop", "retail"]
    assert_scores(several.json()["results"][0]["scores"], result["scores"])

    vqa = client.post(
        "/v1/predict",
        data={"domain": "manufacturing", "question": "is it red?"},
        files=[("image", ("a.png", png(im), "image/png")) for im in images[:2]],
    )
    assert vqa.status_code == 200, vqa.text
    assert all(set(r["scores"]) == {"yes", "no"} for r in vqa.json()["results"])

    listed = client.post(
        "/v1/predict",
        data={
            "items": json.dumps(
                [
                    {"domain": "medical", "image": "first", "candidates": CAPTIONS[:2]},
                    {"domain": "retail", "image": "second", "embedding": True},
                ]
            )
        },
        files={
            "first": ("1.png", png(images[1]), "image/png"),
            "second": ("2.png", png(images[0]), "image/png"),
        },
    )
    assert listed.status_code == 200, listed.text
    medical, retail = listed.json()["results"]
    assert set(medical["scores"]) == set(CAPTIONS[:2]) and "embedding" not in medical
    assert_scores(retail["scores"], result["scores"])
    assert len(retail["embedding"]) == 32


def test_retrieval_without_candidates_returns_the_image_embedding(client, shared_registry):
    image = factory.sample("retrieval")[0].image
    response = client.post(
        "/v1/predict", json={"items": [{"domain": "medical", "image": b64(image)}]}
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["prediction"] is None and result["scores"] == {}
    model = local_model(shared_registry, "medical", 1)
    expected = model.encode_images([image]).embedding[0]
    assert result["embedding"] == pytest.approx(expected.tolist(), abs=1e-5)


def test_domains_list_alias_version_task_and_value_sets(client):
    body = client.get("/v1/domains").json()
    assert body["alias"] == "production"
    rows = {d["domain"]: d for d in body["domains"]}
    assert set(rows) == {"retail", "manufacturing", "medical", "clip-shop"}
    assert rows["retail"]["state"] == "serving" and rows["retail"]["version"] == 1
    assert rows["retail"]["task"]["class_names"] == ["red", "green", "blue"]
    assert rows["manufacturing"]["inputs"] == ["question"]
    assert rows["manufacturing"]["task"]["answers"]["is it red?"] == ["yes", "no"]
    assert rows["medical"]["optional_inputs"] == ["candidates"]
    assert rows["clip-shop"]["backbone"]["family"] == "hf-clip"


def test_health_readiness_metrics_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert ready.json()["serving"] == {
        "clip-shop": 1,
        "manufacturing": 1,
        "medical": 1,
        "retail": 1,
    }
    image = b64(factory.sample("classification")[0].image)
    client.post("/v1/predict", json={"items": [{"domain": "retail", "image": image}] * 3})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'mpt_serving_requests_total{route="/v1/predict",status="200"}' in text
    assert 'mpt_serving_request_seconds_bucket{le="0.5",route="/v1/predict"}' in text
    assert "mpt_serving_batch_size_count" in text
    assert 'mpt_serving_version{alias="production",domain="retail"} 1.0' in text
    assert 'mpt_serving_items_total{domain="retail",version="1"}' in text

    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
    assert "$ref" not in json.dumps(content), "the request schema must resolve in the docs"
    assert {"/v1/domains", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_concurrent_requests_of_different_domains_share_batches(shared_registry):
    """Eight clients at once, four domains: the server needs fewer batches than items."""
    items = mixed_items()
    settings = ServeSettings(**{**FAST, "max_wait_ms": 300})
    with serve(create_app(settings, registry=shared_registry)) as server, server.client() as c:
        before = _batches(c)

        def send(i: int) -> None:
            d, e = items[i]
            r = c.post("/v1/predict", json={"items": [as_json(d, e)]})
            outcomes.append(r.status_code)

        outcomes: list[int] = []
        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes == [200] * 8
        count, items_seen = (a - b for a, b in zip(_batches(c), before, strict=True))
    assert items_seen == 8 and count < 8


def _batches(c: httpx.Client) -> tuple[float, float]:
    lines = dict(line.rsplit(" ", 1) for line in c.get("/metrics").text.splitlines() if " " in line)
    return float(lines["mpt_serving_batch_size_count"]), float(lines["mpt_serving_batch_size_sum"])


def test_the_batcher_puts_items_of_several_domains_in_one_batch(shared_registry):
    models = {d: local_model(shared_registry, d, 1) for d in ("retail", "manufacturing")}
    seen: list[list[str]] = []

    def run(pairs):
        seen.append([m.task.name for m, _ in pairs])
        return predict_batch(pairs)

    batcher = Batcher(max_batch_size=8, max_wait_seconds=0.5, metrics=ServingMetrics(), run=run)
    batcher.start()
    retail = factory.sample("classification", 2)
    vqa = [e for e in factory.examples("vqa", 1)][-2:]

    async def both():
        return await asyncio.gather(
            batcher.submit([(models["retail"], e, ("retail", 1)) for e in retail]),
            batcher.submit([(models["manufacturing"], e, ("manufacturing", 1)) for e in vqa]),
        )

    try:
        got_retail, got_vqa = asyncio.run(both())
    finally:
        batcher.stop()
    assert seen == [["classification"] * 2 + ["vqa"] * 2]
    assert [p.value for p in got_retail] == models["retail"].predict(retail)
    assert [p.value for p in got_vqa] == models["manufacturing"].predict(vqa)


def test_the_json_item_schema_covers_every_tasks_inputs():
    from mpt_core import TASKS

    declared = {
        f for name in TASKS for f in (*TASKS.get(name).inputs, *TASKS.get(name).optional_inputs)
    }
    assert set(predict_item().model_fields) == {"domain", "image", "embedding", *declared}


def test_generative_domains_are_served_beside_dual_encoder_ones(tmp_path):
    """Captioning and open VQA on the tiny hf-blip2 backbone, in one batch with retail."""
    specs = [
        factory.Spec("captions", "captioning", "coop", "hf-blip2"),
        factory.Spec("open-vqa", "vqa-open", "mpt", "hf-blip2"),
        factory.DOMAINS[0],
    ]
    reg = factory.build(tmp_path, specs=specs)
    image = factory.sample("classification")[0].image
    items = [
        {"domain": "captions", "image": b64(image)},
        {"domain": "open-vqa", "image": b64(image), "question": "is it red?"},
        {"domain": "retail", "image": b64(image)},
    ]
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as server, server.client() as c:
        response = c.post("/v1/predict", json={"items": items})
        assert response.status_code == 200, response.text
        captions, answer, retail = response.json()["results"]
        missing = c.post("/v1/predict", json={"items": [{**items[1], "question": None}]})
        domains = {d["domain"]: d for d in c.get("/v1/domains").json()["domains"]}
    expected_caption = local_model(reg, "captions", 1).predict([Example(image)])[0]
    expected_answer = local_model(reg, "open-vqa", 1).predict(
        [Example(image, question="is it red?")]
    )[0]
    assert (captions["prediction"], captions["scores"]) == (expected_caption, {})
    assert answer["prediction"] == expected_answer and "embedding" not in answer
    assert retail["scores"] and retail["task"] == "classification"
    assert missing.status_code == 422
    assert missing.json()["error"]["items"][0]["field"] == "question"
    assert domains["open-vqa"]["inputs"] == ["question"]
    assert domains["captions"]["backbone"]["family"] == "hf-blip2"
