"""A preset with the domain's hyper-parameters searched on validation (mpt_core's search)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from flows.domains import Domain
from mpt_core import Example, PromptedModel, TrainConfig
from mpt_core.backbones.base import Backbone
from mpt_core.training.search import SearchSpec, apply_trial, search

from .base import Run, Splits
from .features import cached_prepare
from .presets import FittedPrompts, scored_on_test, train_prompts

QUICK_SEARCH: dict[str, Any] = {"trials": 2, "space": {"lr": {"loguniform": [1e-3, 2e-2]}}}
"""The `tuning.search` block of `bench/results.py --quick`: two trials over the lr."""


@dataclass
class PromptSearch:
    """`preset` with the domain's hyper-parameters searched on validation through
    mpt_core.training.search (trials run one after another here, in parallel on Ray in
    `mpt run`). The chosen trial is refitted on the train split with early stopping on
    val, then scored once on test. `block` is the `tuning.search` block every domain is
    searched with ({} = the task's default space and budget)."""

    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)
    block: dict[str, Any] = field(default_factory=dict)

    def tuned(
        self, backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
    ) -> tuple[FittedPrompts, dict[str, Any]]:
        """The search on train / val and the chosen trial refitted (test is not read); also
        the trial count and the chosen parameters."""
        task = domain.config.build_task()
        spec = SearchSpec.from_dict({**self.block, "seed": seed}, task.name)
        rows = {id(e): (s, i) for s in ("train", "val") for i, e in enumerate(data[s])}

        def prepare(model: PromptedModel, examples: Sequence[Example]) -> torch.Tensor:
            tensors = {s: cached_prepare(model, domain, s, data[s]) for s in ("train", "val")}
            return torch.stack([tensors[rows[id(e)][0]][rows[id(e)][1]] for e in examples])

        best, trials = search(
            backbone,
            task,
            self.preset,
            self.overrides,
            cfg,
            spec,
            data["train"],
            data["val"],
            prepare,
        )
        chosen, prompt, config = apply_trial(
            self.preset, self.overrides, cfg, best.params, backbone.slots
        )
        fitted = train_prompts(backbone, domain, data, config, seed, chosen, prompt)
        return fitted, {"trials": len(trials), "chosen": best.params}

    def __call__(
        self, backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
    ) -> Run:
        started = time.perf_counter()
        fitted, extra = self.tuned(backbone, domain, data, cfg, seed)
        run = scored_on_test(fitted, domain, data)
        run.seconds, run.extra = time.perf_counter() - started, extra  # the search included
        return run
