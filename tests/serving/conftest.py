"""Serving tests: registries of tiny real versions, and a real uvicorn on a free port."""

from __future__ import annotations

import pytest

from serving import ServeSettings, create_app

from . import factory
from .server import serve

FAST = {"poll_seconds": 0.2, "retry_seconds": 0.5, "max_wait_ms": 2.0}


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory):
    """Every factory domain with one production version; tests must not change it."""
    return factory.build(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def server(shared_registry):
    with serve(create_app(ServeSettings(**FAST), registry=shared_registry)) as running:
        yield running


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c
