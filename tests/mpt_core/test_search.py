"""Search helpers: applying a trial, k-fold splits, selection, the tuning.search block."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from mpt_core import ConfigError, TrainConfig, build_prompts, evaluate, tiny_backbone
from mpt_core.prompts import preset_config
from mpt_core.tasks import ClassificationTask
from mpt_core.training import folds as folds_module
from mpt_core.training import trainer
from mpt_core.training.folds import kfold_splits
from mpt_core.training.search import (
    KNOBS,
    SearchSpec,
    TrialResult,
    apply_trial,
    run_trial,
    search,
    select_best,
)

from .synthetic import examples, make_task

SHIPPED = tiny_backbone("shipped")
CLIP = tiny_backbone("hf-clip")


def test_a_trial_sets_train_and_prompt_knobs_and_aliases():
    base = TrainConfig(lr=2e-3, epochs=15, progress=False)
    preset, prompt, config = apply_trial(
        "mpt",
        {"fusion_width": 32},
        base,
        {"lr": 5e-3, "epochs": 30.0, "depth": 2, "tokens": 2, "residual_ratio": 0.5},
        CLIP.slots,
    )
    assert preset == "mpt" and (config.lr, config.epochs) == (5e-3, 30)
    assert isinstance(config.epochs, int) and not config.progress  # the rest is kept
    assert prompt == {
        "fusion_width": 32,
        "text_depth": 2,
        "vision_depth": 2,
        "text_tokens": 2,
        "vision_tokens": 2,
        "image_tokens": 2,
        "image_residual": 0.5,
    }
    assert base.lr == 2e-3  # the input config is not changed
    preset_config(preset, CLIP.slots, **prompt)  # buildable


def test_depth_is_capped_at_each_towers_slots_and_skips_towers_without_prompts():
    _, prompt, _ = apply_trial("mpt", {}, TrainConfig(), {"depth": 3}, SHIPPED.slots)
    assert prompt == {"text_depth": 2, "vision_depth": 1}  # tiny BERT: 2 layers; CNN: 1 slot
    _, prompt, _ = apply_trial("coop", {}, TrainConfig(), {"depth": 1}, SHIPPED.slots)
    assert prompt == {"text_depth": 1}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"learning_rate": 1e-3}, "unknown search knob 'learning_rate'; known: .*lr"),
        ({"lr": 0.0}, r"lr=0.0: allowed range 1e-06..1.0"),
        ({"epochs": 2.5}, "epochs=2.5: must be a whole number"),
        ({"fusion": "yes"}, "fusion='yes': must be true or false"),
        ({"depth": "deep"}, "depth='deep': must be a number"),
        ({"fusion_width": 30}, "invalid prompt config: fusion_width=30 is not divisible"),
        ({"batch_size": 0}, r"batch_size=0: allowed range 1..4096"),
    ],
)
def test_bad_trials_name_the_knob_the_value_and_the_fix(params, message):
    with pytest.raises(ConfigError, match=message):
        apply_trial("mpt", {}, TrainConfig(), params, CLIP.slots)


def test_kfold_is_stratified_deterministic_and_keeps_the_few_shot_regime():
    train, val = examples("classification", 2), examples("classification", 4, seed=1)
    contract = make_task("classification").contract
    folds = kfold_splits(train, val, k=3, seed=0, contract=contract)
    assert folds == kfold_splits(train, val, k=3, seed=0, contract=contract)
    assert folds != kfold_splits(train, val, k=3, seed=1, contract=contract)

    def target_key(example):
        return folds_module.target_key(example, contract)

    pool = [*train, *val]
    seen = []
    for fold_train, fold_val in folds:
        assert Counter(map(target_key, fold_train)) == Counter(map(target_key, train))
        assert set(map(id, fold_train)).isdisjoint(map(id, fold_val))
        assert set(map(target_key, fold_val)) == set(map(target_key, pool))  # every class
        seen += fold_val
    assert sorted(map(id, seen)) == sorted(map(id, pool))  # each example validates once
    everything = kfold_splits(train, val, k=3, keep_train_size=False, contract=contract)
    assert all(len(t) + len(v) == len(pool) for t, v in everything)
    with pytest.raises(ConfigError, match="k >= 2"):
        kfold_splits(train, val, k=1, contract=contract)


def test_kfold_spreads_one_example_targets_over_every_fold():
    """Retrieval: every caption is its own target; the folds still split the pool evenly
    (not everything into the first fold, leaving it nothing to train on)."""
    pool = [*examples("retrieval", 4), *examples("retrieval", 2, seed=1)]
    pool = [e.replace(caption=f"{e.caption}, number {i}") for i, e in enumerate(pool)]
    train, val = pool[:12], pool[12:]
    contract = make_task("retrieval").contract
    assert len(pool) == 18 and len({folds_module.target_key(e, contract) for e in pool}) == 18
    folds = kfold_splits(train, val, k=3, keep_train_size=False, contract=contract)
    assert [(len(t), len(v)) for t, v in folds] == [(12, 6)] * 3


def test_selection_is_the_mean_over_folds_ties_to_the_earlier_trial():
    trials = [
        TrialResult({}, [0.5, 0.75]),
        TrialResult({"lr": 1e-2}, [0.75, 0.5]),  # the same mean: a tie with the first
        TrialResult({"lr": 1e-3}, [0.6, 0.6]),
    ]
    assert select_best(trials) is trials[0]
    trials.append(TrialResult({"lr": 5e-3}, [0.7, 0.7]))
    assert select_best(trials).params == {"lr": 5e-3}
    with pytest.raises(ConfigError):
        select_best([])


def test_search_block_defaults_validation_and_fold_rule():
    spec = SearchSpec.from_dict({"trials": 4}, "classification")
    assert spec.space == ClassificationTask.default_search["space"]
    assert spec.fold_count(40) == 3 and spec.fold_count(200) == 1
    params = spec.trial_params()
    assert len(params) == 4 and params[0] == {} and params == spec.trial_params()
    assert all(set(p) <= set(KNOBS) for p in params)
    assert all(1e-3 <= p["lr"] <= 1e-2 and p["text_tokens"] in (0, 4) for p in params[1:])
    for block, message in [
        ({"trails": 3}, r"unknown fields \['trails'\]"),
        ({"trials": -1}, "trials=-1: a whole number in 0..256"),
        ({"folds": 0}, "folds=0: 'auto', 1"),
        ({"space": {"lr": [1e-3, 1e-2]}}, "lr: .* is not a distribution"),
        ({"space": {"lr": {"loguniform": [0, 1e-2]}}}, r"lr=0.0: allowed range"),
        ({"space": {"epochs": {"choice": []}}}, "choice needs at least one value"),
        ({"space": {"colour": {"choice": ["red"]}}}, "unknown search knob 'colour'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            SearchSpec.from_dict(block, "classification")


def test_search_selects_on_validation_and_reports_every_trial(monkeypatch):
    """The chosen trial is the one whose fitted prompts score best on the validation folds,
    as evaluated here outside the search; fit only ever sees train + val examples."""
    train, val = examples("classification", 2), examples("classification", 2, seed=1)
    test = examples("classification", 2, seed=2)
    spec = SearchSpec.from_dict(
        {"trials": 3, "folds": 2, "space": {"lr": {"choice": [1e-4, 5e-2]}}}, "classification"
    )
    real_fit, fits = trainer.fit, []

    def recording_fit(model, fold_train, fold_val, config, **kwargs):
        result = real_fit(model, fold_train, fold_val, config, **kwargs)
        seen = {id(e) for e in [*fold_train, *fold_val]}
        fits.append((seen, evaluate(model, fold_val)["accuracy"]))  # the restored best prompts
        return result

    monkeypatch.setattr(trainer, "fit", recording_fit)
    best, results = search(
        SHIPPED,
        make_task("classification"),
        "mpt",
        {},
        TrainConfig(epochs=2, batch_size=4, progress=False),
        spec,
        train,
        val,
    )
    assert len(results) == 3 and all(len(r.fold_values) == 2 for r in results)
    assert [r.params for r in results] == spec.trial_params() and results[0].params == {}
    assert len(fits) == 3 * 2  # trial by trial, fold by fold
    pool, held_out = {id(e) for e in [*train, *val]}, {id(e) for e in test}
    assert all(seen <= pool and not seen & held_out for seen, _ in fits)
    means = [statistics.mean(value for _, value in fits[2 * i : 2 * i + 2]) for i in range(3)]
    assert len(set(means)) > 1  # the trials differ: the choice below is not a tie
    chosen = means.index(max(means))  # the first of the best: ties go to the earlier trial
    assert best is results[chosen] and best.params == spec.trial_params()[chosen]


@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("vpt", {"vision_tokens": 0, "text_tokens": 2}),  # stems cached, embeddings needed
        ("coop", {"vision_tokens": 2}),  # embeddings cached, stems needed
    ],
)
def test_a_trial_uses_the_prepared_images_only_when_they_fit_its_model(preset, params):
    """`prepare` gives what the untried config's model prepares; a trial that turns the
    visual prompt on or off prepares its own, with the result of no cache at all."""
    task = make_task("classification")
    train, val = examples("classification", 2), examples("classification", 1, seed=1)
    base = build_prompts(SHIPPED, preset, task)
    pool = [*train, *val]
    stored = base.prepare_images([e.image for e in pool])
    row = {id(e): i for i, e in enumerate(pool)}
    calls = []

    def prepare(model, subset):
        calls.append(len(subset))
        return stored[[row[id(e)] for e in subset]]

    config = TrainConfig(epochs=2, batch_size=4, progress=False)
    folds = [(train, val)]
    same = run_trial(SHIPPED, task, preset, {}, config, {"lr": 1e-2}, folds, prepare)
    assert calls == [len(train), len(val)]  # a trial like the base config reads the cache
    assert (
        same.fold_values
        == run_trial(SHIPPED, task, preset, {}, config, {"lr": 1e-2}, folds).fold_values
    )
    calls.clear()
    flipped = run_trial(SHIPPED, task, preset, {}, config, params, folds, prepare)
    assert calls == []
    assert (
        flipped.fold_values
        == run_trial(SHIPPED, task, preset, {}, config, params, folds).fold_values
    )


def test_a_trial_of_a_refit_domain_is_scored_on_held_out_images():
    """With final="refit" the final fit trains on val too; a search trial still fits on its
    fold's train and scores on its fold's val ("best"), or selection would score images
    the prompts were trained on."""
    task = make_task("classification")
    train, val = examples("classification", 3), examples("classification", 2, seed=1)
    folds = [(train, val)]
    scored = {}
    for final in ("best", "refit"):
        config = TrainConfig(epochs=2, batch_size=4, final=final, progress=False)
        fitted = []
        result = run_trial(
            SHIPPED,
            task,
            "mpt",
            {},
            config,
            {},
            folds,
            on_fitted=lambda *a, out=fitted: out.append(a),
        )
        scored[final] = (result.fold_values, fitted[0][2].epochs_run)
    assert scored["refit"] == scored["best"]
    assert scored["best"][1] == 2  # one fit of 2 epochs, not three folds of it
