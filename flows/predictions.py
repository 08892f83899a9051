"""Review evidence computed where the models are: per-example predictions of the candidate
and of production on the test split, what the task's contract says about them
(`TaskEvidence`: a closed value set, generated text, the metric each example gets on its
own), and small JPEG thumbnails of the examples worth a look: where the two disagree (or,
with no production, where the candidate is wrong), or, where examples are scored one by
one (generated text), those the candidate lost most on.

The worker calls `evidence_for` right after evaluating; the pipeline registers it with
the candidate (`register_outcome`, one registry transaction), so the review pages never
run a model or open the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mpt_core import Example, PromptedModel
from mpt_core.features import ImageFeatures
from mpt_core.tasks import Task
from mpt_core.thumbnails import thumbnail
from mpt_core.training import embed_examples
from registry import TaskEvidence

MAX_THUMBNAILS = 48


@dataclass(frozen=True)
class Evidence:
    """What the worker sends back besides metrics (plain data, picklable)."""

    split: str
    target_field: str
    candidate: list[dict[str, Any]]
    production: list[dict[str, Any]] | None = None
    thumbnails: dict[str, bytes] = field(default_factory=dict)
    """Image path (relative to data/) -> JPEG bytes, at most MAX_THUMBNAILS."""
    task: TaskEvidence | None = None
    """What the task's contract says about the rows (how the review pages show them)."""


def task_evidence(task: Task) -> TaskEvidence:
    """What the review pages need to know about `task`'s predictions, from its contract:
    a closed value set (a confusion matrix means something), generated text (compare the
    texts), the metric each example gets on its own."""
    contract = task.contract
    return TaskEvidence(
        task=task.name,
        closed=contract.closed,
        generates_text=task.backbone_kind == "generative",
        example_metric=contract.example_metric,
    )


def relative_images(examples: Sequence[Example], data_dir: Path) -> list[str]:
    """Each example's image path relative to its data folder: how rows name images."""
    return [Path(e.image).relative_to(data_dir).as_posix() for e in examples]


@torch.no_grad()
def predict_rows(
    model: PromptedModel,
    examples: Sequence[Example],
    images: Sequence[str],
    embedded: ImageFeatures | torch.Tensor | None = None,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """One row per example: image (path relative to data/), the task's inputs (a VQA
    row's question), target, prediction, score, and, where the task scores examples one
    by one (its contract's `example_metric`), quality: that example's own score.

    Scored from the same embeddings `evaluate` ranks all at once (retrieval ranks the
    whole set), so the rows agree with the stored metrics; `embedded`:
    `embed_examples(model, examples)`, when the caller has it already."""
    if len(examples) != len(images):
        raise ValueError(f"{len(examples)} examples but {len(images)} images; they must align")
    if embedded is None:
        embedded = embed_examples(model, examples, batch_size)
    task = model.task
    scored = task.predict_scored(model, embedded, examples)
    quality: list[float | None] = [None] * len(examples)
    if task.contract.example_metric is not None:
        quality = list(task.example_scores([p for p, _ in scored], examples))
    inputs = task.contract.inputs
    out = []
    for example, image, (prediction, score), own in zip(
        examples, images, scored, quality, strict=True
    ):
        item: dict[str, Any] = {"image": image}
        item.update((f, example.get(f)) for f in inputs if example.get(f) is not None)
        item.update(
            target=getattr(example, task.contract.target),
            prediction=prediction,
            score=None if score is None else round(float(score), 4),
        )
        if own is not None:
            item["quality"] = round(float(own), 4)
        out.append(item)
    return out


def worth_a_look(
    candidate: Sequence[dict[str, Any]], production: Sequence[dict[str, Any]] | None
) -> list[str]:
    """Images (no repeats) where the two versions disagree, or, with no production, where
    the candidate is wrong, in first-seen order. Where rows carry a quality (examples
    scored one by one, e.g. generated captions, which nearly always differ), the images
    the candidate lost most on come first (with no production: its lowest scores)."""
    if production is not None and len(production) != len(candidate):
        raise ValueError("candidate and production predictions cover different examples")
    if candidate and all(row.get("quality") is not None for row in candidate):
        loss = [
            (production[i]["quality"] if production is not None else 0.0) - row["quality"]
            for i, row in enumerate(candidate)
        ]
        order = sorted(range(len(candidate)), key=lambda i: -loss[i])  # stable: ties in order
        return list(dict.fromkeys(candidate[i]["image"] for i in order))
    images = []
    for i, row in enumerate(candidate):
        other = production[i]["prediction"] if production is not None else row["target"]
        if row["prediction"] != other:
            images.append(row["image"])
    return list(dict.fromkeys(images))


def evidence_for(
    candidate: PromptedModel,
    production: PromptedModel | None,
    examples: Sequence[Example],
    images: Sequence[str],
    split: str = "test",
    embedded: tuple[Any, Any] = (None, None),
) -> Evidence:
    """Predictions of both versions on the same examples and thumbnails worth a look.
    `images[i]` names the image of `examples[i]` (path relative to data/); `embedded`:
    (candidate's, production's) `embed_examples` of them, when the caller has them."""
    cand = predict_rows(candidate, examples, images, embedded[0])
    prod = None if production is None else predict_rows(production, examples, images, embedded[1])
    wanted = set(worth_a_look(cand, prod)[:MAX_THUMBNAILS])
    thumbs = {}
    for example, image in zip(examples, images, strict=True):
        if image in wanted and image not in thumbs:
            thumbs[image] = thumbnail(example.image)
    return Evidence(
        split, candidate.task.contract.target, cand, prod, thumbs, task_evidence(candidate.task)
    )
