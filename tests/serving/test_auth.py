"""The auth dependency against the registry's user API of the review branch
(`auth_enabled()`, `authenticate(token) -> UserInfo | None`). Those methods do not exist on
this branch yet, so a registry subclass provides them here, exactly as specified; the
registry without them leaves the API open (the other tests run that way)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from registry import PromptRegistry
from serving import ServeSettings, create_app
from serving.auth import auth_required

from . import factory
from .conftest import FAST
from .helpers import b64
from .server import serve


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str


class RegistryWithUsers(PromptRegistry):
    """The two methods the review branch adds, over a fixed table of tokens."""

    def __init__(self, url, store, tokens: dict[str, UserInfo]) -> None:
        super().__init__(url, store)
        self.tokens = tokens

    def auth_enabled(self) -> bool:
        return bool(self.tokens)

    def authenticate(self, token: str) -> UserInfo | None:
        return self.tokens.get(token)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    base = factory.build(tmp_path_factory.mktemp("registry"), specs=factory.DOMAINS[:1])
    tokens = {
        "t-viewer": UserInfo("vic", "viewer"),
        "t-admin": UserInfo("ada", "admin"),
        "t-odd": UserInfo("ode", "guest"),
    }
    reg = RegistryWithUsers(base.url, base.store, tokens)
    with serve(create_app(ServeSettings(**FAST), registry=reg)) as running:
        yield running, reg


ITEM = {"domain": "retail", "image": b64(factory.sample("classification")[0].image)}


def test_with_users_a_viewer_token_is_needed(guarded):
    server, _ = guarded
    with server.client() as c:
        missing = c.post("/v1/predict", json={"items": [ITEM]})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in missing.json()["error"]["fix"]
        wrong = c.get("/v1/domains", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
        odd = c.get("/v1/domains", headers={"Authorization": "Bearer t-odd"})
        assert odd.status_code == 403 and "viewer" in odd.json()["error"]["message"]
        for token in ("t-viewer", "t-admin"):
            ok = c.post(
                "/v1/predict", json={"items": [ITEM]}, headers={"Authorization": f"Bearer {token}"}
            )
            assert ok.status_code == 200, ok.text
        for open_route in ("/healthz", "/readyz", "/metrics"):
            assert c.get(open_route).status_code == 200


def test_without_users_or_without_user_support_it_is_open(guarded, shared_registry):
    _, reg = guarded
    assert auth_required(reg)
    no_users = RegistryWithUsers(reg.url, reg.store, {})
    assert not auth_required(no_users)
    assert not auth_required(shared_registry)  # this branch's PromptRegistry: no user API
