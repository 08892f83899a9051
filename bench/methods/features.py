"""Frozen image features computed once per domain and shared by every method and seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from flows.domains import Domain
from mpt_core import Example, PromptedModel


@dataclass
class _Prepared:
    """The prepared rows of one (backbone, domain, kind, split), in the order computed."""

    rows: dict[int, int] = field(default_factory=dict)
    """id(example) -> its row of `tensor`."""
    examples: list[Example] = field(default_factory=list)
    """Held so that no example's id is reused by another object while the cache lives."""
    tensor: torch.Tensor | None = None


_CACHE: dict[tuple, _Prepared] = {}


def cached_prepare(
    model: PromptedModel, domain: Domain, split: str, examples: list[Example]
) -> torch.Tensor:
    """`model.prepare_images` of `examples` (of one split), each example computed once per
    (backbone, domain, kind): the frozen stem (or, without visual prompts, the finished
    embeddings) does not depend on the prompts, so every method and seed reuses it (the
    trainer would recompute it). Any subset of a split's examples (the few-shot draws of
    bench/label_efficiency.py) is served from the same rows; the rows come back in the
    order of `examples`."""
    entry = _CACHE.setdefault(
        (id(model.backbone), domain.name, model.vision_frozen, split), _Prepared()
    )
    missing = []
    for example in examples:
        if id(example) not in entry.rows:
            entry.rows[id(example)] = len(entry.examples)
            entry.examples.append(example)
            missing.append(example)
    if missing:
        fresh = model.prepare_images([e.image for e in missing])
        entry.tensor = fresh if entry.tensor is None else torch.cat([entry.tensor, fresh])
    rows = [entry.rows[id(e)] for e in examples]
    if rows == list(range(len(entry.examples))):
        return entry.tensor  # the whole split in its own order: no copy
    return entry.tensor[rows]
