"""`bench/label_efficiency.py --quick` runs every compared method at K = 1 and 2 on the three
demo domains (a tiny random hf-clip), writes its report and plots where it is told, and
leaves nothing else behind (CI smoke test); a draw holds K training images of every class."""

from __future__ import annotations

from pathlib import Path

import pytest

from .bench_runs import REPO, prepared_domains, run_bench

pytestmark = pytest.mark.slow  # prepares the demo domains, a subprocess that imports torch
DOMAINS = ("retail", "manufacturing", "medical")


def test_quick_label_efficiency_reports_every_method_and_k(tmp_path):
    domains = prepared_domains(tmp_path, *DOMAINS)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = run_bench(
        "label_efficiency.py",
        "--quick",
        "--domains-dir",
        str(domains),
        "--out",
        str(tmp_path / "docs"),
        timeout=300,
        OMP_NUM_THREADS="1",
        TMPDIR=str(scratch),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = (tmp_path / "docs" / "label-efficiency.md").read_text()
    assert report in out.stdout  # the run prints what it writes
    main = report.split("| domain | K | method |")[1].split("\n\n")[0]
    rows = [line.split(" | ")[:3] for line in main.splitlines()[2:]]
    probes = ("linear-probe", "linear-probe (zs-init)")
    for name in DOMAINS:
        for k in ("1", "2"):
            methods = [m for d, kk, m in rows if d == f"| {name}" and kk == k]
            assert len([m for m in methods if m in probes]) == 1, (name, k, methods)
            assert [m for m in methods if m not in probes] == [
                "zero-shot",
                "clip-adapter",
                "coop",
                "mpt",
            ], (name, k, methods)
    assert "torch threads: 1" in report
    assert (
        f"command: OMP_NUM_THREADS=1 python bench/label_efficiency.py --quick --domains-dir "
        f"{domains} --out {tmp_path / 'docs'}" in report
    )
    written = {p.name for p in (tmp_path / "docs").iterdir()}
    assert written == {"label-efficiency.md", *(f"label-efficiency-{n}.png" for n in DOMAINS)}
    after = sorted(
        p.relative_to(tmp_path) for p in tmp_path.rglob("*") if not p.is_relative_to(scratch)
    )
    assert after == sorted([*before, Path("docs"), *(Path("docs") / n for n in written)])
    # nothing left in the temp folder either, but torch's compile cache, which loading any
    # transformers model creates (`torchinductor_<user>`)
    assert not [p for p in scratch.iterdir() if not p.name.startswith("torchinductor_")]


def test_a_draw_holds_k_images_of_every_class_seeded(monkeypatch):
    from PIL import Image

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from label_efficiency import draw

    from mpt_core import Example
    from mpt_core.tasks.classification import ClassificationTask

    task = ClassificationTask(["a", "b", "c"])
    train = [
        Example(Image.new("RGB", (4, 4), (i, 0, 0)), label=label)
        for i, label in enumerate("abc" * 5)
    ]
    first = draw(task, train, 2, 0)
    assert sorted(e.label for e in first) == ["a", "a", "b", "b", "c", "c"]
    assert [train.index(e) for e in first] == sorted(train.index(e) for e in first)
    assert [id(e) for e in draw(task, train, 2, 0)] == [id(e) for e in first]
    assert any(
        [id(e) for e in draw(task, train, 2, n)] != [id(e) for e in first] for n in (1, 2, 3)
    )
