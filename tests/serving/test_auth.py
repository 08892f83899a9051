"""Bearer tokens of the registry's users on the serving API: open while the registry has no
users, a viewer's token (or any higher role's) needed once it has them."""

from __future__ import annotations

import time

import pytest
from fastapi import Depends, FastAPI

from serving import ServeSettings, create_app
from serving.app import install_error_handlers
from serving.auth import Gate, auth_required, require_role
from serving.errors import ApiError
from serving.service import ServingService

from . import factory
from .conftest import FAST
from .helpers import b64
from .server import serve

ITEM = {"domain": "retail", "image": b64(factory.sample("classification")[0].image)}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    reg = factory.build(tmp_path_factory.mktemp("registry"), specs=factory.DOMAINS[:1])
    tokens = {"admin": reg.add_user("admin-1", "admin")[1]}  # the first user turns auth on
    tokens["viewer"] = reg.add_user("viewer-1", "viewer", actor="admin-1")[1]
    tokens["gone"] = reg.add_user("gone", "reviewer", actor="admin-1")[1]
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as running:
        yield running, reg, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_with_users_a_viewer_token_is_needed(guarded):
    server, reg, tokens = guarded
    with server.client() as c:
        missing = c.post("/v1/predict", json={"items": [ITEM]})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in missing.json()["error"]["fix"]
        wrong = c.get("/v1/domains", headers=bearer("mpt_0123456789abcdef_" + "x" * 43))
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
        for who in ("viewer", "admin"):
            ok = c.post("/v1/predict", json={"items": [ITEM]}, headers=bearer(tokens[who]))
            assert ok.status_code == 200, ok.text
        for open_route in ("/healthz", "/readyz", "/metrics"):
            assert c.get(open_route).status_code == 200
        assert c.get("/v1/domains", headers=bearer(tokens["gone"])).status_code == 200
        reg.revoke_user("gone", actor="admin-1")  # a revoked user's token stops working
        assert c.get("/v1/domains", headers=bearer(tokens["gone"])).status_code == 401


def test_a_role_below_the_minimum_is_refused(guarded):
    _, reg, tokens = guarded
    app = FastAPI()
    app.state.service = ServingService(ServeSettings(**FAST), reg)  # not started: auth only
    install_error_handlers(app, 1 << 20)
    reviewer = Depends(require_role("reviewer"))

    @app.get("/reviewers-only")
    async def reviewers_only(user=reviewer):
        return {"user": user.name}

    with serve(app) as running, running.client() as c:
        refused = c.get("/reviewers-only", headers=bearer(tokens["viewer"]))
        assert refused.status_code == 403
        assert "reviewer or above" in refused.json()["error"]["message"]
        admin = c.get("/reviewers-only", headers=bearer(tokens["admin"]))
        assert admin.json() == {"user": "admin-1"}


def test_without_users_it_is_open_and_mpt_auth_required_closes_it(tmp_path, monkeypatch):
    reg = factory.new_registry(tmp_path)
    assert not auth_required(reg)
    assert not auth_required(object())  # a registry object without user support
    monkeypatch.setenv("MPT_AUTH", "required")
    assert auth_required(reg)


def test_without_users_the_api_is_open(client):
    assert client.get("/v1/domains").status_code == 200
    assert client.post("/v1/predict", json={"items": [ITEM]}).status_code == 200


# ---------------------------------------------------------------------- throttling
def wrong_token(key_id: str = "0123456789abcdef") -> str:
    return f"mpt_{key_id}_" + "x" * 43


def test_failed_tokens_are_throttled_per_address_with_a_429_that_says_when(guarded):
    _, reg, tokens = guarded
    settings = ServeSettings(**FAST, auth_failures=5, auth_failure_window_seconds=3)
    with serve(create_app(settings, registry=reg)) as server, server.client() as c:
        started = time.monotonic()
        answers = [
            c.get("/v1/domains", headers=bearer(wrong_token(f"{i:016x}"))) for i in range(30)
        ]
        assert time.monotonic() - started < 10
        assert [r.status_code for r in answers] == [401] * 5 + [429] * 25
        refused = answers[-1]
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 3
        error = refused.json()["error"]
        assert (
            f"from address 127.0.0.1 (5 within 3 s); retry in {wait} s, after" in error["message"]
        )
        assert "MPT_SERVE_AUTH_FAILURES" in error["fix"]
        # the address is blocked, whatever the token: no token is checked meanwhile
        assert c.get("/v1/domains", headers=bearer(tokens["viewer"])).status_code == 429
        time.sleep(wait + 0.1)
        assert c.get("/v1/domains", headers=bearer(tokens["viewer"])).status_code == 200
    blocked = [e for e in reg.audit_log() if e.action == "token_throttled"]
    (record,) = [e for e in blocked if e.address == "127.0.0.1"]  # once, not per refusal
    assert (record.outcome, record.detail["blocked"]) == ("refused", "address")


def test_failed_tokens_are_throttled_per_token_id_from_any_address(guarded):
    _, reg, tokens = guarded
    gate = Gate(reg, ServeSettings(auth_failures=3, auth_failure_window_seconds=60))
    key_id = tokens["viewer"][4:20]  # the viewer's public key id, with wrong secrets
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        with pytest.raises(ApiError) as caught:
            gate.user(wrong_token(key_id), address)
        assert caught.value.status == 401
    with pytest.raises(ApiError) as caught:
        gate.user(tokens["viewer"], "10.0.0.4")  # the real token, from a fourth address
    assert caught.value.status == 429 and f"from token id {key_id}" in caught.value.message
    assert gate.user(tokens["admin"], "10.0.0.4").name == "admin-1"  # other ids are not
    blocked = [e for e in reg.audit_log() if e.action == "token_throttled"]
    assert any(e.detail.get("key_id") == key_id for e in blocked)


def test_with_public_status_off_readyz_and_metrics_name_no_domain_without_a_token(guarded):
    _, reg, tokens = guarded
    settings = ServeSettings(**FAST, public_status=False)
    with serve(create_app(settings, registry=reg)) as server, server.client() as c:
        c.post("/v1/predict", json={"items": [ITEM]}, headers=bearer(tokens["viewer"]))
        hidden = c.get("/readyz")
        assert hidden.status_code == 200 and hidden.json() == {"status": "ok"}
        metrics = c.get("/metrics").text
        assert "retail" not in metrics and "mpt_serving_requests_total" in metrics
        shown = c.get("/readyz", headers=bearer(tokens["viewer"]))
        assert shown.json()["serving"] == {"retail": 1}
        assert 'domain="retail"' in c.get("/metrics", headers=bearer(tokens["viewer"])).text
        wrong = c.get("/readyz", headers=bearer(wrong_token()))
        assert wrong.status_code == 200 and "serving" not in wrong.json()


def test_public_status_is_the_default(server, client):
    assert "retail" in client.get("/readyz").json()["serving"]
    assert 'domain="retail"' in client.get("/metrics").text
