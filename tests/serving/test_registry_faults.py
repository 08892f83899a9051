"""The registry lost, replaced, damaged or stopped under a running server: /readyz goes to
503 with the reason within two polling intervals; the loaded versions keep serving callers
whose token the registry verified recently, the others get a 503, nobody a 500; and the
server recovers by itself, serving an alias move made meanwhile within 5 s. Real
registries (a SQLite file; a PostgreSQL server of the test's own, stopped and started by
its PID), real uvicorn, real faults."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

import pytest

from registry import PromptRegistry
from serving import ServeSettings, create_app

from ..pg_server import restartable_server
from . import factory
from .helpers import Traffic, b64
from .server import serve

POLL = 0.5
SETTINGS = {"poll_seconds": POLL, "retry_seconds": 0.5, "max_wait_ms": 2.0}
RETAIL = factory.DOMAINS[0]
ITEMS = [{"domain": "retail", "image": b64(e.image)} for e in factory.sample("classification", 2)]
JUNK = b"this is not a database " * 4096


def with_people(reg: PromptRegistry) -> dict[str, str]:
    """Users, so the API needs tokens: a viewer who calls it, another viewer the server has
    not seen yet, and the requester and reviewer who move the alias."""
    tokens = {"admin-1": reg.add_user("admin-1", "admin")[1]}
    for name, role in (("viewer-1", "viewer"), ("stranger", "viewer")):
        tokens[name] = reg.add_user(name, role, actor="admin-1")[1]
    for name, role in (("ana", "requester"), ("ben", "reviewer")):
        reg.add_user(name, role, actor="admin-1")
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """The moment `check()` first holds, polled every 20 ms; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic()


def readiness_is(c, status: int) -> Callable[[], bool]:
    return lambda: c.get("/readyz").status_code == status


def assert_serving_from_memory(c, tokens: dict[str, str], reason: str) -> None:
    """While the registry cannot be read: /readyz says why, the verified viewer is served,
    a token never verified gets a 503 (never a 500), a missing one a 401."""
    ready = c.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert reason in ready.json()["reason"] and ready.json()["serving"] == {"retail": 1}
    assert "registry.db" not in ready.json()["reason"]  # no path, no URL for clients
    served = c.post("/v1/predict", json={"items": ITEMS}, headers=bearer(tokens["viewer-1"]))
    assert served.status_code == 200, served.text
    assert c.get("/v1/domains", headers=bearer(tokens["viewer-1"])).status_code == 200
    unknown = c.post("/v1/predict", json={"items": ITEMS}, headers=bearer(tokens["stranger"]))
    assert unknown.status_code == 503 and unknown.headers["retry-after"], unknown.text
    assert "registry cannot be read" in unknown.json()["error"]["message"]
    assert "not verified in the last 300 s" in unknown.json()["error"]["message"]
    assert c.post("/v1/predict", json={"items": ITEMS}).status_code == 401
    assert 'status="500"' not in c.get("/metrics").text


@pytest.fixture
def guarded(tmp_path):
    """retail v1 in production and a v2 candidate on a SQLite registry with users."""
    reg = factory.build(tmp_path, specs=[RETAIL], seeds=(0, 1))
    return reg, with_people(reg), tmp_path / "registry.db"


def test_a_deleted_file_is_noticed_and_the_one_put_back_is_served(guarded, tmp_path):
    reg, tokens, db = guarded
    viewer = bearer(tokens["viewer-1"])
    with (
        serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server,
        server.client() as c,
        Traffic(server, ITEMS, viewer) as traffic,
    ):
        traffic.first_with(1, after=0)  # the viewer's token is verified
        kept = tmp_path / "kept.db"
        shutil.copy(db, kept)  # what the operator will put back
        deleted = time.monotonic()
        db.unlink()
        down = wait_for(readiness_is(c, 503), 3 * POLL, "readiness going down")
        assert down - deleted <= 2 * POLL
        assert_serving_from_memory(c, tokens, "deleted or moved away")
        assert not db.exists(), "a database the server read is never re-created empty"

        elsewhere = PromptRegistry(f"sqlite:///{kept}", reg.store)  # production moves there
        factory.promote(elsewhere, "retail", 2)
        back = time.monotonic()
        os.replace(kept, db)
        wait_for(readiness_is(c, 200), 3 * POLL, "readiness coming back")
        assert traffic.first_with(2, after=back, timeout=5) - back <= 5
    assert traffic.statuses() == {200}


@pytest.mark.parametrize("how", ["overwritten in place", "replaced by another file"])
def test_a_damaged_file_keeps_the_loaded_versions_serving(guarded, tmp_path, how):
    reg, tokens, db = guarded
    good = db.read_bytes()

    def put(data: bytes) -> None:
        if how == "overwritten in place":
            with db.open("r+b") as f:  # the same inode, new bytes
                f.write(data)
                f.truncate()
        else:
            other = tmp_path / "other.db"
            other.write_bytes(data)
            os.replace(other, db)

    viewer = bearer(tokens["viewer-1"])
    with (
        serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server,
        server.client() as c,
        Traffic(server, ITEMS, viewer) as traffic,
    ):
        traffic.first_with(1, after=0)
        damaged = time.monotonic()
        put(JUNK)
        down = wait_for(readiness_is(c, 503), 3 * POLL, "readiness going down")
        assert down - damaged <= 2 * POLL
        assert_serving_from_memory(c, tokens, "file is not a database")
        put(good)
        wait_for(readiness_is(c, 200), 3 * POLL, "readiness coming back")
        stranger = bearer(tokens["stranger"])
        assert c.post("/v1/predict", json={"items": ITEMS}, headers=stranger).status_code == 200
    assert traffic.statuses() == {200}


def test_a_revoked_token_stops_working_within_one_poll_of_the_registrys_return(guarded):
    reg, tokens, db = guarded
    viewer = bearer(tokens["viewer-1"])
    with (
        serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server,
        server.client() as c,
    ):
        assert c.post("/v1/predict", json={"items": ITEMS}, headers=viewer).status_code == 200
        good = db.read_bytes()
        db.write_bytes(JUNK)
        wait_for(readiness_is(c, 503), 3 * POLL, "readiness going down")
        assert c.post("/v1/predict", json={"items": ITEMS}, headers=viewer).status_code == 200
        db.write_bytes(good)
        reg.revoke_user("viewer-1")  # at once, before the server has seen the registry back
        revoked = time.monotonic()
        refused = wait_for(
            lambda: c.get("/v1/domains", headers=viewer).status_code == 401,
            3 * POLL,
            "the revoked token refused",
        )
        assert refused - revoked <= POLL + 0.25
        for _ in range(5):
            assert c.get("/v1/domains", headers=viewer).status_code == 401


def test_a_verified_token_is_trusted_for_token_cache_seconds_only(guarded):
    reg, tokens, db = guarded
    viewer = bearer(tokens["viewer-1"])
    settings = ServeSettings(**SETTINGS, token_cache_seconds=1.5)
    with serve(create_app(settings, registry=reg)) as server, server.client() as c:
        assert c.get("/v1/domains", headers=viewer).status_code == 200
        verified = time.monotonic()
        db.write_bytes(JUNK)
        wait_for(readiness_is(c, 503), 3 * POLL, "readiness going down")
        assert c.get("/v1/domains", headers=viewer).status_code == 200
        time.sleep(max(0.0, verified + 1.7 - time.monotonic()))
        stale = c.get("/v1/domains", headers=viewer)
        assert stale.status_code == 503
        error = stale.json()["error"]
        assert "not verified in the last 1.5 s (MPT_SERVE_TOKEN_CACHE_SECONDS)" in error["message"]
        assert "retry" in error["fix"]


def test_a_postgresql_registry_stopped_and_restarted_under_the_server(tmp_path):
    with restartable_server() as pg:
        url = pg.server.create_database("registry")
        reg = factory.build(tmp_path, specs=[RETAIL], seeds=(0, 1), url=url)
        tokens = with_people(reg)
        viewer = bearer(tokens["viewer-1"])
        with (
            serve(create_app(ServeSettings(**SETTINGS), registry=reg)) as server,
            server.client() as c,
            Traffic(server, ITEMS, viewer) as traffic,
        ):
            traffic.first_with(1, after=0)
            stopped = time.monotonic()
            pg.stop()
            down = wait_for(readiness_is(c, 503), 3 * POLL, "readiness going down")
            assert down - stopped <= 2 * POLL
            assert_serving_from_memory(c, tokens, "OperationalError")

            pg.start()
            factory.promote(reg, "retail", 2)  # an approval the moment it is back
            moved = time.monotonic()
            wait_for(readiness_is(c, 200), 3 * POLL, "readiness coming back")
            assert traffic.first_with(2, after=moved, timeout=5) - moved <= 5
        assert traffic.statuses() == {200}
