"""A real PostgreSQL server for tests: `initdb` + `postgres` on 127.0.0.1, one per session.

`pg_server` (session) starts it in a fresh temp dir and stops it by the PID it started;
`pg_url` (function) hands each test the SQLAlchemy URL of a fresh database and drops it after.

When we run as root the server runs as the `postgres` system user (PostgreSQL refuses root).
Nothing here touches `os.environ`: every subprocess gets its own env.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .servers import (
    HOST,
    Running,
    ServerSpec,
    Signal,
    free_port,
    running,
    start,
    tail,
    temp_dir,
)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
MAX_CONNECTIONS = 100
SUPERUSER = "postgres"
INSTALL_HINT = "install PostgreSQL with `apt-get install postgresql` (as root)"
SERVER_SETTINGS = {  # a throwaway test cluster: speed over durability
    "listen_addresses": HOST,
    "max_connections": str(MAX_CONNECTIONS),
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "jit": "off",
}


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in ("initdb", "postgres"))


def _version_key(bindir: Path) -> tuple[int, ...]:
    parts = re.findall(r"\d+", bindir.parent.name)
    return tuple(int(p) for p in parts) or (-1,)


def find_bindir() -> Path:
    """The server binaries: `pg_config --bindir` if it has them, else the newest Debian ones."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_server(Path(out)):
            return Path(out)
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server(p)]
    if candidates:
        return max(candidates, key=_version_key)
    pytest.fail(
        "PostgreSQL server binaries (initdb, postgres) not found via `pg_config --bindir` "
        f"or in /usr/lib/postgresql/*/bin; {INSTALL_HINT}",
        pytrace=False,
    )


def _traversable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` can search every directory from / down to `path`."""
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _run_as() -> pwd.struct_passwd | None:
    """The user to run the server as: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        pytest.fail(
            f"running as root, but there is no `{SUPERUSER}` system user to run the server as; "
            f"{INSTALL_HINT}, which creates it",
            pytrace=False,
        )


def _base_parent(user: pwd.struct_passwd | None) -> Path:
    """Where to make the server's temp dir: one the server's user can reach."""
    parent = Path(tempfile.gettempdir()).resolve()
    # the socket path (<base>/sock/.s.PGSQL.<port>) must fit in sun_path (107 bytes)
    if len(str(parent)) > 60 or (user is not None and not _traversable_by(parent, user)):
        parent = Path("/tmp")
    return parent


def _prepare_base(base: Path, user: pwd.struct_passwd | None) -> None:
    (base / "sock").mkdir()
    if user is not None:
        for path in (base, base / "sock"):
            os.chown(path, user.pw_uid, user.pw_gid)


def _env(user: pwd.struct_passwd | None, base: Path) -> dict[str, str]:
    """A clean env for the server: no PG* overrides, C locale, UTC."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    if user is not None:
        env.update(HOME=str(base), USER=user.pw_name, LOGNAME=user.pw_name)
    return env


def _user_kwargs(user: pwd.struct_passwd | None) -> dict[str, object]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _initdb(
    bindir: Path, datadir: Path, user: pwd.struct_passwd | None, env: dict[str, str], log: Path
) -> None:
    cmd = [
        str(bindir / "initdb"),
        "-D",
        str(datadir),
        "-U",
        SUPERUSER,
        "--auth=trust",  # pg_hba only lists the local socket and 127.0.0.1/::1
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    with open(log, "ab") as out:
        result = subprocess.run(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=120,
            **_user_kwargs(user),
        )
    if result.returncode != 0:
        pytest.fail(
            f"initdb failed with exit code {result.returncode}; log:\n{tail(log)}",
            pytrace=False,
        )


def _conninfo(port: int, dbname: str = "postgres", timeout: int = 5) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=HOST, port=port, user=SUPERUSER, dbname=dbname, connect_timeout=timeout
    )


# Fast shutdown first: SIGTERM would be a "smart" one, waiting for every client to disconnect.
FAST_SHUTDOWN = (
    Signal(signal.SIGINT, STOP_TIMEOUT_S),
    Signal(signal.SIGQUIT, 5.0),  # immediate shutdown
    Signal(signal.SIGKILL, 5.0),
)


def _postgres_command(bindir: Path, base: Path, port: int) -> list[str]:
    cmd = [str(bindir / "postgres"), "-D", str(base / "data"), "-p", str(port)]
    cmd += ["-k", str(base / "sock")]
    for key, value in SERVER_SETTINGS.items():
        cmd += ["-c", f"{key}={value}"]
    return cmd


def _answers_queries(port: int) -> bool:
    import psycopg

    with psycopg.connect(_conninfo(port, timeout=2)) as conn:
        conn.execute("SELECT 1")
    return True


_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class PgServer:
    """A running test server. Connect as `postgres` without a password (trust auth)."""

    host: str
    port: int
    pid: int
    datadir: Path
    log: Path
    bindir: Path
    user: str = SUPERUSER
    started_s: float = field(default=0.0, repr=False)  # seconds initdb + start took

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database `dbname` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq conninfo string, for `psycopg.connect`."""
        return _conninfo(self.port, dbname)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (from template1); return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        _check_name(name)
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Terminate every connection to `name`, then DROP DATABASE IF EXISTS."""
        import psycopg
        from psycopg import sql

        _check_name(name)
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _check_name(name: str) -> None:
    # plain identifiers only: no quoting surprises in the URL, and no silent 63-byte truncation
    if not _NAME_OK.fullmatch(name) or len(name) > 63:
        raise ValueError(f"database name must match [A-Za-z_][A-Za-z0-9_]{{0,62}}: {name!r}")


@contextlib.contextmanager
def _cluster() -> Iterator[tuple[Path, Path, dict[str, str], pwd.struct_passwd | None, Path]]:
    """A fresh initdb'd cluster in a temp dir (removed on exit): (bindir, base, env, user,
    log)."""
    bindir = find_bindir()  # fails with the install hint before anything is created
    user = _run_as()
    with temp_dir("mpt-pg-", _base_parent(user)) as base:
        _prepare_base(base, user)
        env = _env(user, base)
        log = base / "postgres.log"
        _initdb(bindir, base / "data", user, env, log)
        yield bindir, base, env, user, log


def _spec(bindir: Path, base: Path, env: dict[str, str], user, log: Path, **more) -> ServerSpec:
    return ServerSpec(
        name="postgres",
        command=functools.partial(_postgres_command, bindir, base),
        ready=_answers_queries,
        log=log,
        env=env,
        start_timeout_s=START_TIMEOUT_S,
        stop=FAST_SHUTDOWN,
        parent_death_signal=signal.SIGINT,  # if pytest is SIGKILLed (no atexit)
        popen=_user_kwargs(user),
        poll_s=0.05,
        **more,
    )


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """Start a fresh server in a temp dir; stop it (by PID) and remove the dir on exit."""
    t0 = time.monotonic()
    with (
        _cluster() as (bindir, base, env, user, log),
        running(_spec(bindir, base, env, user, log)) as server,
    ):
        yield PgServer(
            host=HOST,
            port=server.port,
            pid=server.pid,
            datadir=base / "data",
            log=log,
            bindir=bindir,
            started_s=time.monotonic() - t0,
        )


@dataclass
class RestartablePg:
    """A server of its own that a test stops and starts again, on the same port and data
    directory (a database going away under a running client, and coming back)."""

    spec: ServerSpec
    server: PgServer
    running: Running | None = None

    def start(self) -> None:
        if self.running is None:
            self.running = start(self.spec)
            self.server.pid = self.running.pid

    def stop(self) -> None:
        """Fast shutdown by its PID: clients are disconnected at once."""
        if self.running is not None:
            self.running.stop()
            self.running = None


@contextlib.contextmanager
def restartable_server() -> Iterator[RestartablePg]:
    """A fresh server that the test may stop and start; stopped by its PID on exit."""
    with _cluster() as (bindir, base, env, user, log):
        port = free_port()
        spec = _spec(bindir, base, env, user, log, pick_port=lambda: port)
        pg = RestartablePg(spec, PgServer(HOST, port, 0, base / "data", log, bindir))
        pg.start()
        atexit.register(pg.stop)
        try:
            yield pg
        finally:
            pg.stop()
            atexit.unregister(pg.stop)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server on 127.0.0.1 (trust auth, user `postgres`) for the whole session."""
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, uniquely named database, dropped after the test."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)
