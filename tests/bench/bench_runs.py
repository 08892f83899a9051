"""What the benches' smoke tests share: the demo domains prepared in a temp folder as `mpt
domain prepare` writes them (with the repo's own domain.yaml), and a bench script run in a
subprocess on this checkout, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def prepared_domains(root: Path, *names: str) -> Path:
    """`root/domains` holding each named demo domain's data and the repo's domain.yaml."""
    from flows.domains.prepare import prepare

    domains = root / "domains"
    for name in names:
        prepare(name, domains)
        (domains / name / "domain.yaml").write_text(
            (REPO / "domains" / name / "domain.yaml").read_text()
        )
    return domains


def run_bench(
    script: str, *args: str, timeout: int, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python bench/<script> ARGS` with this checkout first on the path (not an installed
    copy) and `env` added to the environment."""
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )
