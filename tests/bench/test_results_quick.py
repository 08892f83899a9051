"""`bench/results.py --quick` runs every method on the three demo domains (CI smoke test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.domains.prepare import prepare

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_quick_results_cover_every_method_and_domain(tmp_path):
    domains = tmp_path / "domains"
    for name in ("retail", "manufacturing", "medical"):
        prepare(name, domains)
        (domains / name / "domain.yaml").write_text(
            (REPO / "domains" / name / "domain.yaml").read_text()
        )
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "results.py"),
            "--quick",
            "--domains-dir",
            str(domains),
            "--out",
            str(tmp_path / "docs"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = (tmp_path / "docs" / "results.md").read_text()
    for name in ("retail", "manufacturing", "medical"):
        assert f"### {name}" in report and (tmp_path / "docs" / f"results-{name}.png").exists()
    for method in (
        "zero-shot",
        "linear-probe",
        "full-ft",
        "coop",
        "vpt",
        "maple",
        "mpt",
        "mpt no gate",
    ):
        assert f"| {method} |" in report
