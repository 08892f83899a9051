"""Review evidence computed where the models are: per-example predictions of the candidate
and of production on the test split, and small JPEG thumbnails of the examples where they
disagree (or, with no production, where the candidate is wrong).

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
from mpt_core.thumbnails import thumbnail
from mpt_core.training import embed_examples

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
    row's question), target, prediction, score.

    Scored from the same embeddings `evaluate` ranks all at once (retrieval ranks the
    whole set), so the rows agree with the stored metrics; `embedded`:
    `embed_examples(model, examples)`, when the caller has it already."""
    if len(examples) != len(images):
        raise ValueError(f"{len(examples)} examples but {len(images)} images; they must align")
    if embedded is None:
        embedded = embed_examples(model, examples, batch_size)
    scored = model.task.predict_scored(model, embedded, examples)
    inputs = model.task.contract.inputs
    out = []
    for example, image, (prediction, score) in zip(examples, images, scored, strict=True):
        item: dict[str, Any] = {"image": image}
        item.update((f, example.get(f)) for f in inputs if example.get(f) is not None)
        item.update(
            target=getattr(example, model.task.contract.target),
            prediction=prediction,
            score=None if score is None else round(float(score), 4),
        )
        out.append(item)
    return out


def worth_a_look(
    candidate: Sequence[dict[str, Any]], production: Sequence[dict[str, Any]] | None
) -> list[str]:
    """Images (first-seen order, no repeats) where the two versions disagree, or, with no
    production, where the candidate is wrong."""
    if production is not None and len(production) != len(candidate):
        raise ValueError("candidate and production predictions cover different examples")
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
    return Evidence(split, candidate.task.contract.target, cand, prod, thumbs)
