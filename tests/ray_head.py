"""A real Ray head node on 127.0.0.1 for the test session, stopped by its PID.

`ray start --head --block` stays in the foreground and stops the processes it started
when it receives SIGTERM. Ray resolves 127.0.0.1 to the machine's outward IP unless
cluster mode is off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, despite its name), so head and
clients get that setting, and token authentication off, consistently through `env`.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .servers import HOST, ServerSpec, Signal, port_open, running, temp_dir

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# SIGTERM to `ray start` alone, which stops its own processes; SIGKILL to its group if stuck
STOP = (Signal(signal.SIGTERM, 60.0), Signal(signal.SIGKILL, 5.0, group=True))


@dataclass(frozen=True)
class RayHead:
    address: str
    pid: int
    env: dict[str, str]
    """Environment for client processes: RAY_ADDRESS and the settings above."""
    home: Path
    """The MPT_HOME of the node's workers (their feature store and data cache)."""


def _command(ray_bin: Path, temp: Path, port: int) -> list[str]:
    return [
        str(ray_bin),
        "start",
        "--head",
        f"--port={port}",
        f"--node-ip-address={HOST}",
        "--num-cpus=2",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
        "--block",
    ]


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    ray_bin = Path(sys.executable).parent / "ray"
    with temp_dir("mpt-ray-") as temp:
        spec = ServerSpec(
            name="ray head",
            command=lambda port: _command(ray_bin, temp, port),
            ready=port_open,  # the GCS port
            log=temp / "head.log",
            # the node's own home: its workers keep their caches (features, data) there
            env={**os.environ, **RAY_ENV, "MPT_HOME": str(temp / "node-home")},
            start_timeout_s=90.0,
            stop=STOP,
            parent_death_signal=signal.SIGTERM,  # if pytest is SIGKILLed (no atexit)
            poll_s=0.5,
        )
        with running(spec) as head:
            address = f"{HOST}:{head.port}"
            yield RayHead(
                address, head.pid, {**RAY_ENV, "RAY_ADDRESS": address}, temp / "node-home"
            )
