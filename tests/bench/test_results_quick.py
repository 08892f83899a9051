"""`bench/results.py --quick` runs every method on the three demo domains, on the shipped
backbone and on a tiny random hf-clip (the production family's code path): CI smoke test."""

from __future__ import annotations

import pytest

from mpt_core import load_backbone

from .bench_runs import REPO, prepared_domains, run_bench

pytestmark = pytest.mark.slow


def test_quick_results_cover_every_method_and_domain(tmp_path, monkeypatch):
    domains = prepared_domains(tmp_path, "retail", "manufacturing", "medical")
    out = run_bench(
        "results.py",
        "--quick",
        "--domains-dir",
        str(domains),
        "--out",
        str(tmp_path / "docs"),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = (tmp_path / "docs" / "results.md").read_text()
    shipped, clip = report.split("## Backbone hf-clip:tiny")
    assert "## Backbone shipped:" in shipped
    for name in ("retail", "manufacturing", "medical"):
        for section, suffix in ((shipped, ""), (clip, "-hf-clip-tiny")):
            assert f"### {name}" in section
            assert (tmp_path / "docs" / f"results-{name}{suffix}.png").exists()
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from methods.registry import methods, redundant

    for section, family, name in ((shipped, "shipped", None), (clip, "hf-clip", "tiny")):
        backbone = load_backbone(family, name)
        for method, run in methods(quick=True).items():
            rows = 0 if redundant(run, backbone) else 3  # a row per domain, unless it repeats
            assert section.count(f"| {method} |") == rows, (family, method)
    assert "the trial chosen on validation (2 trials)" in report
