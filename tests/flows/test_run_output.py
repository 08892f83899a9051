"""What a user sees from `mpt run` in a terminal-less process: a failing domain's reason
with its row, no traceback for failures the flow handles, no Ray or Prefect noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .domain_factory import read_rows, write_rows
from .retrain_fixtures import tiny_repo

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a local Ray and Prefect's ephemeral server in a subprocess


def test_a_run_with_a_bad_domain_prints_reasons_not_tracebacks(tmp_path):
    from flows.domains import get_domain

    domains_dir = tiny_repo(tmp_path / "repo", tasks=("classification", "vqa"))
    broken = get_domain(domains_dir, "test-vqa")
    rows = read_rows(broken)
    rows[2]["answer"] = "maybe"
    write_rows(broken, rows)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "RAY_")) and k != "PYTEST_CURRENT_TEST"
    }
    env["MPT_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--domains-dir", str(domains_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "Token authentication" not in text and "telemetry" not in text.lower(), text[-3000:]
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("test-vqa")]
    assert "invalid" in line and "row 3" in line and "'maybe'" in line
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("test-classification")]
    assert "registered" in line
