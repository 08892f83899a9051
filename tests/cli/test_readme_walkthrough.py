"""The README's registry walk-through, run as written: its commands are read from the README
itself, so a changed README changes this test. They run in a folder that holds the repo's
`domains/retail/domain.yaml` (as the repo root does), with a fresh platform home."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INTRO = "A walk-through with the CLI"


def walkthrough() -> list[str]:
    """The command lines of the first bash block after the walk-through's introduction."""
    readme = (REPO / "README.md").read_text()
    start = readme.index(INTRO)
    block = re.search(r"```bash\n(.*?)```", readme[start:], flags=re.S)
    assert block, f"no bash block after {INTRO!r} in README.md"
    return [line for line in block.group(1).splitlines() if line.strip()]


def expected_to_fail(line: str) -> bool:
    """The README marks a command that must be refused with a `# refused` comment."""
    return bool(re.search(r"#\s*refused", line))


@pytest.mark.slow
def test_the_readme_registry_walkthrough_runs_as_written(tmp_path):
    (tmp_path / "domains").mkdir()
    shutil.copytree(REPO / "domains" / "retail", tmp_path / "domains" / "retail")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    bin_dir = tmp_path / "bin"  # `mpt` and `python` as the README's reader has them
    bin_dir.mkdir()
    for name, args in (("mpt", '-m cli "$@"'), ("python", '"$@"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {args}\n')
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "MPT_HOME": str(tmp_path / "home"),
    }
    lines = walkthrough()
    assert any(line.startswith("mpt registry register") for line in lines)
    for line in lines:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", line],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        shown = f"$ {line}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, shown
        if expected_to_fail(line):
            assert done.returncode != 0, shown
        else:
            assert done.returncode == 0, shown
