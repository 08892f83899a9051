"""`mpt run` against a real Ray head node started with `ray start --head` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .retrain_fixtures import tiny_repo

pytestmark = pytest.mark.slow


def test_mpt_run_tunes_on_an_existing_cluster(ray_head, tmp_path):
    domains_dir = tiny_repo(tmp_path / "repo", tasks=("classification",))
    env = {
        **os.environ,
        **ray_head.env,
        "MPT_HOME": str(tmp_path / "home"),
        "MPT_DOMAINS_DIR": str(domains_dir),
        "MPT_RAY_ADDRESS": ray_head.address,
    }
    out = subprocess.run(  # `mpt run` as a user starts it (`python -m cli` is `mpt`)
        [sys.executable, "-m", "cli", "run", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (result,) = json.loads(out.stdout[out.stdout.index("[") :])
    assert result["status"] == "registered" and result["request_id"] == 1
