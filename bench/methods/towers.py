"""The trainer's loop for methods whose trainable parameters sit in the backbone's towers
(full fine-tuning, LoRA): same loss, epochs, batch, clipping, epoch chosen on val."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mpt_core import Example, ImageFeatures, TrainConfig
from mpt_core.backbones.base import Backbone
from mpt_core.tasks.base import Task

from .base import Run, Splits
from .memory import training_memory_mb


class TowerModel:
    """What a task needs from a model (embed_texts, score, logit_scale) over a backbone
    whose towers train (full fine-tuning) or carry LoRA adapters."""

    def __init__(
        self,
        backbone: Backbone,
        task: Task,
        center: torch.Tensor,
        image_fn: Callable[[Any], torch.Tensor],
    ) -> None:
        self.backbone, self.task, self.center, self.image_fn = backbone, task, center, image_fn
        self.logit_scale = backbone.logit_scale

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.backbone.encode_text(self.backbone.tokenize(list(texts))), dim=-1)

    def embed_images(self, inputs: torch.Tensor) -> ImageFeatures:
        return ImageFeatures(F.normalize(self.image_fn(inputs) - self.center, dim=-1))

    def score(self, images: ImageFeatures, text: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * images.embedding @ text.T


def _evaluate(
    model: TowerModel, inputs: torch.Tensor, examples: list[Example], task: Task
) -> float:
    with torch.no_grad():
        emb = ImageFeatures.cat(
            [model.embed_images(inputs[i : i + 64]) for i in range(0, len(inputs), 64)]
        )
        return task.evaluate(model, emb, examples)[task.primary_metric]


def train_towers(
    net: Backbone,
    task: Task,
    data: Splits,
    cfg: TrainConfig,
    seed: int,
    lr: float,
    inputs_fn: Callable[[list[Example]], torch.Tensor],
    image_fn: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.Tensor],
) -> Run:
    """Train `params` (inside `net`) on `data["train"]`: `inputs_fn` turns examples into the
    tower's input once, `image_fn` runs the trainable part of the image tower on it."""
    inputs = {s: inputs_fn(data[s]) for s in ("train", "val", "test")}
    with torch.no_grad():
        raw = image_fn(inputs["train"])
        center = raw.mean(0) if net.centers_images else torch.zeros(net.embed_dim)
    model = TowerModel(net, task, center, image_fn)
    batch = data["train"][: cfg.batch_size]
    memory = training_memory_mb(
        lambda: task.loss(model, model.embed_images(inputs["train"][: cfg.batch_size]), batch),
        params,
        [inputs["train"], *(p for p in net.parameters() if not p.requires_grad)],
    )
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    trainable = {k for k, v in net.named_parameters() if v.requires_grad}
    best, best_state, started = None, None, time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(data["train"]), generator=generator).split(cfg.batch_size):
            examples = [data["train"][i] for i in idx.tolist()]
            loss = task.loss(model, model.embed_images(inputs["train"][idx]), examples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
        value = _evaluate(model, inputs["val"], data["val"], task)
        if best is None or value > best:
            state = net.state_dict()
            best, best_state = value, {k: state[k].clone() for k in trainable}
    seconds = time.perf_counter() - started
    net.load_state_dict(best_state, strict=False)
    metric = _evaluate(model, inputs["test"], data["test"], task)
    return Run(metric, sum(p.numel() for p in params), seconds, memory)
