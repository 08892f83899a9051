"""Prompt tuning with a preset (coop, vpt, maple, mpt) and optional overrides (ablations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.domains import Domain
from mpt_core import TrainConfig, TrainResult, build_prompts, evaluate, fit
from mpt_core.backbones.base import Backbone
from mpt_core.errors import ConfigError
from mpt_core.holder import PromptsHolder
from mpt_core.prompts import preset_config

from .base import Run, Splits
from .features import cached_prepare
from .memory import training_memory_mb


@dataclass
class FittedPrompts:
    """A preset's prompts after `fit`, with the trainer's result and the training memory."""

    model: PromptsHolder
    result: TrainResult
    memory_mb: float


def train_prompts(
    backbone: Backbone,
    domain: Domain,
    data: Splits,
    cfg: TrainConfig,
    seed: int,
    preset: str,
    overrides: dict[str, Any],
) -> FittedPrompts:
    """`preset` with `overrides` for the domain's task, its image centre calibrated on train,
    fitted by mpt_core's trainer on the cached frozen stems (the epoch kept chosen on val);
    the test split is not read."""
    task = domain.config.build_task()
    model = build_prompts(backbone, preset, task, seed=seed, **overrides)
    prepared = {s: cached_prepare(model, domain, s, data[s]) for s in ("train", "val")}
    model.calibrate_center(prepared["train"])
    batch = data["train"][: cfg.batch_size]
    memory = training_memory_mb(
        lambda: (
            task.loss(model, model.embed_prepared(prepared["train"][: cfg.batch_size]), batch)
            + model.pop_auxiliary_loss()
        ),
        list(model.parameters()),
        [*backbone.parameters(), prepared["train"]],
    )
    result = fit(
        model, data["train"], data["val"], cfg, prepared=(prepared["train"], prepared["val"])
    )
    return FittedPrompts(model, result, memory)


def scored_on_test(fitted: FittedPrompts, domain: Domain, data: Splits) -> Run:
    """The fitted prompts scored once on `data["test"]`, with what training cost."""
    model = fitted.model
    prepared = cached_prepare(model, domain, "test", data["test"])
    metric = evaluate(model, data["test"], prepared=prepared)[model.task.primary_metric]
    return Run(metric, model.num_trainable(), fitted.result.seconds, fitted.memory_mb)


@dataclass
class PromptMethod:
    """A preset, or an ablation of it: the preset with some prompt settings overridden."""

    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def __call__(
        self, backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
    ) -> Run:
        fitted = train_prompts(backbone, domain, data, cfg, seed, self.preset, self.overrides)
        return scored_on_test(fitted, domain, data)

    def redundant_on(self, backbone: Backbone) -> bool:
        """An ablation that changes nothing on this backbone (e.g. "+ PFM" when the preset
        has it), or cannot be built on it; a preset itself is never redundant."""
        if not self.overrides:
            return False
        try:
            return preset_config(self.preset, backbone.slots, **self.overrides) == preset_config(
                self.preset, backbone.slots
            )
        except ConfigError:
            return True
