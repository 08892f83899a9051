"""One start/stop harness for the real servers the tests use (PostgreSQL, Prefect, Ray, S3).

A `ServerSpec` says how to launch a server on a port and how to tell it is ready; `running`
starts it in its own session with its output in a log file, waits until the probe answers
(starting again on a fresh port when the process exits first: a port taken since it was
picked), and on exit stops it by its PID with escalating signals, then kills whatever is left
in its process group. An atexit guard stops it if the context is never left, and
`setpriv --pdeathsig` (where given) if the test process itself is killed.
Nothing is ever killed by name, and nothing here touches `os.environ`.
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
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
Arg = str | int | os.PathLike[str]  # one argv item; made a str at launch


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on right now (the OS picks it; it may be taken later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tail(log: Path, chars: int = 4000) -> str:
    """The last `chars` characters of `log`, or why it could not be read."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<could not read {log}: {exc}>"


def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def is_running(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has exited; only its parent's wait is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether process `pid` has stopped running within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass(frozen=True)
class Signal:
    """One step of a stop: send `sig` to the PID (or its whole process group, which
    `start_new_session` makes the PID's own) and wait up to `wait_s` for it to exit."""

    sig: signal.Signals
    wait_s: float
    group: bool = False


TERMINATE = (Signal(signal.SIGTERM, 15.0), Signal(signal.SIGKILL, 5.0))


class ServerExited(RuntimeError):
    """The server exited before it was ready; the message has its exit code and log tail."""


class ServerTimeout(TimeoutError):
    """The server did not become ready in time; the message has the last probe error and log."""


@dataclass(frozen=True)
class ServerSpec:
    """How to run one server. `command(port)` builds its argv for a port from `pick_port()`;
    `ready(port)` is true once it serves (an exception counts as not yet)."""

    name: str
    command: Callable[[int], Sequence[Arg]]
    ready: Callable[[int], bool]
    log: Path  # appended to by every attempt
    env: Mapping[str, str]  # the whole environment of the server
    cwd: Path | None = None
    start_timeout_s: float = 60.0
    attempts: int = 3  # starts on fresh ports when the process exits before it is ready
    stop: Sequence[Signal] = TERMINATE
    parent_death_signal: signal.Signals | None = None  # sent to it if the test process dies
    popen: Mapping[str, Any] = field(default_factory=dict)  # e.g. user=, group=
    pick_port: Callable[[], int] = free_port
    poll_s: float = 0.1


@dataclass
class Running:
    """A server that answered its readiness probe."""

    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    started_s: float  # seconds from the first attempt until ready
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Stop it by PID with the spec's escalating signals; later calls do nothing (its
        group id may belong to someone else by then)."""
        if not self.stopped:
            self.stopped = True
            stop(self.proc, self.spec.stop)


def stop(proc: subprocess.Popen[bytes], steps: Sequence[Signal] = TERMINATE) -> None:
    """Send each step's signal until `proc` exits, then SIGKILL what is left of its process
    group (children it left behind; the kernel keeps a group's id from reuse while it has
    members). Signals go to our own PID and group only, never by name."""
    for step in steps:
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            if step.group:
                os.killpg(proc.pid, step.sig)
            else:
                proc.send_signal(step.sig)  # a no-op once it has been reaped: no PID reuse
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=step.wait_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@functools.cache
def _setpriv() -> str | None:
    """util-linux `setpriv`, if it has --pdeathsig (2.33+)."""
    path = shutil.which("setpriv")
    if not path:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage.stdout else None


def _launch(spec: ServerSpec, port: int) -> subprocess.Popen[bytes]:
    cmd = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in spec.command(port)]
    setpriv = _setpriv()
    if spec.parent_death_signal is not None and setpriv:
        # setpriv execs the server, so the PID stays the server's
        deathsig = spec.parent_death_signal.name.removeprefix("SIG")
        cmd = [setpriv, "--pdeathsig", deathsig, "--", *cmd]
    with open(spec.log, "ab") as out:
        return subprocess.Popen(
            cmd,
            env=dict(spec.env),
            cwd=spec.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches pytest, not the server; own group
            **spec.popen,
        )


def _wait_ready(spec: ServerSpec, proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + spec.start_timeout_s
    last: Exception | None = None
    while True:
        if proc.poll() is not None:
            raise ServerExited(
                f"{spec.name} exited with code {proc.returncode} before it was ready "
                f"(port {port}); log {spec.log}:\n{tail(spec.log)}"
            )
        try:
            if spec.ready(port) and proc.poll() is None:  # not another process on our port
                return
            last = None
        except Exception as exc:  # a probe error just means: not yet
            last = exc
        if time.monotonic() > deadline:
            probe = f"last probe error: {last!r}" if last else "probe said not ready"
            raise ServerTimeout(
                f"{spec.name} on {HOST}:{port} not ready after {spec.start_timeout_s:g} s "
                f"({probe}); log {spec.log}:\n{tail(spec.log)}"
            )
        time.sleep(spec.poll_s)


def start(spec: ServerSpec) -> Running:
    """Start the server and return it once ready; raise `ServerExited` when every attempt
    exited early, `ServerTimeout` when one never became ready (it is stopped either way)."""
    if spec.attempts < 1:
        raise ValueError(f"{spec.name}: attempts must be at least 1, got {spec.attempts}")
    t0 = time.monotonic()
    for attempt in range(1, spec.attempts + 1):
        port = spec.pick_port()
        proc = _launch(spec, port)
        try:
            _wait_ready(spec, proc, port)
        except ServerExited:
            stop(proc, spec.stop)
            if attempt == spec.attempts:
                raise
        except BaseException:
            stop(proc, spec.stop)
            raise
        else:
            return Running(spec, proc, port, time.monotonic() - t0)
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextlib.contextmanager
def running(spec: ServerSpec) -> Iterator[Running]:
    """Start the server, yield it, and always stop it by PID on exit (and at interpreter
    exit, should the context never be left)."""
    server = start(spec)
    guard = server.stop
    atexit.register(guard)
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(guard)


@contextlib.contextmanager
def temp_dir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A fresh directory, removed on exit and at interpreter exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    remove = functools.partial(shutil.rmtree, path, ignore_errors=True)
    atexit.register(remove)
    try:
        yield path
    finally:
        remove()
        atexit.unregister(remove)
