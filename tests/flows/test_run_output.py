"""What a user sees from `mpt run` in a terminal-less process: a failing domain's reason
with its row, no traceback for failures the flow handles, no Ray or Prefect noise."""

from __future__ import annotations

import pytest

from .domain_factory import read_rows, write_rows
from .retrain_fixtures import mpt_run, tiny_repo

pytestmark = pytest.mark.slow  # a local Ray and Prefect's ephemeral server in a subprocess


def test_a_run_with_a_bad_domain_prints_reasons_not_tracebacks(tmp_path):
    from flows.domains import get_domain

    domains_dir = tiny_repo(tmp_path / "repo", tasks=("classification", "vqa"))
    broken = get_domain(domains_dir, "test-vqa")
    rows = read_rows(broken)
    rows[2]["answer"] = "maybe"
    write_rows(broken, rows)
    out, text = mpt_run(tmp_path, domains_dir)
    assert out.returncode == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "Token authentication" not in text and "telemetry" not in text.lower(), text[-3000:]
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("test-vqa")]
    assert "invalid" in line and "row 3" in line and "'maybe'" in line
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("test-classification")]
    assert "registered" in line


def test_an_embedded_prefect_that_does_not_start_in_time_is_one_clear_error(tmp_path):
    """A real fault: the embedded server gets 1 s to migrate a fresh database and start."""
    from registry import open_registry
    from registry.settings import RegistrySettings

    domains_dir = tiny_repo(tmp_path / "repo", tasks=("classification",))
    out, text = mpt_run(tmp_path, domains_dir, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    assert out.returncode == 2, text[-3000:]
    assert "Traceback" not in text and "unexpected" not in text, text[-3000:]
    assert "Prefect's embedded server did not start within 1 s" in out.stderr
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in out.stderr
    home = tmp_path / "home"
    registry = open_registry(RegistrySettings(home=home, database_url=None, artifact_store=None))
    assert registry.list_versions("test-classification") == []
    assert not any((home / "artifacts").rglob("*.safetensors"))
