"""Zero-shot: the backbone's own text embeddings of the task's candidates, nothing trained."""

from __future__ import annotations

from flows.domains import Domain
from mpt_core import TrainConfig, build_prompts, evaluate
from mpt_core.backbones.base import Backbone

from .base import Run, Splits
from .features import cached_prepare


def zero_shot(backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int) -> Run:
    """`coop` prompts as built (the seed draws them; they are not trained), the image centre
    calibrated on train, scored on test."""
    task = domain.config.build_task()
    model = build_prompts(backbone, "coop", task, seed=seed)
    model.calibrate_center(cached_prepare(model, domain, "train", data["train"]))
    metric = evaluate(
        model, data["test"], prepared=cached_prepare(model, domain, "test", data["test"])
    )
    return Run(metric[task.primary_metric], 0, 0.0, 0.0)
