"""Per-domain search: trials on Ray Tune over features computed once, selection on
validation only, the chosen config tuned and recorded in the version's lineage."""

from __future__ import annotations

import dataclasses

import pytest

from flows.domains.schema import DomainConfig
from flows.search import run_search_trial, search_data, search_on_ray
from mpt_core import tiny_backbone
from mpt_core.errors import ConfigError
from mpt_core.training.search import SearchSpec

from .retrain_fixtures import local_ray, pushed_job

SEARCH = {
    "trials": 3,
    "folds": 2,
    "seed": 1,
    "space": {"lr": {"choice": [0.5, 0.05]}, "depth": {"choice": [1, 2]}},
}


def search_job(tmp_path, **search):
    job = pushed_job(tmp_path / "repo", "classification", "searched", epochs=2)
    spec = SearchSpec.from_dict({**SEARCH, **search}, job.spec.task)
    return dataclasses.replace(job, spec=dataclasses.replace(job.spec, search=spec))


def test_the_search_block_is_validated_with_the_field_and_the_fix():
    base = {"name": "d", "task": "classification", "labels": ["a", "b"]}
    for search, expected in (
        ({"trials": -1}, "tuning.search.trials=-1"),
        ({"space": {"learning_rate": {"choice": [1]}}}, "unknown search knob 'learning_rate'"),
        ({"space": {"lr": {"between": [1, 2]}}}, "is not a distribution"),
        ({"folds": 0}, "tuning.search.folds=0"),
    ):
        with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
            DomainConfig.model_validate({**base, "tuning": {"search": search}})
    config = DomainConfig.model_validate({**base, "tuning": {"search": {"trials": 2}}})
    assert isinstance(config.search_spec(), SearchSpec) and "search" not in config.train_config()
    assert (
        DomainConfig.model_validate({**base, "tuning": {"search": {"trials": 0}}}).search_spec()
        is None
    )
    with pytest.raises(ConfigError):
        SearchSpec.from_dict({"trials": "many"}, "classification")


def test_a_trial_runs_on_stored_features_and_gives_the_spec_it_applied(tmp_path, monkeypatch):
    from mpt_core.featurestore import FeatureStore

    job = search_job(tmp_path)
    data = search_data(job)
    assert data["k"] == 2 and len(data["folds"]) == 2 and len(data["examples"]) == 12
    store = FeatureStore.from_env()  # the node's store: train + val were put there once
    model = job.spec.build(tiny_backbone("shipped"))
    stored = store.lookup(model.feature_key, [store.digest(e.image) for e in data["examples"]])
    assert len(stored) == 12
    added = []
    real_add = FeatureStore.add
    monkeypatch.setattr(FeatureStore, "add", lambda *a, **k: added.append(1) or real_add(*a, **k))
    result, trial = run_search_trial(job, data, {"lr": 0.05, "depth": 1})
    assert added == []  # no image embedded again
    assert len(result.fold_values) == 2 and 0 <= result.value <= 1
    assert trial.train.lr == 0.05 and trial.overrides["text_depth"] == 1
    assert trial.search is None and job.spec.search is not None
    assert trial.train.epochs == job.spec.train.epochs and trial.task == job.spec.task


@pytest.mark.slow
def test_trials_run_on_ray_tune_and_the_best_on_validation_is_chosen(tmp_path):
    job = search_job(tmp_path)
    with local_ray(num_cpus=2):
        (outcome,) = search_on_ray([job], storage=tmp_path / "tune").values()
    assert not isinstance(outcome, str), outcome
    assert len(outcome.trials) == 3 and outcome.trials[0]["params"] == {}  # base first
    best = max(outcome.trials, key=lambda t: t["value"])
    assert outcome.lineage["value"] == best["value"] and outcome.best == outcome.lineage["chosen"]
    assert outcome.lineage["folds"] == 2 and outcome.job.spec.search is None


def test_the_chosen_trial_of_a_one_fold_search_is_not_fitted_again(tmp_path):
    """On one fold (the val split) a trial trains exactly what the final tuning would: its
    prompts are kept and reused, and equal a fresh fit bit for bit."""
    import shutil

    from flows.fitted import FittedPrompts
    from flows.worker import load_ref, run_tune_job

    from .retrain_fixtures import TINY

    job = search_job(tmp_path, folds=1)
    data = search_data(job)
    assert data["k"] == 1
    _, trial = run_search_trial(job, data, {"lr": 0.05}, keep_fit=True)
    chosen = dataclasses.replace(job, spec=trial)
    kept = list(FittedPrompts().root.glob("*.safetensors"))
    assert len(kept) == 1
    backbone = load_ref(TINY)
    reused = run_tune_job(backbone, chosen)
    shutil.rmtree(FittedPrompts().root)
    fresh = run_tune_job(backbone, chosen)
    assert reused.artifact.tensors == fresh.artifact.tensors
    assert reused.metrics == fresh.metrics and reused.history == fresh.history


def test_stored_features_change_no_trial_no_choice_and_no_metric(tmp_path, monkeypatch):
    """A search and its tuning run twice on one small domain: once computing every frozen
    feature (an empty store), once reading them all from the store. The trials' values,
    the chosen config and the final metrics are the same, bit for bit."""
    import shutil

    from flows.fitted import FittedPrompts
    from flows.worker import load_ref, run_tune_job
    from mpt_core.featurestore import FeatureStore
    from mpt_core.training.search import select_best

    from .retrain_fixtures import TINY

    job = search_job(tmp_path, folds=1)
    job = dataclasses.replace(
        job,
        spec=dataclasses.replace(
            job.spec, search=dataclasses.replace(job.spec.search, early_stopping=False)
        ),
    )
    backbone = load_ref(TINY)

    def searched_and_tuned():
        data = search_data(job)
        trials = [run_search_trial(job, data, p) for p in job.spec.search.trial_params()]
        best = select_best([result for result, _ in trials])
        chosen = next(spec for result, spec in trials if result is best)
        outcome = run_tune_job(backbone, dataclasses.replace(job, spec=chosen))
        return [r.fold_values for r, _ in trials], best.params, outcome

    cold = searched_and_tuned()
    test_images = cold[2].features["images"] - len(search_data(job)["examples"])
    assert cold[2].features["embedded"] == test_images  # the search stored train and val
    warm = searched_and_tuned()
    assert warm[2].features["embedded"] == 0
    assert cold[:2] == warm[:2]
    assert cold[2].metrics == warm[2].metrics
    assert cold[2].artifact.tensors == warm[2].artifact.tensors
    shutil.rmtree(FeatureStore.from_env().root)  # everything computed again: the same
    shutil.rmtree(FittedPrompts().root, ignore_errors=True)
    again = searched_and_tuned()
    assert again[:2] == cold[:2] and again[2].artifact.tensors == cold[2].artifact.tensors
