"""The compared methods of `bench/results.py` stand alone: importable without the runner,
and an ablation that changes nothing on a backbone is skipped there, not run twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_the_feature_cache_serves_any_subset_of_a_split_from_rows_computed_once(
    bench_on_path, monkeypatch
):
    from types import SimpleNamespace

    from methods import features
    from PIL import Image

    from mpt_core import Example, build_prompts
    from mpt_core.tasks.classification import ClassificationTask

    monkeypatch.setattr(features, "_CACHE", {})
    model = build_prompts(tiny_backbone("hf-clip"), "coop", ClassificationTask(["a", "b"]))
    computed = []
    prepare = model.prepare_images
    monkeypatch.setattr(
        model, "prepare_images", lambda images: computed.append(len(images)) or prepare(images)
    )
    split = [Example(Image.new("RGB", (8, 8), (40 * i, 0, 0)), label="ab"[i % 2]) for i in range(6)]
    domain = SimpleNamespace(name="d")
    subset = [split[4], split[1]]
    first = features.cached_prepare(model, domain, "train", subset)
    whole = features.cached_prepare(model, domain, "train", split)
    again = features.cached_prepare(model, domain, "train", [split[1], split[4], split[0]])
    assert computed == [2, 4]  # each example once: the subset, then the rest of the split
    expected = prepare([e.image for e in split])
    assert torch.allclose(whole, expected, atol=1e-5)
    assert torch.allclose(first, expected[[4, 1]], atol=1e-5)
    assert torch.allclose(again, expected[[1, 4, 0]], atol=1e-5)
    whole_val = features.cached_prepare(model, domain, "val", split)
    assert features.cached_prepare(model, domain, "val", split) is whole_val  # no copy


@pytest.mark.parametrize("task_name", ["classification", "vqa", "retrieval"])
def test_the_zero_shot_initialised_probe_starts_from_the_zero_shot_prediction(
    bench_on_path, task_name
):
    from methods.data import group_key
    from methods.linear_probe import _zero_shot_scores

    from mpt_core import build_prompts

    from ..mpt_core.synthetic import examples, make_task

    task = make_task(task_name)
    rows = examples(task_name, 3)
    base = build_prompts(tiny_backbone("hf-clip"), "coop", task, seed=0)
    prepared = base.prepare_images([e.image for e in rows])
    base.calibrate_center(prepared)
    classes = sorted({group_key(task, e) for e in rows})
    prior = _zero_shot_scores(base, prepared, rows, task, {c: i for i, c in enumerate(classes)})
    with torch.no_grad():
        predicted = task.predict(base, base.embed_prepared(prepared), rows)
    target = task.contract.target
    assert [classes[i] for i in prior.argmax(1).tolist()] == [
        group_key(task, e.replace(**{target: p})) for e, p in zip(rows, predicted, strict=True)
    ]
    assert torch.allclose(prior.exp().sum(1), torch.ones(len(rows)), atol=1e-3)


def test_the_noise_line_names_the_methods_the_test_split_cannot_tell_apart(bench_on_path):
    """At p = 0.8 on 400 test examples one binomial standard error is 0.02: a method 0.015
    behind the best is named with it, one 0.03 behind is not."""
    from methods.base import Run
    from results import noise_line

    runs = {
        name: [Run(value, 0, 0.0, 0.0), Run(value, 0, 0.0, 0.0)]
        for name, value in [("probe", 0.8), ("mpt", 0.785), ("coop", 0.77)]
    }
    line = noise_line("accuracy", runs, 400)[0]
    assert "400 test examples" in line and "is 0.020" in line
    assert line.endswith("Within one standard error of the best: probe, mpt.")
