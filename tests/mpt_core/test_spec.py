"""The tuning spec: built once, carried as data, read back the same, applied by a trial."""

from __future__ import annotations

import json

import pytest

from mpt_core import TASKS, TrainConfig, TuneSpec, tiny_backbone
from mpt_core.errors import ConfigError, UnknownNameError
from mpt_core.spec import BackboneChoice
from mpt_core.training.search import SearchSpec

from .synthetic import examples, make_task


def spec(**changes) -> TuneSpec:
    fields = {
        "task": "classification",
        "task_options": make_task("classification").to_dict(),
        "preset": "mpt",
        "overrides": {"text_tokens": 2},
        "train": TrainConfig(epochs=3, lr=4e-3, progress=False),
        "search": SearchSpec.from_dict({"trials": 3}, "classification"),
        "backbone": BackboneChoice("hf-clip", "tiny"),
    }
    return TuneSpec(**{**fields, **changes})


@pytest.mark.parametrize("task", TASKS.names())
def test_every_task_s_spec_round_trips_through_json_with_the_same_key(task):
    original = spec(task=task, task_options=make_task(task).to_dict(), overrides={})
    again = TuneSpec.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original and again.key() == original.key()
    assert again.primary_metric == TASKS.get(task).primary_metric
    assert again.build_task().to_dict() == make_task(task).to_dict()


def test_the_key_changes_with_anything_that_decides_the_result():
    base = spec()
    assert spec().key() == base.key()
    for changed in (
        spec(preset="coop", overrides={}),
        spec(train=TrainConfig(epochs=4, lr=4e-3, progress=False)),
        spec(search=None),
        spec(primary_metric="macro_f1"),
        spec(backbone=BackboneChoice("hf-clip", "other")),
    ):
        assert changed.key() != base.key()


def test_a_trial_gives_a_copy_with_its_knobs_and_no_search_left():
    backbone = tiny_backbone("hf-clip")
    base = spec()
    trial = base.with_trial({"lr": 1e-2, "epochs": 2, "tokens": 3}, backbone.slots)
    assert trial.search is None and base.search is not None
    assert (trial.train.lr, trial.train.epochs) == (1e-2, 2)
    assert trial.overrides["text_tokens"] == 3 and trial.overrides["image_tokens"] == 3
    model = trial.build(backbone)
    assert model.config.text_tokens == 3 and model.task.name == "classification"
    assert len(model.predict(examples("classification", 1))) == 3


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"task": "clasification"}, UnknownNameError, "unknown task 'clasification'"),
        ({"preset": "nope"}, UnknownNameError, "unknown prompt preset 'nope'"),
        ({"overrides": {"text_tokenz": 2}}, ConfigError, r"unknown prompt config field\(s\)"),
        ({"primary_metric": "bleu4"}, ConfigError, "'bleu4' is not reported by task"),
        ({"task_options": {"class_names": ["one"]}}, ConfigError, "at least 2 class names"),
        ({"version": 99}, ConfigError, "tuning spec version 99"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(changes, error, message):
    with pytest.raises(error, match=message):
        spec(**changes)


def test_reading_a_spec_with_an_unknown_field_names_it():
    data = spec().to_dict() | {"tunning": {}}
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['tunning'\]"):
        TuneSpec.from_dict(data)
