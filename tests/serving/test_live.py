"""Alias moves are picked up while requests flow; a version that cannot be loaded leaves
the old one serving and is reported. Real registries, real uvicorn, real faults."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from mpt_core import tiny_backbone
from serving import ServeSettings, create_app

from . import factory
from .conftest import FAST
from .helpers import Traffic, assert_scores, b64, local_model, local_scores
from .server import serve

RETAIL = factory.DOMAINS[0]
EXAMPLES = factory.sample("classification", 3)
ITEMS = [{"domain": "retail", "image": b64(e.image)} for e in EXAMPLES]


def two_versions(root: Path):
    """retail v1 (production) and v2 (a candidate tuned from other initial prompts)."""
    return factory.build(root, specs=[RETAIL], seeds=(0, 1))


def test_approval_and_rollback_are_live_and_each_request_sees_one_version(tmp_path):
    reg = two_versions(tmp_path)
    expected = {n: local_scores(local_model(reg, "retail", n), EXAMPLES) for n in (1, 2)}
    assert expected[1][0] != pytest.approx(expected[2][0], abs=1e-3), "versions must differ"
    with (
        serve(create_app(ServeSettings(**FAST), registry=reg)) as server,
        Traffic(server, ITEMS) as traffic,
    ):
        traffic.first_with(1, after=0)
        moved = time.monotonic()
        factory.promote(reg, "retail", 2)  # an approval
        approval_seen = traffic.first_with(2, after=moved)
        moved_back = time.monotonic()
        reg.rollback("retail", 1, actor="ops", reason="v2 misreads sneakers")
        rollback_seen = traffic.first_with(1, after=moved_back)
        time.sleep(0.3)
    assert approval_seen - moved < 5 and rollback_seen - moved_back < 5
    assert len(traffic.responses) > 10
    versions_seen = []
    for _, _, status, body in traffic.responses:
        assert status == 200, body
        versions = {r["version"] for r in body["results"]}
        assert len(versions) == 1, f"one request, two versions: {body}"
        (version,) = versions
        versions_seen.append(version)
        for result, scores in zip(body["results"], expected[version], strict=True):
            assert_scores(result["scores"], scores)  # the whole request is that version
    assert {1, 2} <= set(versions_seen)


def corrupt(reg, domain: str, number: int) -> Path:
    blob = reg.store.path(reg.get_version(domain, number).artifact_sha256)
    blob.write_bytes(b"not the artifact any more")
    return blob


def test_a_corrupted_version_leaves_the_old_one_serving_until_it_is_repaired(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="serving")
    reg = two_versions(tmp_path)
    corrupt(reg, "retail", 2)
    with (
        serve(create_app(ServeSettings(**FAST), registry=reg)) as server,
        server.client() as c,
        Traffic(server, ITEMS) as traffic,
    ):
        traffic.first_with(1, after=0)
        factory.promote(reg, "retail", 2)
        deadline = time.monotonic() + 5
        while not c.get("/readyz").json()["failures"]:
            assert time.monotonic() < deadline, "the failure was not reported within 5 s"
            time.sleep(0.05)
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        (failure,) = ready.json()["failures"]
        assert (failure["domain"], failure["version"]) == ("retail", 2)
        assert "corrupted" in failure["error"]
        assert ready.json()["serving"] == {"retail": 1}
        (row,) = c.get("/v1/domains").json()["domains"]
        assert row["version"] == 1 and row["failure"]["version"] == 2
        assert (
            'mpt_serving_load_failures_total{domain="retail",version="2"}' in c.get("/metrics").text
        )
        assert any(
            "retail v2" in r.getMessage() and "still serving v1" in r.getMessage()
            for r in caplog.records
        )

        reg.store.put_dir(tmp_path / "retail-1")  # the original artifact, put again
        repaired = time.monotonic()
        traffic.first_with(2, after=repaired)
        assert c.get("/readyz").json()["status"] == "ok"
    assert traffic.statuses() == {200}


@pytest.mark.parametrize("fault", ["other weights", "missing backbone"])
def test_a_version_whose_backbone_cannot_be_loaded_is_refused(tmp_path, fault):
    reg = factory.build(tmp_path, specs=[RETAIL])
    if fault == "other weights":  # same family and name, different weights sha256
        artifact = factory.tune(tmp_path / "other", RETAIL, 1, tiny_backbone("shipped", seed=7))
        factory.register(reg, "retail", artifact)
        words = "weights sha256"
    else:
        artifact = factory.tune(tmp_path / "v2", RETAIL, 1)
        reg.record_data_version(
            "retail", factory.DATA_VERSION, rows=1, row_counts={}, validation_passed=True
        )
        reg.register_version(
            "retail",
            artifact,
            method="mpt",
            config={},
            data_version=factory.DATA_VERSION,
            backbone={
                "family": "hf-clip",
                "name": str(tmp_path / "no-such-clip"),
                "weights_sha256": "0" * 64,
            },
            metrics={"test": {"accuracy": 0.9}},
        )
        words = "cannot be loaded here"
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as server, server.client() as c:
        factory.promote(reg, "retail", 2)
        deadline = time.monotonic() + 5
        while not (failures := c.get("/readyz").json()["failures"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert words in failures[0]["error"] and "Fix:" in failures[0]["error"]
        response = c.post("/v1/predict", json={"items": ITEMS})
        assert response.status_code == 200
        assert {r["version"] for r in response.json()["results"]} == {1}


def test_a_domain_with_nothing_loadable_answers_503_and_the_others_serve(tmp_path):
    reg = factory.build(tmp_path, specs=factory.DOMAINS[:2])
    corrupt(reg, "manufacturing", 1)
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as server, server.client() as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "degraded" and ready["serving"] == {"retail": 1}
        item = {
            "domain": "manufacturing",
            "image": ITEMS[0]["image"],
            "question": "is it red?",
        }
        response = c.post("/v1/predict", json={"items": [item]})
        assert response.status_code == 503 and response.headers["retry-after"]
        (problem,) = response.json()["error"]["items"]
        assert problem["field"] == "domain" and "could not be loaded" in problem["problem"]
        assert c.post("/v1/predict", json={"items": ITEMS}).status_code == 200


def test_nothing_to_serve_is_not_ready(tmp_path):
    reg = factory.new_registry(tmp_path)
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as server, server.client() as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert "no domain has a loadable version" in ready.json()["reason"]
        assert c.get("/healthz").status_code == 200


def test_the_staging_alias_can_be_served(tmp_path):
    reg = factory.build(tmp_path, specs=factory.DOMAINS[:2], seeds=(0, 1))
    reg.set_alias("retail", "staging", 2, actor="ops", reason="try v2")
    settings = ServeSettings(**FAST, alias="staging")
    with serve(create_app(settings, registry=reg)) as server, server.client() as c:
        response = c.post("/v1/predict", json={"items": ITEMS[:1]})
        assert response.status_code == 200
        (result,) = response.json()["results"]
        assert (result["alias"], result["version"]) == ("staging", 2)
        item = {
            "domain": "manufacturing",
            "image": ITEMS[0]["image"],
            "question": "is it red?",
        }
        refused = c.post("/v1/predict", json={"items": [item]})
        assert refused.status_code == 404
        assert (
            "no version under the alias 'staging'" in refused.json()["error"]["items"][0]["problem"]
        )


def rename_table(db: Path, old: str, new: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def test_an_unreadable_registry_keeps_the_loaded_versions_serving(tmp_path):
    reg = factory.build(tmp_path, specs=[RETAIL])
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as server, server.client() as c:
        rename_table(tmp_path / "registry.db", "aliases", "aliases_gone")  # queries now fail
        deadline = time.monotonic() + 5
        while not c.get("/readyz").json()["registry_error"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ready = c.get("/readyz")
        assert ready.status_code == 503, "a registry that cannot be read is not ready"
        assert ready.json()["status"] == "unavailable" and ready.json()["serving"] == {"retail": 1}
        assert "no such table: aliases" in ready.json()["reason"]
        assert c.post("/v1/predict", json={"items": ITEMS}).status_code == 200
        rename_table(tmp_path / "registry.db", "aliases_gone", "aliases")
        deadline = time.monotonic() + 5
        while c.get("/readyz").json()["registry_error"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def clobber_header(db: Path) -> bytes:
    """Overwrite the SQLite header: every query now fails with 'file is not a database'."""
    with db.open("r+b") as f:
        header = f.read(100)
        f.seek(0)
        f.write(b"\0" * 100)
    return header


def restore_header(db: Path, header: bytes) -> None:
    with db.open("r+b") as f:
        f.write(header)


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        # the registry's own error for a database it cannot query names the database
        ("dropped table", "registry database sqlite:///{db} failed"),
        # a file that is no database at all: the same, with what to do about a damaged file
        ("not a database", "registry database sqlite:///{db} failed: file is not a database"),
    ],
)
def test_readyz_names_a_registry_fault_without_its_sql_or_database_url(
    tmp_path, caplog, fault, logged
):
    caplog.set_level(logging.ERROR, logger="serving")
    reg = factory.build(tmp_path, specs=[RETAIL])
    db = tmp_path / "registry.db"
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as server, server.client() as c:
        if fault == "dropped table":
            rename_table(db, "aliases", "aliases_gone")
            words = "no such table: aliases"
        else:
            header = clobber_header(db)
            words = "file is not a database"
        deadline = time.monotonic() + 5
        while not (error := c.get("/readyz").json()["registry_error"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert words in error and "\n" not in error
        assert "SELECT" not in error.upper() and "registry.db" not in error
        assert "sqlalche.me" not in error
        log = " ".join(r.getMessage() for r in caplog.records)
        assert "cannot read the registry" in log  # the log has the full text
        assert logged.format(db=db) in log
        if fault == "dropped table":
            rename_table(db, "aliases_gone", "aliases")
        else:
            restore_header(db, header)
        deadline = time.monotonic() + 5
        while c.get("/readyz").json()["registry_error"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
