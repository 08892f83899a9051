"""Real servers of the app for the tests: uvicorn in a thread of the test process on a free
127.0.0.1 port, stopped through the server's own shutdown (lifespan included); and
`mpt serve` as a user runs it, a process on the tests' one server harness
(`tests/servers.py`), stopped by its PID."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

import serving

from ..servers import Running as Process
from ..servers import ServerSpec, Signal, free_port, http_ok, running

REPO = Path(serving.__file__).resolve().parents[1]


@dataclass
class Running:
    url: str
    app: FastAPI

    @property
    def service(self):
        return self.app.state.service

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


@contextmanager
def serve(app: FastAPI, timeout: float = 60) -> Iterator[Running]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during start-up (see the log above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start in {timeout} s")
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def mpt_serve(
    env: Mapping[str, str],
    workdir: Path,
    *args: str,
    start_timeout_s: float = 90.0,
    stop_wait_s: float = 30.0,
) -> Iterator[Process]:
    """`python -m cli serve --port PORT *args`, ready once /readyz answers 200.
    After the block, `.proc.returncode` says how it stopped; its log is `.spec.log`."""
    child_env = {**os.environ, **env}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    spec = ServerSpec(
        name="mpt serve",
        command=lambda port: [sys.executable, "-m", "cli", "serve", "--port", port, *args],
        ready=lambda port: http_ok(f"http://127.0.0.1:{port}/readyz"),
        log=workdir / "serve.log",
        env=child_env,
        cwd=workdir,
        start_timeout_s=start_timeout_s,
        stop=(Signal(signal.SIGTERM, stop_wait_s), Signal(signal.SIGKILL, 5.0, group=True)),
        parent_death_signal=signal.SIGTERM,
        poll_s=0.2,
    )
    with running(spec) as server:
        yield server
