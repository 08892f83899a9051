"""Every kind of bad input gets a 4xx JSON error naming the item, the field and the fix;
never a 500, and the server keeps serving. Real HTTP against uvicorn, tight limits."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from serving import ServeSettings, create_app

from . import factory
from .conftest import FAST
from .helpers import b64, png
from .server import serve

LIMITS = {
    "max_image_mb": 0.05,  # 52 KB
    "max_image_megapixels": 0.01,  # 10,000 pixels
    "max_items": 4,
    "max_request_mb": 0.5,
    "max_candidates": 3,
}


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    reg = factory.build(root, specs=factory.DOMAINS[:3])
    spec = factory.Spec("unreleased", "classification", "coop")
    factory.register(reg, "unreleased", factory.tune(root / "unreleased", spec, 0))
    with serve(create_app(ServeSettings(**FAST, **LIMITS), registry=reg)) as running:
        yield running


@pytest.fixture
def client(strict):
    with strict.client() as c:
        yield c


IMAGE = factory.sample("classification")[0].image
GOOD = {"domain": "retail", "image": b64(IMAGE)}


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height; its pixel data is a stub, so
    decoding it would fail: a 413 proves the size was checked from the header first."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def post_items(client, *items, partial=False):
    params = {"partial": "true"} if partial else None
    return client.post("/v1/predict", json={"items": list(items)}, params=params)


def only_error(response, status: int, field: str, index: int = 0) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    (item,) = error["items"]
    assert (item["index"], item["field"]) == (index, field), item
    assert item["problem"] and item["fix"]
    return item


@pytest.mark.parametrize(
    ("name", "data", "status", "words"),
    [
        ("not an image", b"just some text, not pixels", 415, "not an image"),
        ("truncated", png(IMAGE)[:-60], 422, "truncated or corrupt"),
        ("over the byte limit", b"\x89PNG" + b"0" * 60_000, 413, "is 59 KB; the limit is 51 KB"),
        ("over the pixel limit", png_claiming(200, 100), 413, "200x100 = 20,000 pixels"),
        ("a decompression bomb", png_claiming(20_000, 20_000), 413, "decompression bomb"),
        ("empty", b"", 422, "is empty"),
    ],
)
def test_bad_images(client, name, data, status, words):
    response = client.post(
        "/v1/predict", data={"domain": "retail"}, files={"image": ("x.png", data, "image/png")}
    )
    item = only_error(response, status, "image")
    assert words in item["problem"]
    again = post_items(client, {"domain": "retail", "image": base64.b64encode(data).decode()})
    assert again.status_code == status, again.text


def test_unknown_domain_and_domain_without_version_under_the_alias(client):
    item = only_error(post_items(client, {**GOOD, "domain": "retial"}), 404, "domain")
    assert "not a registered domain" in item["problem"] and "retail" in item["fix"]
    item = only_error(post_items(client, {**GOOD, "domain": "unreleased"}), 404, "domain")
    assert "no version under the alias 'production'" in item["problem"]
    assert "mpt promote" in item["fix"]


@pytest.mark.parametrize(
    ("item", "status", "field", "words"),
    [
        ({"domain": "manufacturing"}, 422, "question", "needs it"),
        ({"domain": "manufacturing", "question": "  "}, 422, "question", "needs it"),
        ({"domain": "manufacturing", "question": "how big?"}, 422, "question", "declared"),
        ({"domain": "retail", "question": "is it red?"}, 422, "question", "not an input"),
        ({"domain": "retail", "candidates": ["a"]}, 422, "candidates", "not an input"),
        ({"domain": "medical", "candidates": []}, 422, "candidates", "non-empty"),
        ({"domain": "medical", "candidates": ["a", ""]}, 422, "candidates", "non-empty"),
        ({"domain": "medical", "candidates": ["a", "b", "c", "d"]}, 413, "candidates", "limit"),
        ({"domain": "medical", "candidates": "a red square"}, 422, "candidates", "invalid"),
        ({"domain": "retail", "labels": ["x"]}, 422, "labels", "not a field"),
    ],
)
def test_fields_missing_or_wrong_for_the_task(client, item, status, field, words):
    got = only_error(post_items(client, {"image": GOOD["image"], **item}), status, field)
    assert words in got["problem"]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"image": GOOD["image"]}, "domain"),
        ({"domain": "retail"}, "image"),
        ({"domain": "retail", "image": "not base64!"}, "image"),
        ("retail", "item"),
        ({"domain": 3, "image": GOOD["image"]}, "domain"),
    ],
)
def test_malformed_items(client, item, field):
    only_error(post_items(client, item), 422, field)


def test_empty_batches_and_batches_over_the_limit(client):
    empty = post_items(client)
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "items"
    assert "empty" in empty.json()["error"]["message"]
    no_image = client.post("/v1/predict", files={"domain": (None, "retail")})  # multipart
    assert no_image.status_code == 422 and no_image.json()["error"]["field"] == "image"
    assert "-F image=@" in no_image.json()["error"]["fix"]
    too_many = post_items(client, *[GOOD] * 5)
    assert too_many.status_code == 413
    error = too_many.json()["error"]
    assert "5 items; the limit is 4" in error["message"] and "split" in error["fix"]
    files = [("image", (f"{i}.png", png(IMAGE), "image/png")) for i in range(5)]
    assert client.post("/v1/predict", data={"domain": "retail"}, files=files).status_code == 413


def test_request_level_mistakes(client):
    body = client.post(
        "/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert body.status_code == 400 and "not valid JSON" in body.json()["error"]["message"]
    kind = client.post("/v1/predict", content=b"x", headers={"content-type": "text/plain"})
    assert kind.status_code == 415 and "multipart/form-data" in kind.json()["error"]["fix"]
    shape = client.post("/v1/predict", json=[GOOD])
    assert shape.status_code == 422 and shape.json()["error"]["field"] == "items"
    big = client.post(
        "/v1/predict", content=b"0" * 600_000, headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and "MPT_SERVE_MAX_REQUEST_MB" in big.json()["error"]["fix"]
    count = client.post(
        "/v1/predict",
        data={"domain": ["retail", "retail"]},
        files=[("image", (f"{i}.png", png(IMAGE), "image/png")) for i in range(3)],
    )
    assert count.status_code == 422 and count.json()["error"]["field"] == "domain"
    unknown = client.post(
        "/v1/predict",
        data={"domain": "retail", "lable": "x"},
        files={"image": ("a.png", png(IMAGE), "image/png")},
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "lable"
    param = client.post("/v1/predict", json={"items": [GOOD]}, params={"partial": "maybe"})
    assert param.status_code == 422 and param.json()["error"]["field"] == "partial"
    route = client.get("/v2/predict")
    assert route.status_code == 404 and "/v1/predict" in route.json()["error"]["fix"]
    method = client.get("/v1/predict")
    assert method.status_code == 405


def test_several_bad_items_are_all_named_and_partial_serves_the_rest(client):
    items = [
        GOOD,
        {**GOOD, "domain": "nowhere"},
        {"domain": "manufacturing", "image": GOOD["image"]},
        GOOD,
    ]
    strict = post_items(client, *items)
    assert strict.status_code == 400, strict.text  # a 404 and a 422: no single status fits
    named = [(e["index"], e["field"]) for e in strict.json()["error"]["items"]]
    assert named == [(1, "domain"), (2, "question")]
    assert "partial=true" in strict.json()["error"]["message"]

    partial = post_items(client, *items, partial=True)
    assert partial.status_code == 200, partial.text
    results = partial.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[0]["prediction"] and results[3]["prediction"]
    assert results[1]["error"]["field"] == "domain" and results[2]["error"]["field"] == "question"
    all_bad = post_items(client, {**GOOD, "domain": "nowhere"}, partial=True)
    assert all_bad.status_code == 404


def test_the_server_keeps_serving_after_bad_input_and_never_answers_500(client):
    test_request_level_mistakes(client)
    test_several_bad_items_are_all_named_and_partial_serves_the_rest(client)
    good = post_items(client, GOOD, GOOD)
    assert good.status_code == 200 and len(good.json()["results"]) == 2
    assert client.get("/readyz").json()["status"] == "ok"
    metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics
    assert "mpt_serving_items_refused_total" in metrics


# ---------------------------------------------------------------------- hostile bodies
DEEP = b"[" * 100_000 + b"]" * 100_000
IMAGE_B64 = GOOD["image"].encode()


def multipart(*fields: tuple[str, bytes], boundary: bytes = b"b0undary") -> tuple[bytes, str]:
    """A multipart/form-data body of text fields, written by hand (so it can be hostile)."""
    parts = [
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="'
        + name.encode()
        + b'"\r\n\r\n'
        + value
        + b"\r\n"
        for name, value in fields
    ]
    body = b"".join(parts) + b"--" + boundary + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary.decode()}"


def as_json(body: bytes) -> tuple[bytes, str]:
    return body, "application/json"


HOSTILE = {
    # name: ((body, content type), status of POST /v1/predict, words in its message)
    "JSON nested 100,000 deep": (as_json(DEEP), 400, "nests deeper than 32 levels"),
    "items nested 100,000 deep": (
        as_json(b'{"items": ' + DEEP + b"}"),
        400,
        "nests deeper than 32 levels",
    ),
    "nested one level past the limit": (
        as_json(b'{"items": [{"candidates": ' + b"[" * 31 + b"]" * 31 + b"}]}"),
        400,
        "MPT_SERVE_MAX_JSON_DEPTH",
    ),
    "a lone surrogate as an item's key": (
        as_json(b'{"items": [{"\\udfff": 1, "domain": "retail", "image": "' + IMAGE_B64 + b'"}]}'),
        422,
        "\\udfff",
    ),
    "a lone surrogate as the body's key": (as_json(b'{"\\udfff": 1, "items": []}'), 422, "\\udfff"),
    "a lone surrogate as the domain": (
        as_json(b'{"items": [{"domain": "\\ud800", "image": "' + IMAGE_B64 + b'"}]}'),
        404,
        "\\ud800",
    ),
    "a NUL in the domain": (
        as_json(b'{"items": [{"domain": "ret\\u0000ail", "image": "' + IMAGE_B64 + b'"}]}'),
        404,
        "not a registered domain",
    ),
    "a 5,000-digit number": (
        as_json(b'{"items": [{"domain": "retail", "embedding": ' + b"1" * 5000 + b"}]}"),
        400,
        "JSON cannot carry here",
    ),
    "NaN and Infinity": (as_json(b'{"items": [{"domain": NaN, "image": Infinity}]}'), 422, ""),
    "not UTF-8": (as_json(b'{"items": "\xff\xfe"}'), 400, "not UTF-8"),
    "an empty body": (as_json(b""), 400, "not valid JSON"),
    "JSON null": (as_json(b"null"), 422, "items"),
    "the items field nested 100,000 deep": (
        multipart(("items", DEEP)),
        422,
        "nests deeper than 32 levels",
    ),
    "a lone surrogate key in the items field": (
        multipart(("items", b'[{"\\udfff": 1, "domain": "retail", "image": "a"}]')),
        422,
        "\\udfff",
    ),
    "a form field over the body limit": (
        multipart(("domain", b"x" * 600_000)),
        413,
        "MPT_SERVE_MAX_REQUEST_MB",
    ),
    "a broken multipart body": (
        (b"--elsewhere\r\nnot a part\r\n", "multipart/form-data; boundary=b0undary"),
        400,
        "the multipart form is refused",
    ),
    "multipart without a boundary": ((b"anything", "multipart/form-data"), 400, "refused"),
    "a URL-encoded form": ((b"domain=retail", "application/x-www-form-urlencoded"), 415, ""),
}
ROUTES = [
    ("GET", "/v1/domains"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/"),
    ("GET", "/openapi.json"),
    ("POST", "/readyz"),
    ("PUT", "/v1/predict"),
    ("POST", "/v2/predict"),
]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bodies_get_a_4xx_naming_the_problem(client, name):
    (body, kind), status, words = HOSTILE[name]
    response = client.post("/v1/predict", content=body, headers={"content-type": kind})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in response.text and error["message"]
    assert error.get("fix") or error.get("items")


def test_a_lone_surrogate_in_a_key_is_named_escaped_in_the_422(client):
    (body, kind), _, _ = HOSTILE["a lone surrogate as an item's key"]
    response = client.post("/v1/predict", content=body, headers={"content-type": kind})
    (item,) = response.json()["error"]["items"]
    assert item["field"] == "item" and "'\\udfff', which is not valid Unicode" in item["problem"]
    (body, kind), _, _ = HOSTILE["a lone surrogate as the body's key"]
    response = client.post("/v1/predict", content=body, headers={"content-type": kind})
    assert response.json()["error"]["field"] == "\\udfff"  # the server's own check names it


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bodies_on_every_other_route_never_reach_a_500(client, name):
    (body, kind), _, _ = HOSTILE[name]
    for method, path in ROUTES:
        response = client.request(method, path, content=body, headers={"content-type": kind})
        assert response.status_code < 500, (method, path, response.text[:300])
        assert "Traceback" not in response.text
    assert client.post("/v1/predict", json={"items": [GOOD]}).status_code == 200
    assert 'status="500"' not in client.get("/metrics").text
