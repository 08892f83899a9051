"""Fit a domain's prompts on a frozen backbone; evaluate them."""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import Example
from ..errors import DataError
from ..features import ImageFeatures
from ..featurestore import FeatureStore, FeatureView
from ..holder import PromptsHolder
from ..tasks.base import Metrics
from .averaging import LateAverage
from .config import TrainConfig
from .folds import kfold_splits
from .schedule import warmup_cosine


@dataclass
class TrainResult:
    metric: str
    best_value: float | None
    """The validation metric of the prompts `fit` returned (None without a validation split):
    the best epoch's with final="best", the average's with final="swa"; with final="refit"
    the fold fits' mean held-out metric at the chosen epoch (the refit itself has seen
    every image)."""
    best_epoch: int
    """The epoch whose prompts were returned; with final="swa", the last averaged epoch;
    with final="refit", the epoch count chosen on the folds (the refit's last epoch)."""
    epochs_run: int
    """Epochs run (with final="refit", over the fold fits and the refit)."""
    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    """One row per epoch: epoch, step, train_loss, lr, and val_<metric> when validated."""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def embed_examples(
    model: PromptsHolder,
    examples: Sequence[Example],
    batch_size: int = 64,
    prepared: torch.Tensor | FeatureView | None = None,
    *,
    store: FeatureStore | None = None,
) -> ImageFeatures | torch.Tensor:
    """Every example's image embedded by `model` (float), in batches: what `evaluate` and
    per-example predictions score, so both can share one pass over the images. The frozen
    part comes from `prepared`, else from `store` (computed where missing), else is
    computed now."""
    if not examples:
        raise DataError("cannot evaluate on an empty set of examples")
    if prepared is None:
        prepared = model.prepare_images([e.image for e in examples], store=store)
    prompts = model.prompts()
    return ImageFeatures.cat(
        [
            model.embed_prepared(prepared[i : i + batch_size].to(model.backbone.device), prompts)
            for i in range(0, len(prepared), batch_size)
        ]
    ).float()


@torch.no_grad()
def evaluate(
    model: PromptsHolder,
    examples: Sequence[Example],
    batch_size: int = 64,
    prepared: torch.Tensor | FeatureView | None = None,
    *,
    embedded: ImageFeatures | torch.Tensor | None = None,
    store: FeatureStore | None = None,
) -> Metrics:
    """The task's metrics on `examples` (all at once: retrieval ranks the whole set).
    `embedded`: `embed_examples(model, examples)`, when the caller has it already."""
    if not examples:
        raise DataError("cannot evaluate on an empty set of examples")
    model.task.check(examples)
    if embedded is None:
        embedded = embed_examples(model, examples, batch_size, prepared, store=store)
    return model.task.evaluate(model, embedded, examples)


def fit(
    model: PromptsHolder,
    train: Sequence[Example],
    val: Sequence[Example] | None = None,
    config: TrainConfig | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    *,
    prepared: tuple[torch.Tensor | FeatureView, torch.Tensor | FeatureView | None] | None = None,
    store: FeatureStore | None = None,
) -> TrainResult:
    """Train `model.prompts` with AdamW + warmup/cosine, clipping, early stopping on `val`.

    The backbone stays frozen; its image stem (or, without visual prompts, its whole
    image embedding) is computed once for all examples before the first step. At the end
    the model holds the prompts `config.final` names: the best by validation metric
    ("best"), or the average of the last half of the epochs ("swa", every epoch run, `val`
    still scored per epoch for the history). `on_epoch(row)` is called after
    each epoch with that epoch's history row (and `epochs`, the budget). `prepared` =
    (train, val) outputs of `model.prepare_images`, to reuse them across runs (benchmarks,
    searches); `store`: a `FeatureStore` to take them from (and add the missing ones to),
    so they are read a batch at a time instead of held in memory.
    """
    config = config or TrainConfig()
    if not train:
        raise DataError("cannot train on an empty set of examples")
    model.task.check(train)
    if val:
        model.task.check(val)
    if config.final == "refit":
        return _fit_refit(model, train, val or [], config, on_epoch, prepared, store)
    seed_everything(config.seed)
    device = model.backbone.device if config.device == "auto" else torch.device(config.device)
    model.to(device)
    start = time.perf_counter()

    if prepared is None:
        prepared = (
            model.prepare_images([e.image for e in train], store=store),
            model.prepare_images([e.image for e in val], store=store) if val else None,
        )
    prepared, val_prepared = prepared
    if model.backbone.centers_images and not model.centered:
        model.calibrate_center(prepared)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train) // config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = warmup_cosine(optimizer, total, int(config.warmup_ratio * total))
    scaler = torch.amp.GradScaler(
        "cuda", enabled=device.type == "cuda" and config.precision == "fp16"
    )
    generator = torch.Generator().manual_seed(config.seed)
    metric = model.task.primary_metric

    result = TrainResult(metric, None, 0, 0, 0, 0.0)
    averaged = LateAverage(model, config.epochs) if config.final == "swa" else None
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    bar = tqdm(
        range(1, config.epochs + 1), disable=not config.progress, desc="tuning", unit="epoch"
    )
    for epoch in bar:
        losses = []
        for idx in torch.randperm(len(train), generator=generator).split(config.batch_size):
            batch = [train[i] for i in idx.tolist()]
            with _autocast(device, config.precision):
                emb = model.embed_prepared(prepared[idx].to(device))
                loss = model.task.loss(model, emb.float(), batch) + model.pop_auxiliary_loss()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.item())
            result.steps += 1
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": result.steps,
            "train_loss": sum(losses) / len(losses),
            "lr": scheduler.get_last_lr()[0],
        }
        if averaged is not None:
            averaged.add(epoch, model)
            if val:
                row[f"val_{metric}"] = float(evaluate(model, val, prepared=val_prepared)[metric])
        elif val:
            value = float(evaluate(model, val, prepared=val_prepared)[metric])
            row[f"val_{metric}"] = value
            if result.best_value is None or value > result.best_value:
                result.best_value, result.best_epoch, stale = value, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        else:
            result.best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
        result.history.append(row)
        result.epochs_run = epoch
        if on_epoch is not None:
            on_epoch({**row, "epochs": config.epochs})
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k not in ("epoch", "step")})
        if averaged is None and val and config.patience and stale >= config.patience:
            break
    if averaged is None:
        model.load_state_dict(best_state)
    else:
        averaged.load_into(model)
        result.best_epoch = result.epochs_run
        if val:
            result.best_value = float(evaluate(model, val, prepared=val_prepared)[metric])
    result.seconds = time.perf_counter() - start
    return result


Prepared = torch.Tensor | FeatureView


def _rows(prepared: Prepared, rows: list[int]) -> Prepared:
    if isinstance(prepared, FeatureView):
        return prepared.take(rows)
    return prepared[torch.tensor(rows, dtype=torch.long)]


def _fit_refit(
    model: PromptsHolder,
    train: Sequence[Example],
    val: Sequence[Example],
    config: TrainConfig,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    prepared: tuple[Prepared, Prepared | None] | None,
    store: FeatureStore | None,
) -> TrainResult:
    """final="refit": the number of epochs chosen on `config.folds` folds of train + val,
    then one fit on all of train + val for that many epochs.

    Each fold fit ("best", early stopping included) starts from the same initial prompts
    and seed and scores every epoch on its held-out fold; the epoch kept is the one with
    the highest mean over the folds (epochs every fold reached; ties to the earlier). The
    refit starts from the same initial prompts again, with the epoch budget set to that
    epoch (so its schedule ends there), and keeps its last epoch. The image centre, where
    the backbone asks for one, is calibrated on the whole pool first."""
    start = time.perf_counter()
    pool = [*train, *val]
    if prepared is None:
        whole: Prepared = model.prepare_images([e.image for e in pool], store=store)
    elif not val or prepared[1] is None:
        whole = prepared[0]
    elif isinstance(prepared[0], FeatureView) and isinstance(prepared[1], FeatureView):
        whole = FeatureView.concat([prepared[0], prepared[1]])
    else:
        whole = torch.cat([prepared[0][:], prepared[1][:]])
    model.to(model.backbone.device if config.device == "auto" else torch.device(config.device))
    if model.backbone.centers_images and not model.centered:
        model.calibrate_center(whole)
    position = {id(example): i for i, example in enumerate(pool)}
    splits = kfold_splits(
        train, val, config.folds, config.seed, keep_train_size=False, contract=model.task.contract
    )
    initial = copy.deepcopy(model.state_dict())
    metric = model.task.primary_metric
    result = TrainResult(metric, None, 0, 0, 0, 0.0)
    budget = (len(splits) + 1) * config.epochs
    done = 0

    def report(row: dict[str, Any], fold: int | str) -> None:
        if on_epoch is not None:
            on_epoch({**row, "fold": fold, "epoch": done + row["epoch"], "epochs": budget})

    curves = []
    for fold, (fold_train, fold_val) in enumerate(splits):
        model.load_state_dict(initial)
        rows = [position[id(e)] for e in fold_train], [position[id(e)] for e in fold_val]
        one = fit(
            model,
            fold_train,
            fold_val or None,
            replace(config, final="best"),
            lambda row, fold=fold: report(row, fold),
            prepared=(_rows(whole, rows[0]), _rows(whole, rows[1]) if fold_val else None),
        )
        curves.append([row.get(f"val_{metric}") for row in one.history])
        result.history += [{**row, "fold": fold} for row in one.history]
        result.epochs_run += one.epochs_run
        result.steps += one.steps
        done += one.epochs_run
    reached = min(len(curve) for curve in curves)
    means = [
        sum(c[e] for c in curves) / len(curves) if all(c[e] is not None for c in curves) else None
        for e in range(reached)
    ]
    scored = [(value, -e) for e, value in enumerate(means) if value is not None]
    chosen = -max(scored)[1] + 1 if scored else reached
    model.load_state_dict(initial)
    last = fit(
        model,
        pool,
        None,
        replace(config, final="best", epochs=chosen),
        lambda row: report(row, "all"),
        prepared=(whole, None),
    )
    result.history += [{**row, "fold": "all"} for row in last.history]
    result.epochs_run += last.epochs_run
    result.steps += last.steps
    result.best_value = means[chosen - 1] if scored else None
    result.best_epoch = chosen
    result.seconds = time.perf_counter() - start
    return result
