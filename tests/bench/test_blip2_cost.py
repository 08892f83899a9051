"""`bench/blip2_cost.py` on a tiny configuration: counts and a traced step per preset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mpt_core import build_prompts
from mpt_core.backbones import hf_blip2
from mpt_core.support import family_presets
from mpt_core.tasks import CaptioningTask

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a subprocess that imports torch and transformers


def test_blip2_cost_counts_parameters_exactly_and_traces_every_preset(tmp_path):
    hf_blip2.tiny_config().to_json_file(tmp_path / "config.json")
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "blip2_cost.py"),
            "--config",
            str(tmp_path / "config.json"),
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tiny = hf_blip2.tiny()
    total = next(x for x in out.stdout.splitlines() if x.startswith("total "))
    assert f" {tiny.num_parameters():,} " in total
    for preset in family_presets("hf-blip2"):
        trainable = build_prompts(tiny, preset, CaptioningTask()).num_trainable()
        line = next(x for x in out.stdout.splitlines() if x.startswith(preset + " "))
        assert f"{trainable:,}" in line and "GiB" in line
