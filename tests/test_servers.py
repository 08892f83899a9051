"""The server harness (`tests/servers.py`) on tiny real servers: Python processes that listen
on their port and note the signals they are told to survive."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from .servers import (
    ServerExited,
    ServerSpec,
    ServerTimeout,
    Signal,
    _setpriv,
    free_port,
    is_running,
    port_open,
    running,
    start,
    tail,
    wait_gone,
)

ROOT = Path(__file__).resolve().parents[1]

# argv: port, signals to note and survive (comma-separated), "child" to leave a child behind
FAKE_SERVER = """
import os, signal, socket, subprocess, sys, time
port, survive, child = int(sys.argv[1]), sys.argv[2], sys.argv[3:] == ["child"]
def note(sig, frame):
    print("got", signal.Signals(sig).name, flush=True)
for name in filter(None, survive.split(",")):
    signal.signal(getattr(signal, name), note)
if child:  # same process group; survives SIGTERM, so only a group kill ends it
    kid = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print("child pid", kid.pid, flush=True)
sock = socket.socket()
sock.bind(("127.0.0.1", port))
sock.listen()
print("listening on", port, "pid", os.getpid(), flush=True)
while True:
    time.sleep(0.05)
"""
EXITS = "import sys; print('cannot bind port', sys.argv[1], file=sys.stderr); sys.exit(3)"


def _fake(survive: str = "", *extra: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, "-c", FAKE_SERVER, port, survive, *extra]


def _spec(tmp_path: Path, command: Callable[[int], list[str]], **kw) -> ServerSpec:
    kw = {"ready": port_open, "start_timeout_s": 30.0, "poll_s": 0.02, **kw}
    return ServerSpec("fake", command, log=tmp_path / "fake.log", env=dict(os.environ), **kw)


def _pids(log: Path, label: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"{label} (\d+)", tail(log))]


def _kill_if_running(pid: int) -> None:
    """Should the harness have failed, stop what this test started, by its PID."""
    if is_running(pid):
        os.kill(pid, signal.SIGKILL)


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_free_port_and_tail(tmp_path):
    port = free_port()
    assert 0 < port < 65536 and not port_open(port)
    log = tmp_path / "x.log"
    log.write_text("a" * 10 + "end")
    assert tail(log, chars=3) == "end"
    assert tail(tmp_path / "missing.log").startswith(f"<could not read {tmp_path}")


def test_early_exit_is_reported_with_the_log_tail_after_every_attempt(tmp_path):
    ports: list[int] = []

    def pick() -> int:
        ports.append(free_port())
        return ports[-1]

    spec = _spec(tmp_path, lambda port: [sys.executable, "-c", EXITS, port], pick_port=pick)
    with pytest.raises(ServerExited) as info:
        start(spec)
    message = str(info.value)
    assert len(ports) == 3  # the default number of attempts, each on a port of its own
    assert f"fake exited with code 3 before it was ready (port {ports[-1]})" in message
    assert f"cannot bind port {ports[-1]}" in message and str(spec.log) in message
    assert [f"cannot bind port {p}" for p in ports] == spec.log.read_text().splitlines()


def test_an_early_exit_is_retried_on_a_fresh_port(tmp_path):
    commands = iter([lambda port: [sys.executable, "-c", EXITS, port], _fake()])
    spec = _spec(tmp_path, lambda port: next(commands)(port))
    with running(spec) as server:
        assert port_open(server.port)
        assert _pids(spec.log, "listening on .* pid") == [server.pid]
        assert "cannot bind port" in spec.log.read_text()
    assert server.proc.returncode == -signal.SIGTERM and wait_gone(server.pid)


def test_a_server_that_never_gets_ready_times_out_and_is_stopped(tmp_path):
    def refuse(port: int) -> bool:
        raise ConnectionRefusedError(f"nothing on {port}")

    spec = _spec(tmp_path, _fake(), ready=refuse, start_timeout_s=0.5)
    with pytest.raises(ServerTimeout) as info:
        start(spec)
    message = str(info.value)
    assert re.search(r"fake on 127\.0\.0\.1:\d+ not ready after 0\.5 s", message)
    assert "last probe error: ConnectionRefusedError('nothing on" in message
    assert f"log {spec.log}:" in message
    [pid] = _pids(spec.log, "listening on .* pid")  # it did start, and it was ended
    try:
        assert wait_gone(pid)
    finally:
        _kill_if_running(pid)


def test_stop_escalates_until_the_process_exits(tmp_path):
    steps = (
        Signal(signal.SIGINT, 0.5),
        Signal(signal.SIGTERM, 0.5),
        Signal(signal.SIGKILL, 5.0),
    )
    spec = _spec(tmp_path, _fake("SIGINT,SIGTERM"), stop=steps)
    with running(spec) as server:
        pass
    assert server.proc.returncode == -signal.SIGKILL
    assert re.findall(r"got (\w+)", spec.log.read_text()) == ["SIGINT", "SIGTERM"]
    server.stop()  # idempotent: a stopped server is not signalled again


def test_stop_sends_nothing_more_once_the_process_has_exited(tmp_path):
    steps = (Signal(signal.SIGINT, 10.0), Signal(signal.SIGKILL, 5.0))
    with running(_spec(tmp_path, _fake(), stop=steps)) as server:
        pass
    assert server.proc.returncode == -signal.SIGINT


def test_children_left_in_the_process_group_are_killed(tmp_path):
    spec = _spec(tmp_path, _fake("", "child"))
    with running(spec) as server:
        [child] = _pids(spec.log, "child pid")
        assert is_running(child)
    try:
        assert server.proc.returncode == -signal.SIGTERM  # the leader went on the first signal
        assert wait_gone(child)
    finally:
        _kill_if_running(child)


def _script(body: str, parent_death_signal: str = "None") -> subprocess.CompletedProcess[str]:
    """Run `body` in a fresh interpreter that has a temp dir `base` and a fake server `spec`."""
    prelude = f"""
        import atexit, os, signal, sys
        from tests.servers import ServerSpec, port_open, running, start, temp_dir
        home = temp_dir("mpt-harness-test-")  # kept: an unreferenced generator would close
        base = home.__enter__()
        print("base", base, flush=True)
        spec = ServerSpec(
            name="fake", command=lambda port: [sys.executable, "-c", {FAKE_SERVER!r}, port, ""],
            ready=port_open, log=base / "fake.log", env=dict(os.environ), start_timeout_s=30,
            parent_death_signal={parent_death_signal},
        )
    """
    code = textwrap.dedent(prelude) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def _reported(result: subprocess.CompletedProcess[str], key: str) -> str:
    found = re.search(rf"{key} (\S+)", result.stdout)
    assert found, f"no {key}: stdout {result.stdout!r}, stderr {result.stderr[-2000:]}"
    return found.group(1)


def test_the_exit_guard_is_removed_once_the_server_is_stopped(tmp_path, monkeypatch):
    # a guard left behind would signal the server's (by then maybe reused) group at exit
    guards: list[object] = []
    monkeypatch.setattr(atexit, "register", guards.append)
    monkeypatch.setattr(atexit, "unregister", guards.remove)
    with running(_spec(tmp_path, _fake())) as server:
        assert guards == [server.stop]
    assert guards == []


def test_the_exit_guard_stops_a_server_whose_context_is_never_left():
    result = _script(
        """
        context = running(spec)  # entered, never left: only the atexit guard can stop it
        server = context.__enter__()
        atexit._run_exitfuncs()  # what the interpreter does first at exit
        print("pid", server.pid, "stopped", server.proc.poll() is not None, flush=True)
        print("kept", base.exists(), flush=True)
        """
    )
    pid = int(_reported(result, "pid"))
    try:
        assert result.returncode == 0, result.stderr[-2000:]
        assert _reported(result, "stopped") == "True" and wait_gone(pid)
        assert _reported(result, "kept") == "False"  # temp_dir's guard ran after the server's
    finally:
        _kill_if_running(pid)


@pytest.mark.skipif(not _setpriv(), reason="needs util-linux setpriv with --pdeathsig")
def test_the_server_gets_the_parent_death_signal_when_the_test_process_is_killed():
    result = _script(
        """
        server = start(spec)
        print("pid", server.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no finally
        """,
        parent_death_signal="signal.SIGTERM",
    )
    pid = int(_reported(result, "pid"))
    try:
        assert result.returncode == -signal.SIGKILL
        assert wait_gone(pid)
    finally:
        _kill_if_running(pid)
        shutil.rmtree(_reported(result, "base"), ignore_errors=True)  # its guard never ran
