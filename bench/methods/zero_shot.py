"""Zero-shot: the backbone's own text embeddings of the task's candidates, nothing trained."""

from __future__ import annotations

from flows.domains import Domain
from mpt_core import TrainConfig, build_prompts, evaluate
from mpt_core.backbones.base import Backbone
from mpt_core.holder import PromptsHolder

from .base import Run, Splits
from .features import cached_prepare


def zero_shot_model(backbone: Backbone, domain: Domain, data: Splits, seed: int) -> PromptsHolder:
    """`coop` prompts as built (the seed draws them; they are not trained), the image centre
    calibrated on train: what zero-shot scores with."""
    model = build_prompts(backbone, "coop", domain.config.build_task(), seed=seed)
    model.calibrate_center(cached_prepare(model, domain, "train", data["train"]))
    return model


def zero_shot(backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int) -> Run:
    """`zero_shot_model` scored on test."""
    model = zero_shot_model(backbone, domain, data, seed)
    metric = evaluate(
        model, data["test"], prepared=cached_prepare(model, domain, "test", data["test"])
    )
    return Run(metric[model.task.primary_metric], 0, 0.0, 0.0)
