"""Fixtures that point `reg`, `tokens`, `scene` and `app` at the module's shared scene
(conftest's `shared`): for modules whose tests only read, or add domains and versions the
others do not look at. A module opts in with `from .shared_scene import *`."""

from __future__ import annotations

import pytest

__all__ = ["app", "reg", "scene", "tokens"]


@pytest.fixture
def reg(shared):
    return shared.reg


@pytest.fixture
def tokens(shared):
    return shared.tokens


@pytest.fixture
def scene(shared):
    return shared.scene


@pytest.fixture
def app(shared):
    return shared.app
