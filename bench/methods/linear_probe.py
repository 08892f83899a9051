"""A linear probe: one linear layer on frozen (centred) image embeddings, trained from
scratch or on top of the zero-shot scores (zero-shot-initialised, as in CLAP / LP++)."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from flows.domains import Domain
from mpt_core import Example, PromptedModel, TrainConfig, build_prompts
from mpt_core.backbones.base import Backbone
from mpt_core.tasks.base import Task
from mpt_core.tasks.metrics import recall_at_k

from .base import Run, Splits
from .data import group_key
from .features import cached_prepare
from .memory import training_memory_mb

PROBE_LR = 1e-2
STEPS_PER_EPOCH = 10
"""A linear head on fixed features needs more, cheap steps: full-batch steps per epoch."""


ZERO_SHOT_FLOOR = 1e-6
"""Probability given to a class that is not among an example's zero-shot candidates (another
question's answers): its log, a finite floor, keeps the gradients finite."""


def linear_probe(
    backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
) -> Run:
    """A linear layer on frozen (centred) image embeddings, scoring the task's candidates:
    classes, (question, answer) pairs restricted to the example's question, or captions."""
    return _probe(backbone, domain, data, cfg, seed, zero_shot_init=False)


def zero_shot_probe(
    backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
) -> Run:
    """The linear probe on top of the zero-shot scores: logits = W f + b + a * z, with z
    the zero-shot log-probabilities of each example's candidates (`zero_shot`'s model), W
    and b starting at 0 and the per-class blend a at 1 (LP++), so the first step starts from
    the zero-shot prediction (CLAP's point) instead of a random head. Where few labels
    exist, that prior is what a plain probe lacks."""
    return _probe(backbone, domain, data, cfg, seed, zero_shot_init=True)


def _zero_shot_scores(
    base: PromptedModel,
    prepared: torch.Tensor,
    examples: list[Example],
    task: Task,
    index: dict[str, int],
) -> torch.Tensor:
    """(N, classes) zero-shot log-probabilities of each example's candidates, through the
    task's own `scores` on the untrained model; classes that are not among an example's
    candidates (another question's answers) get the floor."""
    with torch.no_grad():
        rows = task.scores(base, base.embed_prepared(prepared), examples)
    out = torch.full((len(examples), len(index)), ZERO_SHOT_FLOOR)
    target = task.contract.target
    for i, (example, row) in enumerate(zip(examples, rows, strict=True)):
        for value, p in row.items():
            column = index.get(group_key(task, example.replace(**{target: value})))
            if column is not None:
                out[i, column] = max(p, ZERO_SHOT_FLOOR)
    return out.log()


def _probe(
    backbone: Backbone,
    domain: Domain,
    data: Splits,
    cfg: TrainConfig,
    seed: int,
    zero_shot_init: bool,
) -> Run:
    torch.manual_seed(seed)
    task = domain.config.build_task()
    base = build_prompts(backbone, "coop", task, seed=seed)
    raw = {s: cached_prepare(base, domain, s, data[s]) for s in ("train", "val", "test")}
    base.calibrate_center(raw["train"])
    feats = {s: F.normalize(f - base.image_center, dim=-1) for s, f in raw.items()}

    def key(e: Example) -> str:
        return group_key(task, e)

    classes = sorted({key(e) for s in data.values() for e in s})
    index = {c: i for i, c in enumerate(classes)}
    head = torch.nn.Linear(feats["train"].shape[1], len(classes))
    blend = torch.nn.Parameter(torch.ones(len(classes)))
    prior: dict[str, torch.Tensor] = {}
    if zero_shot_init:
        prior = {s: _zero_shot_scores(base, raw[s], data[s], task, index) for s in raw}
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        params = [*head.parameters(), blend]
    else:
        params = list(head.parameters())

    def forward(split: str) -> torch.Tensor:
        logits = head(feats[split])
        return logits + blend * prior[split] if zero_shot_init else logits

    target = torch.tensor([index[key(e)] for e in data["train"]])
    optimizer = torch.optim.AdamW(params, lr=PROBE_LR)

    def score(split: str) -> float:
        with torch.no_grad():
            logits = forward(split)
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
        loss = F.cross_entropy(forward("train"), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = score("val")
        if best is None or value > best:
            best, best_state = value, copy.deepcopy([p.detach() for p in params])
    seconds = time.perf_counter() - started
    with torch.no_grad():
        for p, kept in zip(params, best_state, strict=True):
            p.copy_(kept)
    memory = training_memory_mb(
        lambda: F.cross_entropy(forward("train"), target), params, [feats["train"]]
    )
    trainable = sum(p.numel() for p in params)
    return Run(score("test"), trainable, seconds, memory, {"val": best})
