"""`bench/import_bench.py` runs end to end on a few hundred images (CI smoke test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a subprocess that imports torch and Great Expectations


def test_the_import_bench_prints_every_step(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "import_bench.py"), "--images", "300"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for step in (
        "| import (copy) |",
        "| image facts without pHash |",
        "| image facts with pHash |",
        "| leakage facts (exact, near-duplicate, group) |",
        "| validate_domain (whole suite) |",
        "| validate_domain again (image facts reused) |",
    ):
        assert step in out.stdout, out.stdout
    assert "validation passed: True" in out.stdout
    assert list(tmp_path.iterdir()) == []  # its temp folder is removed
