"""CLIP-Adapter: a residual MLP on the frozen image embedding, the text side frozen."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from flows.domains import Domain
from mpt_core import ImageFeatures, TrainConfig, build_prompts
from mpt_core.backbones.base import Backbone

from .base import Run, Splits
from .features import cached_prepare
from .memory import training_memory_mb


class ClipAdapter(torch.nn.Module):
    """CLIP-Adapter (Gao et al.): f' = ratio * MLP(f) + (1 - ratio) * f on the frozen image
    embedding, MLP D -> D/4 -> D with ReLU; the candidate text embeddings stay frozen."""

    def __init__(self, dim: int, ratio: float = 0.2) -> None:
        super().__init__()
        self.ratio = ratio
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(dim, dim // 4, bias=False),
            torch.nn.ReLU(),
            torch.nn.Linear(dim // 4, dim, bias=False),
            torch.nn.ReLU(),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ratio * self.mlp(f) + (1 - self.ratio) * f, dim=-1)


def clip_adapter(
    backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
) -> Run:
    """The adapter trained with the trainer's loop on cached frozen embeddings (the task's
    own loss and evaluation code), lr = the domain's, epoch chosen on val."""
    torch.manual_seed(seed)
    task = domain.config.build_task()
    base = build_prompts(backbone, "coop", task, seed=seed)
    feats = {s: cached_prepare(base, domain, s, data[s]) for s in ("train", "val", "test")}
    base.calibrate_center(feats["train"])
    adapter = ClipAdapter(backbone.embed_dim)

    class _Model:
        logit_scale = backbone.logit_scale
        embed_texts = base.frozen_texts  # CLIP-Adapter keeps the text side frozen

        @staticmethod
        def score(images, text):
            return backbone.logit_scale * images.embedding @ text.T

    def embed(split, idx=None):
        x = feats[split] if idx is None else feats[split][idx]
        return ImageFeatures(adapter(F.normalize(x - base.image_center, dim=-1)))

    params = list(adapter.parameters())
    batch = data["train"][: cfg.batch_size]
    memory = training_memory_mb(
        lambda: task.loss(_Model, embed("train", slice(0, cfg.batch_size)), batch),
        params,
        [feats["train"]],
    )
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best, best_state, started = None, None, time.perf_counter()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(data["train"]), generator=generator).split(cfg.batch_size):
            loss = task.loss(_Model, embed("train", idx), [data["train"][i] for i in idx.tolist()])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            value = task.evaluate(_Model, embed("val"), data["val"])[task.primary_metric]
        if best is None or value > best:
            best, best_state = value, copy.deepcopy(adapter.state_dict())
    seconds = time.perf_counter() - started
    adapter.load_state_dict(best_state)
    with torch.no_grad():
        metric = task.evaluate(_Model, embed("test"), data["test"])[task.primary_metric]
    return Run(metric, sum(p.numel() for p in params), seconds, memory)
