"""Trainer behaviour: caching, early stopping, determinism, schedule, config errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from mpt_core import (
    TASKS,
    ConfigError,
    DataError,
    TrainConfig,
    build_prompts,
    evaluate,
    fit,
    tiny_backbone,
)
from mpt_core.training.schedule import warmup_cosine

from .synthetic import examples, make_task

QUIET = {"progress": False}


def _count(monkeypatch, backbone, method: str, calls: list | None = None) -> list:
    calls = [] if calls is None else calls
    real = getattr(backbone, method)
    monkeypatch.setattr(backbone, method, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_frozen_image_tower_is_encoded_once_and_cached(monkeypatch):
    """Without visual prompts the whole image tower runs once per image, before the first
    step; with them, only the prompted part runs per step, on the cached stem."""
    train, val = examples("classification", 2), examples("classification", 1, seed=1)
    config = TrainConfig(epochs=3, batch_size=2, **QUIET)  # 3 steps per epoch
    for preset, per_step in (("coop", False), ("mpt", True)):
        backbone = tiny_backbone("hf-clip")
        model = build_prompts(backbone, preset, make_task("classification"))
        stems = _count(monkeypatch, backbone, "image_stem")
        encodes = _count(monkeypatch, backbone, "encode_image")
        _count(monkeypatch, backbone, "encode_image_tokens", encodes)  # with the generator
        result = fit(model, train, val, config)
        assert len(stems) == 2, preset  # train and val, once each, for all epochs
        if per_step:
            assert len(encodes) >= result.steps  # the prompted tower, every step
        else:
            assert len(encodes) == 2  # finished embeddings, computed once


def test_frozen_text_tower_embeds_each_text_once(monkeypatch):
    model = build_prompts(tiny_backbone("shipped"), "vpt", make_task("classification"))
    calls = []
    real = model.backbone.encode_text
    monkeypatch.setattr(
        model.backbone, "encode_text", lambda i, p=None: calls.append(1) or real(i, p)
    )
    fit(model, examples("classification", 2), config=TrainConfig(epochs=3, batch_size=2, **QUIET))
    assert len(calls) == 1


def test_same_seed_gives_identical_prompts():
    data = examples("classification", 2)
    runs = []
    for _ in range(2):
        model = build_prompts(tiny_backbone("hf-clip"), "mpt", make_task("classification"))
        fit(model, data, config=TrainConfig(epochs=2, batch_size=4, seed=5, **QUIET))
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_early_stopping_restores_the_best_epoch():
    model = build_prompts(tiny_backbone("hf-clip"), "coop", make_task("classification"))
    train, val = examples("classification", 3), examples("classification", 2, seed=1)
    states = {}

    def snapshot(row):
        states[row["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    config = TrainConfig(epochs=30, lr=0.5, patience=2, warmup_ratio=0.0, **QUIET)
    result = fit(model, train, val, config, on_epoch=snapshot)
    values = [row["val_accuracy"] for row in result.history]
    assert result.best_value == max(values) and result.best_epoch == values.index(max(values)) + 1
    # this setting peaks early and stops: the last epoch's prompts are not the best ones
    assert result.best_epoch < result.epochs_run < 30
    last = states[result.epochs_run]
    assert any(not torch.equal(last[k], v) for k, v in states[result.best_epoch].items())
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[result.best_epoch][key]), key
    assert evaluate(model, val)["accuracy"] == pytest.approx(result.best_value)
    assert {"epoch", "step", "train_loss", "lr", "val_accuracy"} <= set(result.history[0])


def test_warmup_then_cosine_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:])) and lrs[-1] < 0.05


def test_bad_train_config_and_empty_data_are_clear_errors():
    with pytest.raises(ConfigError, match="epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"final='ema'.*best\|swa"):
        TrainConfig(final="ema")
    model = build_prompts(tiny_backbone("hf-clip"), "coop", make_task("classification"))
    with pytest.raises(DataError, match="empty"):
        fit(model, [], config=TrainConfig(**QUIET))


def _swa_fit(seed: int = 5, states: list | None = None):
    """A 6-epoch fit with final="swa"; `states` gets each epoch's state dict."""
    model = build_prompts(tiny_backbone("hf-clip"), "mpt", make_task("classification"))
    train, val = examples("classification", 3), examples("classification", 2, seed=1)
    config = TrainConfig(epochs=6, batch_size=4, lr=0.05, seed=seed, final="swa", **QUIET)

    def snapshot(row):
        if states is not None:
            states.append({k: v.clone() for k, v in model.state_dict().items()})

    return model, fit(model, train, val, config, on_epoch=snapshot)


@pytest.mark.parametrize("final", ["swa", "refit"])
def test_averaged_and_refitted_fits_are_deterministic_bit_for_bit(final):
    """Same seed and data, the same prompts bit for bit (what a retrain's skip key and a
    reviewer rely on); another seed (other batches, other folds) gives others."""
    make = {"swa": _swa_fit, "refit": _refit}[final]
    (first, _), (second, _), (other, _) = make(), make(), make(seed=6)
    one, two = first.state_dict(), second.state_dict()
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key
    assert any(not torch.equal(one[k], v) for k, v in other.state_dict().items())


def test_swa_returns_the_average_of_the_last_half_of_the_epochs():
    states = []
    model, result = _swa_fit(states=states)
    assert len(states) == 6 and result.epochs_run == 6 and result.best_epoch == 6
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    for key, value in model.state_dict().items():
        if key in trainable:
            expected = torch.stack([s[key].double() for s in states[3:]]).mean(0).to(value.dtype)
            assert torch.allclose(value, expected, rtol=1e-6, atol=1e-7), key
            assert not torch.equal(value, states[-1][key]), key  # not just the last epoch
        else:
            assert torch.equal(value, states[-1][key]), key
    val = examples("classification", 2, seed=1)
    assert evaluate(model, val)["accuracy"] == pytest.approx(result.best_value)
    assert all("val_accuracy" in row for row in result.history)


def test_swa_runs_the_whole_budget_where_best_stops_early():
    """Early stopping cuts the schedule the average is taken over, so "swa" ignores it."""
    train, val = examples("classification", 3), examples("classification", 2, seed=1)
    runs = {}
    for final in ("best", "swa"):
        model = build_prompts(tiny_backbone("hf-clip"), "coop", make_task("classification"))
        config = TrainConfig(epochs=30, lr=0.5, patience=2, warmup_ratio=0.0, final=final, **QUIET)
        runs[final] = fit(model, train, val, config).epochs_run
    assert runs["best"] < 30 and runs["swa"] == 30


def _refit(seed: int = 5, **kwargs):
    """final="refit" on 3 folds of a small classification domain's train + val."""
    model = build_prompts(tiny_backbone("hf-clip"), "mpt", make_task("classification"))
    train, val = examples("classification", 3), examples("classification", 2, seed=1)
    config = TrainConfig(epochs=4, batch_size=4, lr=0.05, seed=seed, final="refit", **QUIET)
    return model, fit(model, train, val, config, **kwargs)


def test_refit_chooses_the_epochs_on_the_folds_then_fits_train_and_val_for_that_many():
    """Each fold fit starts from the same prompts and seed and scores every epoch on its
    held-out fold; the epoch count is the best mean over the folds (ties to the earlier);
    the result is one fit on all of train + val for that many epochs, and the reported
    validation metric is the folds' mean at that epoch."""
    from mpt_core.training.folds import kfold_splits

    rows = []
    model, result = _refit(on_epoch=rows.append)
    train, val = examples("classification", 3), examples("classification", 2, seed=1)
    task = make_task("classification")
    splits = kfold_splits(train, val, 3, 5, keep_train_size=False, contract=task.contract)
    curves = []
    for fold_train, fold_val in splits:
        single = build_prompts(tiny_backbone("hf-clip"), "mpt", task)
        config = TrainConfig(epochs=4, batch_size=4, lr=0.05, seed=5, **QUIET)
        history = fit(single, fold_train, fold_val, config).history
        curves.append([row["val_accuracy"] for row in history])
    means = [sum(c[e] for c in curves) / 3 for e in range(min(map(len, curves)))]
    chosen = means.index(max(means)) + 1
    assert (result.best_epoch, result.best_value) == (chosen, pytest.approx(max(means)))
    alone = build_prompts(tiny_backbone("hf-clip"), "mpt", task)
    config = TrainConfig(epochs=chosen, batch_size=4, lr=0.05, seed=5, **QUIET)
    fit(alone, [*train, *val], None, config)
    ours, theirs = model.state_dict(), alone.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert [row["fold"] for row in result.history][-chosen:] == ["all"] * chosen
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))  # one count
    assert {r["epochs"] for r in rows} == {16}  # 3 folds + the refit, 4 epochs each at most


def test_refit_on_stored_features_equals_refit_in_memory(tmp_path):
    """The worker passes train and val as views of the feature store; the folds are cut
    from them without reading them into memory, and the prompts are the same bit for bit."""
    from mpt_core.featurestore import FeatureStore

    train, val = examples("classification", 3), examples("classification", 2, seed=1)
    config = TrainConfig(epochs=3, batch_size=4, lr=0.05, final="refit", **QUIET)
    task = make_task("classification")
    in_memory = build_prompts(tiny_backbone("shipped"), "mpt", task)
    fit(in_memory, train, val, config)
    streamed = build_prompts(tiny_backbone("shipped"), "mpt", task)
    view = streamed.prepare_images(
        [e.image for e in (*train, *val)], store=FeatureStore(tmp_path / "store")
    )
    cut = len(train)
    fit(
        streamed,
        train,
        val,
        config,
        prepared=(view.take(range(cut)), view.take(range(cut, len(view)))),
    )
    ours, theirs = in_memory.state_dict(), streamed.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("task", TASKS.names())
def test_refit_runs_every_task_on_k_folds_that_each_train_and_validate(task):
    """Every fold trains and validates, whatever the task's target: a retrieval caption is
    its own target, and the folds still split the pool evenly."""
    family = "hf-clip" if TASKS.get(task).backbone_kind == "dual-encoder" else "hf-blip2"
    model = build_prompts(tiny_backbone(family), "mpt", make_task(task))
    train, val = examples(task, 2), examples(task, 1, seed=1)
    config = TrainConfig(epochs=1, batch_size=8, final="refit", **QUIET)
    result = fit(model, train, val, config)
    assert result.epochs_run == 4 and [row["fold"] for row in result.history] == [0, 1, 2, "all"]
    assert result.best_value is not None


def test_refit_needs_two_folds_at_least():
    with pytest.raises(ConfigError, match="folds >= 2"):
        TrainConfig(final="refit", folds=1)
