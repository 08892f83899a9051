"""A real Ray head node on 127.0.0.1 for the test session, stopped by its PID.

`ray start --head --block` stays in the foreground and stops the processes it started
when it receives SIGTERM. Ray resolves 127.0.0.1 to the machine's outward IP unless
cluster mode is off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, despite its name), so head and
clients get that setting, and token authentication off, consistently through `env`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@dataclass(frozen=True)
class RayHead:
    address: str
    pid: int
    env: dict[str, str]
    """Environment for client processes: RAY_ADDRESS and the settings above."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    ray_bin = Path(sys.executable).parent / "ray"
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="mpt-ray-")
    env = {**os.environ, **RAY_ENV}
    log = open(Path(tmp) / "head.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--temp-dir={tmp}",
            "--block",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"ray head exited: {(Path(tmp) / 'head.log').read_text()[-2000:]}"
                )
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("ray head did not open its port in 90 s")
            time.sleep(0.5)
        yield RayHead(address, proc.pid, {**RAY_ENV, "RAY_ADDRESS": address})
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
