"""The compared methods of `bench/results.py` stand alone: importable without the runner,
and an ablation that changes nothing on a backbone is skipped there, not run twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpt_core import tiny_backbone
from mpt_core.prompts import preset_config

REPO = Path(__file__).resolve().parents[2]


def test_the_methods_load_without_the_scripts_and_the_scripts_without_the_runner():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import methods.registry; "
        "assert not {'results', 'step_cost', 'screen'} & set(sys.modules), 'methods'; "
        "import step_cost, screen; assert 'results' not in sys.modules, 'scripts'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "bench")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # this checkout, not an installed copy
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))


def test_an_ablation_equal_to_its_preset_is_redundant_and_a_preset_never_is(bench_on_path):
    from methods.presets import PromptMethod
    from methods.registry import redundant

    backbone = tiny_backbone("hf-clip")
    same = preset_config("mpt", backbone.slots).fusion
    assert redundant(PromptMethod("mpt", {"fusion": same}), backbone)
    assert not redundant(PromptMethod("mpt", {"fusion": not same}), backbone)
    assert not redundant(PromptMethod("mpt"), backbone)
    assert redundant(PromptMethod("mpt", {"image_residual": -1.0}), backbone)  # not buildable
