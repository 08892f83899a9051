"""A real Prefect server for tests: `prefect server start` on 127.0.0.1, one per session.

`prefect_server` (session) starts it with its own temp PREFECT_HOME (SQLite database inside),
no UI and no analytics, waits for `/api/health`, and stops the process group it started.
Nothing here touches `os.environ`: the server gets its own env, and tests point their client
at it with `monkeypatch.setenv` for each item of `server.client_env(home)`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .pg_server import _setpriv

HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0  # ~10 s on an idle 2-core machine; much more while others build
STOP_TIMEOUT_S = 15.0
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<could not read {log}: {exc}>"


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


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (the server and anything it spawned),
    then SIGKILL if it has not exited in time."""
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the server's pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):  # children left behind by a dead leader
        os.killpg(proc.pid, signal.SIGKILL)


def _stop_and_remove(proc: subprocess.Popen, home: Path) -> None:
    _stop(proc)
    shutil.rmtree(home, ignore_errors=True)


class _Exited(RuntimeError):
    """The server stopped before it was ready (e.g. the port was taken since we picked it)."""


def _wait_ready(proc: subprocess.Popen, port: int, log: Path) -> None:
    url = f"http://{HOST}:{port}/api/health"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise _Exited(f"prefect server exited with {proc.returncode}; log:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"prefect server on {HOST}:{port} not ready after {START_TIMEOUT_S}s "
                    f"({exc}); log:\n{_tail(log)}"
                ) from exc
        time.sleep(0.1)


def _start(home: Path, log: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    cmd = [str(prefect_executable()), "server", "start", "--host", HOST, "--port", str(port)]
    setpriv = _setpriv()
    if setpriv:  # if pytest dies without running atexit (SIGKILL), the server gets SIGTERM
        cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=_env(home),
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, which _stop signals
        )
    try:
        _wait_ready(proc, port, log)
    except BaseException:
        _stop(proc)
        raise
    return proc, port


@contextlib.contextmanager
def running_server() -> Iterator[PrefectServer]:
    """Start a fresh server in a temp PREFECT_HOME; stop it (by its process group) and
    remove the home on exit."""
    t0 = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="mpt-prefect-"))
    log = home / "server.log"
    try:
        for attempt in range(3):
            try:
                proc, port = _start(home, log)
                break
            except _Exited:
                if attempt == 2:
                    raise
        # safeguard: a session that never reaches teardown still stops the server at exit
        guard = functools.partial(_stop_and_remove, proc, home)
        atexit.register(guard)
        try:
            yield PrefectServer(
                host=HOST,
                port=port,
                pid=proc.pid,
                home=home,
                log=log,
                started_s=time.monotonic() - t0,
            )
        finally:
            _stop(proc)
            atexit.unregister(guard)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """A Prefect server on 127.0.0.1 (SQLite, no UI, no analytics) for the whole session."""
    with running_server() as server:
        yield server
