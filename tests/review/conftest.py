"""Review pages on a registry built with the registry API, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from registry import PromptRegistry, upgrade
from registry.store import LocalStore
from review import ReviewSettings, create_app

from ..registry.conftest import db_url  # noqa: F401  (sqlite + postgresql parameters)
from .builders import add_people, build

SECRET = "s" * 48


@contextlib.contextmanager
def database(request: pytest.FixtureRequest, backend: str, root: Path) -> Iterator[str]:
    """A migrated registry database for a module: a SQLite file or a fresh PostgreSQL
    database on the session's server (dropped afterwards)."""
    if backend == "sqlite":
        url = f"sqlite:///{root / 'registry.db'}"
        upgrade(url)
        yield url
        return
    server = request.getfixturevalue("pg_server")
    name = f"t_review_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    try:
        upgrade(url)
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request, tmp_path_factory):
    """One scene per module and backend, for tests that only read (or add what others
    do not look at): building it costs a second or two."""
    root = tmp_path_factory.mktemp(f"shared-{request.param}")
    with database(request, request.param, root) as url:
        reg = PromptRegistry(url, LocalStore(root / "artifacts"))
        tokens = add_people(reg)
        scene = build(reg, root)
        app = create_app(reg, ReviewSettings(secret=SECRET), home=root)
        yield SimpleNamespace(reg=reg, tokens=tokens, scene=scene, app=app)


@pytest.fixture
def reg(db_url, tmp_path) -> PromptRegistry:  # noqa: F811
    upgrade(db_url)
    return PromptRegistry(db_url, LocalStore(tmp_path / "artifacts"))


@pytest.fixture
def tokens(reg) -> dict[str, str]:
    return add_people(reg)


@pytest.fixture
def scene(reg, tokens, tmp_path):
    return build(reg, tmp_path)


@pytest.fixture
def app(reg, tmp_path):
    return create_app(reg, ReviewSettings(secret=SECRET), home=tmp_path)


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def nonce_of(html: str) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', html).group(1)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client: TestClient, token: str, next_: str = "/"):
    page = client.get("/login")
    return client.post("/login", data={"token": token, "nonce": nonce_of(page.text), "next": next_})


@pytest.fixture
def as_user(client, tokens):
    """Log `client` in as one of the builder's people; returns the client."""

    def _login(name: str) -> TestClient:
        client.cookies.clear()
        response = login(client, tokens[name])
        assert response.status_code == 303, response.text
        return client

    return _login
