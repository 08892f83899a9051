"""`bench/stability.py` runs end to end on a small digits domain and a tiny backbone, and
its variants differ from the data by exactly one image (CI smoke test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a subprocess that imports torch


def test_the_stability_bench_prints_a_row_per_final_mode(tmp_path):
    args = ["--backbone", "hf-clip:tiny", "--per-class", "3,2,2", "--epochs", "2"]
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "stability.py"), *args, "--variants", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| best", "| swa"], out.stdout
    assert all(row.split(" | ")[1] == "4" for row in rows[1:])  # 2 seeds x 2 variants
    assert "torch threads: 1" in out.stdout
    assert "command: OMP_NUM_THREADS=1 python bench/stability.py --backbone" in out.stdout
    assert not list(tmp_path.glob("mpt-stability-*"))  # its temp folder is removed


def test_each_variant_changes_exactly_one_training_image(monkeypatch):
    from PIL import Image

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from stability import variant

    from mpt_core import Example

    train = []
    for i in range(20):
        image = Image.new("RGB", (4, 4), (i, 0, 0))
        image.putpixel((0, 0), (i, 255, 255))  # not symmetric: mirroring it changes it
        train.append(Example(image, label="a"))
    assert all(a is b for a, b in zip(train, variant(train, 0), strict=True))
    changed = {
        number: [
            i
            for i, (a, b) in enumerate(zip(train, variant(train, number), strict=True))
            if a is not b
        ]
        for number in (1, 2, 3)
    }
    assert all(len(indices) == 1 for indices in changed.values()), changed
    for number, (index,) in changed.items():
        assert variant(train, number)[index].image.tobytes() != train[index].image.tobytes()
