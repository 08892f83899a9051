"""`bench/serving.py --quick` runs end to end on the tiny backbone (CI smoke test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_quick_serving_bench_prints_every_figure():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "serving.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for line in (
        "images/s over HTTP, 32 clients",
        "the cache saves",
        "| 32 |",
        "10 domains (requests spread over all 10)",
        "| 1.0, cannot load |",
        "shadow items on this server since it started",
        "alias move -> first response from the new version",
    ):
        assert line in out.stdout, out.stdout
