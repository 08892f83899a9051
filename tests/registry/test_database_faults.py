"""A registry database that goes away, is replaced or is damaged under a process that has
it open: every call fails with RegistryUnavailable (a reason fit for clients, a message
naming the database and the fix), and works again once the database is back. SQLite files
and a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil

import pytest

from registry import PromptRegistry, RegistryUnavailable, upgrade
from registry.errors import short_reason
from registry.store import LocalStore

from ..servers import free_port
from .conftest import BACKBONE, make_artifact


def registry_at(path, tmp_path) -> PromptRegistry:
    url = f"sqlite:///{path}"
    upgrade(url)
    return PromptRegistry(url, LocalStore(tmp_path / "artifacts"))


def one_version(reg: PromptRegistry, tmp_path, tag: str) -> None:
    reg.record_data_version("retail", "d" * 32, rows=1, row_counts={}, validation_passed=True)
    reg.register_version(
        "retail",
        make_artifact(tmp_path / tag, tag),
        method="mpt",
        config={"tag": tag},
        data_version="d" * 32,
        backbone=BACKBONE,
        metrics={"test": {"accuracy": 0.5}},
    )


def test_a_deleted_sqlite_file_is_an_error_and_is_never_recreated_empty(tmp_path):
    db = tmp_path / "registry.db"
    reg = registry_at(db, tmp_path)
    one_version(reg, tmp_path, "a")
    kept = tmp_path / "kept.db"
    shutil.copy(db, kept)
    db.unlink()
    for _ in range(3):  # pooled connections and fresh ones alike
        with pytest.raises(RegistryUnavailable) as caught:
            reg.domains()
        assert str(db) in str(caught.value) and "put the database file back" in str(caught.value)
        assert short_reason(caught.value) == (
            "RegistryUnavailable: the registry's SQLite file was deleted or moved away"
        )
    assert not db.exists()
    os.replace(kept, db)
    assert reg.domains() == ["retail"]


def test_a_replaced_sqlite_file_is_read_at_the_next_call(tmp_path):
    db = tmp_path / "registry.db"
    reg = registry_at(db, tmp_path)
    assert reg.domains() == []  # the pool now holds a connection to this file
    other = tmp_path / "other.db"
    one_version(registry_at(other, tmp_path), tmp_path, "b")
    os.replace(other, db)
    assert reg.domains() == ["retail"] and reg.list_versions("retail")[0].config == {"tag": "b"}


@pytest.mark.parametrize("how", ["in place", "by another file"])
def test_a_damaged_sqlite_file_names_the_cause_and_the_fix(tmp_path, how):
    db = tmp_path / "registry.db"
    reg = registry_at(db, tmp_path)
    one_version(reg, tmp_path, "a")
    good = db.read_bytes()
    if how == "in place":
        db.write_bytes(b"junk" * 1000)
    else:
        (tmp_path / "junk.db").write_bytes(b"junk" * 1000)
        os.replace(tmp_path / "junk.db", db)
    with pytest.raises(RegistryUnavailable) as caught:
        reg.list_versions()
    assert "file is not a database" in str(caught.value)
    assert "restore it from a backup" in str(caught.value)
    assert short_reason(caught.value) == "DatabaseError: file is not a database"
    db.write_bytes(good)
    assert reg.domains() == ["retail"]


def test_an_unreachable_postgresql_server_is_unavailable(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/registry"
    reg = PromptRegistry(url, LocalStore(tmp_path / "artifacts"))
    with pytest.raises(RegistryUnavailable) as caught:
        reg.alias_targets()
    assert "is running and reachable at MPT_DATABASE_URL" in str(caught.value)
    assert short_reason(caught.value).startswith("OperationalError: ")


def test_a_missing_schema_says_to_upgrade(db_url, tmp_path):
    reg = PromptRegistry(db_url, LocalStore(tmp_path / "artifacts"))  # never migrated
    with pytest.raises(RegistryUnavailable, match="run `mpt registry upgrade`"):
        reg.domains()
