"""Every test runs offline, in its own working directory and platform home, and must leave
the environment as it found it."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from .pg_server import pg_server, pg_url  # noqa: F401
from .prefect_server import prefect_server  # noqa: F401
from .ray_head import ray_head  # noqa: F401
from .s3_server import s3_server  # noqa: F401  (session fixture: a real SeaweedFS S3 server)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise OSError(f"tests are offline: connection to {address!r} refused by conftest")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


# Set once per process by the libraries themselves, not by our code or tests.
SET_BY_LIBRARIES = {
    "PYTEST_CURRENT_TEST",
    "TORCHINDUCTOR_CACHE_DIR",
    "CRC32C_SW_MODE",  # set by tensorboardX, which Ray Tune imports
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Run in a temp cwd with MPT_HOME inside it; fail a test that leaks env changes."""
    before = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPT_HOME", str(tmp_path / "mpt-home"))
    yield
    monkeypatch.undo()
    leaked = {
        k
        for k in set(before) | set(os.environ)
        if before.get(k) != os.environ.get(k) and k not in SET_BY_LIBRARIES
    }
    assert not leaked, f"test changed environment variables {sorted(leaked)}"


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with the suite's status once pytest has reported and cleaned up,
    skipping the interpreter's teardown: a clean-clone CI run ended with "1371 passed" and
    then a segmentation fault while native libraries (torch, Ray, gRPC threads) were being
    finalised, which turned a green run red. Session fixtures have stopped their servers
    by PID before this point."""
    if _EXIT_STATUS and os.environ.get("MPT_TEST_FAST_EXIT", "1") == "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
