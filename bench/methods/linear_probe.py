"""A linear probe: one linear layer on frozen (centred) image embeddings."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from flows.domains import Domain
from mpt_core import Example, TrainConfig, build_prompts
from mpt_core.backbones.base import Backbone
from mpt_core.tasks.metrics import recall_at_k

from .base import Run, Splits
from .data import group_key
from .features import cached_prepare
from .memory import training_memory_mb

PROBE_LR = 1e-2
STEPS_PER_EPOCH = 10
"""A linear head on fixed features needs more, cheap steps: full-batch steps per epoch."""


def linear_probe(
    backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
) -> Run:
    """A linear layer on frozen (centred) image embeddings, scoring the task's candidates:
    classes, (question, answer) pairs restricted to the example's question, or captions."""
    torch.manual_seed(seed)
    task = domain.config.build_task()
    base = build_prompts(backbone, "coop", task, seed=seed)
    feats = {s: cached_prepare(base, domain, s, data[s]) for s in ("train", "val", "test")}
    base.calibrate_center(feats["train"])
    feats = {s: F.normalize(f - base.image_center, dim=-1) for s, f in feats.items()}

    def key(e: Example) -> str:
        return group_key(task, e)

    classes = sorted({key(e) for s in data.values() for e in s})
    index = {c: i for i, c in enumerate(classes)}
    head = torch.nn.Linear(feats["train"].shape[1], len(classes))
    target = torch.tensor([index[key(e)] for e in data["train"]])
    optimizer = torch.optim.AdamW(head.parameters(), lr=PROBE_LR)

    def score(split: str) -> float:
        with torch.no_grad():
            logits = head(feats[split])
        examples = data[split]
        contract = task.contract
        if contract.value_set is None:  # free targets (captions): rank them, as retrieval does
            caps = list(dict.fromkeys(key(e) for e in examples))
            cols = torch.tensor([index[c] for c in caps])
            pos = torch.tensor([[key(e) == c for c in caps] for e in examples])
            i2t, t2i = (
                recall_at_k(logits[:, cols], pos, [1]),
                recall_at_k(logits[:, cols].T, pos.T, [1]),
            )
            return (i2t[1] + t2i[1]) / 2
        if contract.value_set.per:  # candidates declared per question: choose among them
            hits = []
            for row, e in zip(logits, examples, strict=True):
                selector = getattr(e, contract.value_set.per)
                best = max(
                    task.declared_values()[selector],
                    key=lambda a, q=selector: (
                        row[index[f"{q}\n{a}"]] if f"{q}\n{a}" in index else -1e9
                    ),
                )
                hits.append(best == getattr(e, contract.target))
            return sum(hits) / len(hits)
        pred = logits.argmax(1)
        return float((pred == torch.tensor([index[key(e)] for e in examples])).float().mean())

    best, best_state, started = None, None, time.perf_counter()
    for _ in range(cfg.epochs * STEPS_PER_EPOCH):
        loss = F.cross_entropy(head(feats["train"]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = score("val")
        if best is None or value > best:
            best, best_state = value, copy.deepcopy(head.state_dict())
    seconds = time.perf_counter() - started
    head.load_state_dict(best_state)
    memory = training_memory_mb(
        lambda: F.cross_entropy(head(feats["train"]), target),
        list(head.parameters()),
        [feats["train"]],
    )
    return Run(score("test"), sum(p.numel() for p in head.parameters()), seconds, memory)
