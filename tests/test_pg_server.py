"""The `pg_server` / `pg_url` fixtures: a real PostgreSQL server on loopback."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from .pg_server import STOP_TIMEOUT_S, PgServer, running_server
from .servers import is_running, wait_gone


@pytest.fixture
def engine_for():
    engines: list[sa.Engine] = []

    def make(url: str) -> sa.Engine:
        engines.append(sa.create_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def test_pg_url_roundtrip_with_sqlalchemy(pg_url: str, engine_for) -> None:
    assert pg_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = engine_for(pg_url)
    items = sa.Table(
        "items",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    items.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(items.insert(), [{"name": "ä-utf8"}, {"name": "b"}])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(items.c.name).order_by(items.c.id)).scalars().all()
        encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
    assert rows == ["ä-utf8", "b"]
    assert encoding == "UTF8"


def test_databases_are_isolated(pg_server: PgServer, engine_for) -> None:
    names = [f"iso_{uuid.uuid4().hex[:8]}_{i}" for i in range(2)]
    a, b = (pg_server.create_database(name) for name in names)
    try:
        with engine_for(a).begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_in_a (x int)"))
            conn.execute(sa.text("INSERT INTO only_in_a VALUES (1)"))
        with engine_for(b).connect() as conn:
            assert not sa.inspect(conn).has_table("only_in_a")
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == names[1]
        with engine_for(a).connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM only_in_a")).scalar_one() == 1
    finally:
        for name in names:
            pg_server.drop_database(name)  # also terminates the engines' pooled connections
    with psycopg.connect(pg_server.conninfo()) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)
        ).fetchall()
    assert left == []


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net shows them) of LISTEN sockets on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


def test_listens_on_loopback_only(pg_server: PgServer) -> None:
    assert pg_server.host == "127.0.0.1"
    with psycopg.connect(pg_server.conninfo()) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["listen_addresses", "fsync", "synchronous_commit", "max_connections"],),
            ).fetchall()
        )
        assert conn.execute("SELECT host(inet_server_addr())").fetchone() == ("127.0.0.1",)
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["fsync"] == "off"
    assert settings["synchronous_commit"] == "off"
    assert int(settings["max_connections"]) >= 100
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("no /proc/net/tcp to inspect listening sockets")
    assert _listening(pg_server.port) == ["0100007F"]  # 127.0.0.1, and no IPv6 / wildcard


def test_drop_database_terminates_open_connections(pg_server: PgServer) -> None:
    name = f"drop_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{pg_server.port}/{name}"
    with psycopg.connect(pg_server.conninfo(name)) as held:
        pg_server.drop_database(name)
        # the client learns of the termination on its next statement
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    pg_server.drop_database(name)  # IF EXISTS: dropping twice is fine
    with pytest.raises(ValueError):
        pg_server.create_database('bad"name')


def test_server_runs_unprivileged(pg_server: PgServer) -> None:
    status = Path(f"/proc/{pg_server.pid}/status")
    if not status.exists():
        pytest.skip("no /proc to inspect the postmaster")
    uid = next(
        int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("Uid:")
    )
    assert uid != 0
    assert (pg_server.datadir / "postmaster.pid").read_text().split()[0] == str(pg_server.pid)


@pytest.mark.slow
def test_stop_is_a_fast_shutdown_that_leaves_no_process_and_no_files() -> None:
    with running_server() as server:
        with psycopg.connect(server.conninfo()) as conn:
            workers = conn.execute(  # checkpointer, walwriter, autovacuum launcher, ...
                "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            ).fetchall()
        pids = [server.pid, *(pid for (pid,) in workers)]
        assert len(pids) > 1 and all(is_running(pid) for pid in pids)
        held = psycopg.connect(server.conninfo())  # a smart shutdown would wait for it
        t0 = time.monotonic()
    stop_s = time.monotonic() - t0
    try:
        with pytest.raises(psycopg.OperationalError):  # the server ended it
            held.execute("SELECT 1")
    finally:
        held.close()
    assert stop_s < STOP_TIMEOUT_S / 2  # fast (SIGINT): no wait for clients, no escalation
    assert [pid for pid in pids if not wait_gone(pid)] == []
    assert not server.datadir.parent.exists()
