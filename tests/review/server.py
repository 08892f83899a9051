"""A real `mpt review` (uvicorn) on a free 127.0.0.1 port, and a headless Chromium driven by
Selenium, for the browser tests. The server is started as its own process group and
stopped by its PID (the stop/tail/port helpers are the Prefect harness's)."""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import review

from ..pg_server import _setpriv
from ..prefect_server import _free_port, _stop, _tail

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--force-device-scale-factor=1",
)
REPO = Path(review.__file__).resolve().parents[1]


@dataclass(frozen=True)
class ReviewServer:
    url: str
    pid: int
    log: Path


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mpt review exited with {proc.returncode}; log:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"mpt review not ready ({exc}); log:\n{_tail(log)}") from exc
        time.sleep(0.2)


@contextlib.contextmanager
def running_review(env: dict[str, str], workdir: Path) -> Iterator[ReviewServer]:
    """`python -m flows.cli review` with `env` added to this process's environment."""
    port = _free_port()
    log = workdir / "review.log"
    child_env = {**os.environ, **env}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    cmd = [sys.executable, "-m", "flows.cli", "review", "--host", HOST, "--port", str(port)]
    setpriv = _setpriv()
    if setpriv:  # if pytest dies without cleaning up, the server gets SIGTERM
        cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=child_env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    guard = functools.partial(_stop, proc)
    atexit.register(guard)
    try:
        url = f"http://{HOST}:{port}"
        _wait_ready(proc, url, log)
        yield ReviewServer(url, proc.pid, log)
    finally:
        _stop(proc)
        atexit.unregister(guard)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[object]:
    """Debian's chromium + chromedriver, headless, with a fresh profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install them with "
            "`apt-get install chromium chromium-driver` (as root; `make setup` does)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_png(driver, path: Path) -> Path:
    """A screenshot of the whole page, not just the window (Chrome DevTools)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
