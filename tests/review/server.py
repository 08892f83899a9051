"""A real `mpt review` (uvicorn) on a free 127.0.0.1 port, and a headless Chromium driven by
Selenium, for the browser tests. The server runs on the tests' one server harness
(`tests/servers.py`): its own process group, stopped by its PID."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import review

from ..prefect_server import STOP
from ..servers import ServerSpec, http_ok, running

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


@contextlib.contextmanager
def running_review(env: dict[str, str], workdir: Path) -> Iterator[ReviewServer]:
    """`python -m cli review` with `env` added to this process's environment."""
    child_env = {**os.environ, **env}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    spec = ServerSpec(
        name="mpt review",
        command=lambda port: [
            sys.executable,
            "-m",
            "cli",
            "review",
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        ready=lambda port: http_ok(f"http://{HOST}:{port}/healthz"),
        log=workdir / "review.log",
        env=child_env,
        cwd=workdir,
        start_timeout_s=START_TIMEOUT_S,
        stop=STOP,
        parent_death_signal=signal.SIGTERM,
        poll_s=0.2,
    )
    with running(spec) as server:
        yield ReviewServer(f"http://{HOST}:{server.port}", server.pid, spec.log)


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
