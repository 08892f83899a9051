"""Bearer tokens of the registry's users on the serving API: open while the registry has no
users, a viewer's token (or any higher role's) needed once it has them."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI

from serving import ServeSettings, create_app
from serving.app import install_error_handlers
from serving.auth import auth_required, require_role

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
    app.state.service = type("Service", (), {"registry": reg})()
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
