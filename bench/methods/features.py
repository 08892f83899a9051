"""Frozen image features computed once per domain and shared by every method and seed."""

from __future__ import annotations

import torch

from flows.domains import Domain
from mpt_core import Example, PromptedModel

_CACHE: dict[tuple, torch.Tensor] = {}


def cached_prepare(
    model: PromptedModel, domain: Domain, split: str, examples: list[Example]
) -> torch.Tensor:
    """`model.prepare_images` of a split, computed once per (backbone, domain, kind): the
    frozen stem (or, without visual prompts, the finished embeddings) does not depend on
    the prompts, so every method and seed reuses it (the trainer would recompute it)."""
    key = (id(model.backbone), domain.name, model.vision_frozen, split)
    if key not in _CACHE:
        _CACHE[key] = model.prepare_images([e.image for e in examples])
    return _CACHE[key]
