"""`bench/new_classes.py`: the base / new split of a domain's classes, and its `--quick` run
end to end on the retail demo data (CI smoke test)."""

from __future__ import annotations

import pytest

from flows.domains import discover

from .bench_runs import REPO, prepared_domains, run_bench

ROWS = ["zero-shot", "coop", "maple", "mpt", "linear-probe"]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import new_classes

    return new_classes


def test_the_split_gives_each_half_a_task_over_its_own_class_names(bench):
    retail = discover(REPO / "domains", ["retail"]).domains["retail"]
    labels = list(retail.config.labels)
    base, new = bench.split_domain(retail, labels[:5])
    assert base.config.build_task().class_names == labels[:5]
    assert new.config.build_task().class_names == labels[5:]
    assert base.config.template == new.config.template == retail.config.template
    assert {base.name, new.name, retail.name} == {"retail[base]", "retail[new]", "retail"}
    assert base.root == new.root == retail.root


def test_no_prompt_preset_has_parameters_that_depend_on_the_class_list(bench):
    from methods.presets import PromptMethod

    from mpt_core import tiny_backbone
    from mpt_core.prompts import PRESETS

    retail = discover(REPO / "domains", ["retail"]).domains["retail"]
    halves = bench.split_domain(retail, list(retail.config.labels)[:5])
    backbone = tiny_backbone("hf-clip")
    for preset in PRESETS.names():
        assert bench.class_dependent_parameters(backbone, PromptMethod(preset), halves) == 0


def test_a_per_class_parameter_is_counted(bench, monkeypatch):
    import torch
    from methods.presets import PromptMethod

    from mpt_core import build_prompts, tiny_backbone

    def with_class_context(backbone, preset, task, **overrides):  # CoOp's class-specific context
        model = build_prompts(backbone, preset, task, **overrides)
        model.prompts.class_context = torch.nn.Parameter(torch.zeros(len(task.class_names), 3))
        return model

    monkeypatch.setattr(bench, "build_prompts", with_class_context)
    retail = discover(REPO / "domains", ["retail"]).domains["retail"]
    labels = list(retail.config.labels)
    halves = bench.split_domain(retail, labels[:4])  # 4 base, 6 new classes
    count = bench.class_dependent_parameters(tiny_backbone("hf-clip"), PromptMethod("coop"), halves)
    assert count == 4 * 3


def test_the_harmonic_mean_is_per_seed_and_absent_for_a_closed_set_method(bench):
    scores = bench.Scores(base=[0.8, 0.6], new=[0.4, 0.0])
    assert scores.harmonic == pytest.approx([2 * 0.8 * 0.4 / 1.2, 0.0])
    assert bench.Scores(base=[0.7], new=[None]).harmonic == []


@pytest.mark.slow  # prepares the retail data and runs the script in a subprocess
def test_quick_run_writes_every_row_the_threads_and_the_command(tmp_path):
    domains = prepared_domains(tmp_path, "retail")
    out, scratch, cwd = tmp_path / "out", tmp_path / "scratch", tmp_path / "cwd"
    scratch.mkdir()
    cwd.mkdir()
    args = ["--quick", "--domains-dir", str(domains), "--out", str(out)]
    done = run_bench(
        "new_classes.py", *args, timeout=300, cwd=cwd, OMP_NUM_THREADS="1", TMPDIR=str(scratch)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["new-classes.md"]
    # nothing left behind (torch makes its own inductor cache folder when the backbone loads)
    assert not [p for p in scratch.iterdir() if not p.name.startswith("torchinductor_")]
    assert not list(cwd.iterdir())
    report = (out / "new-classes.md").read_text()
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ")][1:]
    assert [row[0].removeprefix("| ") for row in rows] == ROWS
    for row in rows[:-1]:  # base, new and harmonic mean are numbers for the open-vocabulary rows
        assert all(0.0 <= float(cell.split(" ± ")[0]) <= 1.0 for cell in row[1:4]), row
    probe = rows[-1]
    assert 0.0 <= float(probe[1].split(" ± ")[0]) <= 1.0
    assert probe[2].startswith("n/a") and probe[3] == "n/a"
    assert "Base classes: T-shirt/top, trouser, pullover, dress, coat." in report
    assert "Torch threads: 1." in report
    assert f"Command: `OMP_NUM_THREADS=1 python bench/new_classes.py {' '.join(args)}`" in report
