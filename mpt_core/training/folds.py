"""k-fold splits of train + val, stratified by the task's target, deterministic by seed.

Used where one validation split is too small to decide on: the search's selection (the mean
validation metric over folds) and the refit's choice of epochs (`TrainConfig.final="refit"`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..data import Example
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..tasks.base import TaskContract

DEFAULT_FOLDS = 3


def target_key(example: Example, contract: TaskContract) -> str:
    """What stratifies folds: the task's target (label, caption, answer), under the value
    of the field its value set is declared per (a VQA answer under its question)."""
    target = str(example.get(contract.target) or "")
    per = contract.value_set.per if contract.value_set else None
    return f"{example.get(per)}\n{target}" if per else target


def kfold_splits(
    train: Sequence[Example],
    val: Sequence[Example],
    k: int = DEFAULT_FOLDS,
    seed: int = 0,
    keep_train_size: bool = True,
    *,
    contract: TaskContract,
) -> list[tuple[list[Example], list[Example]]]:
    """k (train, val) pairs over train + val, stratified by `target_key`, deterministic by
    `seed`. Fold i validates on the i-th share of every class. With `keep_train_size`
    each fold trains on as many examples per class as the original train split has
    (drawn from the other folds): a few-shot domain is searched in its own regime, not
    on 4x the shots it will be trained with."""
    if k < 2:
        raise ConfigError(f"k-fold needs k >= 2 folds, got {k}")
    pool: dict[str, list[Example]] = {}
    for example in [*train, *val]:
        pool.setdefault(target_key(example, contract), []).append(example)
    shots: dict[str, int] = {}
    for example in train:
        key = target_key(example, contract)
        shots[key] = shots.get(key, 0) + 1
    rng = random.Random(seed)
    assignment: dict[str, list[int]] = {}
    offset = 0  # carried over the targets: one-example targets (captions) fill every fold
    for key, items in pool.items():
        order = list(range(len(items)))
        rng.shuffle(order)
        folds = [0] * len(items)
        for rank, index in enumerate(order):
            folds[index] = (offset + rank) % k
        assignment[key] = folds
        offset += len(items)
    splits = []
    for fold in range(k):
        fold_train, fold_val = [], []
        for key, items in pool.items():
            rest = [x for x, f in zip(items, assignment[key], strict=True) if f != fold]
            fold_val += [x for x, f in zip(items, assignment[key], strict=True) if f == fold]
            if keep_train_size and key in shots:
                rest = random.Random(f"{seed}/{fold}/{key}").sample(
                    rest, min(shots[key], len(rest))
                )
            fold_train += rest
        splits.append((fold_train, fold_val))
    return splits
