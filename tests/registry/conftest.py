"""Every registry test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from registry import PromptRegistry, upgrade
from registry.db import get_engine
from registry.store import LocalStore


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def reg(db_url, tmp_path) -> PromptRegistry:
    upgrade(db_url)
    return PromptRegistry(db_url, LocalStore(tmp_path / "artifacts"))


def make_artifact(root: Path, tag: str) -> Path:
    """A small stand-in prompt artifact directory (the registry stores any directory)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "prompts.safetensors").write_bytes(f"tensors-{tag}".encode())
    (root / "prompt_config.json").write_text(json.dumps({"method": "mpt", "tag": tag}))
    return root


BACKBONE = {"family": "shipped", "name": "tiny", "weights_sha256": "a" * 64}


def metrics(accuracy: float, **per_class: float) -> dict:
    return {"accuracy": accuracy, "macro_f1": accuracy, "per_class_accuracy": per_class}


@contextmanager
def statements(url: str) -> Iterator[list[str]]:
    """Every SQL statement sent to the database at `url` inside the block, in order."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
