"""A real Prefect server for tests: `prefect server start` on 127.0.0.1, one per session.

`prefect_server` (session) starts it with its own temp PREFECT_HOME (SQLite database inside),
no UI and no analytics, waits for `/api/health`, and stops the process group it started.
Nothing here touches `os.environ`: the server gets its own env, and tests point their client
at it with `monkeypatch.setenv` for each item of `server.client_env(home)`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .servers import HOST, ServerSpec, Signal, http_ok, running, temp_dir

START_TIMEOUT_S = 90.0  # ~10 s on an idle 2-core machine; much more while others build
STOP_TIMEOUT_S = 15.0
# SIGTERM to the whole group: the server and the processes it spawned
STOP = (Signal(signal.SIGTERM, STOP_TIMEOUT_S, group=True), Signal(signal.SIGKILL, 5.0, group=True))
OFFLINE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # server: no telemetry heartbeat
    "DO_NOT_TRACK": "1",  # client SDK analytics
    "PREFECT_SERVER_UI_ENABLED": "false",  # nothing to browse in tests; starts faster
}


def prefect_executable() -> Path:
    """The `prefect` script of this interpreter's environment."""
    path = Path(sys.executable).parent / "prefect"
    if not path.is_file():
        pytest.fail(
            f"{path} not found: install prefect in this environment (`pip install prefect`)",
            pytrace=False,
        )
    return path


@dataclass
class PrefectServer:
    """A running test server; its REST API is at `api_url`."""

    host: str
    port: int
    pid: int
    home: Path
    log: Path
    started_s: float = field(default=0.0, repr=False)  # seconds until /api/health answered

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def client_env(self, home: Path) -> dict[str, str]:
        """Env for a client of this server (PREFECT_HOME = `home`, a per-test temp dir)."""
        return {**OFFLINE_ENV, "PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(home)}


def _env(home: Path) -> dict[str, str]:
    """This process's env without any PREFECT_* setting (a developer's profile, API URL or
    database URL must not leak in), plus a private home and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(OFFLINE_ENV)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
    )
    return env


@contextlib.contextmanager
def running_server() -> Iterator[PrefectServer]:
    """Start a fresh server in a temp PREFECT_HOME; stop it (by its process group) and
    remove the home on exit."""
    executable = prefect_executable()
    with temp_dir("mpt-prefect-") as home:
        spec = ServerSpec(
            name="prefect server",
            command=lambda port: [executable, "server", "start", "--host", HOST, "--port", port],
            ready=lambda port: http_ok(f"http://{HOST}:{port}/api/health"),
            log=home / "server.log",
            env=_env(home),
            cwd=home,
            start_timeout_s=START_TIMEOUT_S,
            stop=STOP,
            parent_death_signal=signal.SIGTERM,  # if pytest is SIGKILLed (no atexit)
        )
        with running(spec) as server:
            yield PrefectServer(
                host=HOST,
                port=server.port,
                pid=server.pid,
                home=home,
                log=spec.log,
                started_s=server.started_s,
            )


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """A Prefect server on 127.0.0.1 (SQLite, no UI, no analytics) for the whole session."""
    with running_server() as server:
        yield server
