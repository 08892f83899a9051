"""Review evidence computed where the models are: per-example predictions of the candidate
and of production on the test split, and small JPEG thumbnails of the examples where they
disagree (or, with no production, where the candidate is wrong).

The worker calls `evidence_for` right after evaluating; `record_evidence` stores it in
the registry with the version, so the review pages never run a model or open the data.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from mpt_core import Example, PromptedModel
from mpt_core.data import load_image

from .jobs import Row

if TYPE_CHECKING:
    from registry import PromptRegistry

MAX_THUMBNAILS = 48
THUMBNAIL_PX = 96
"""Longest side of a thumbnail, in pixels."""
JPEG_QUALITY = 80


@dataclass(frozen=True)
class Evidence:
    """What the worker sends back besides metrics (plain data, picklable)."""

    split: str
    target_field: str
    candidate: list[dict[str, Any]]
    production: list[dict[str, Any]] | None = None
    thumbnails: dict[str, bytes] = field(default_factory=dict)
    """Image path (relative to data/) -> JPEG bytes, at most MAX_THUMBNAILS."""


@torch.no_grad()
def predict_rows(
    model: PromptedModel, examples: Sequence[Example], rows: Sequence[Row], batch_size: int = 64
) -> list[dict[str, Any]]:
    """One row per example: image, question (if any), target, prediction, score.

    Images are embedded in batches, then ranked all at once, as `evaluate` does (retrieval
    ranks the whole set), so the rows agree with the stored metrics."""
    if len(examples) != len(rows):
        raise ValueError(f"{len(examples)} examples but {len(rows)} rows; they must align")
    prepared = model.prepare_images([e.image for e in examples], batch_size)
    vision = None if model.vision_frozen else model.prompts().vision
    emb = torch.cat(
        [
            model.embed_prepared(prepared[i : i + batch_size], vision)
            for i in range(0, len(prepared), batch_size)
        ]
    )
    scored = model.task.predict_scored(model, emb.float(), examples)
    out = []
    for example, row, (prediction, score) in zip(examples, rows, scored, strict=True):
        item: dict[str, Any] = {"image": row.image}
        if example.question is not None:
            item["question"] = example.question
        item.update(
            target=getattr(example, model.task.target_field),
            prediction=prediction,
            score=round(float(score), 4),
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


def thumbnail(image: Image.Image | Any, size: int = THUMBNAIL_PX) -> bytes:
    """A JPEG of `image` (PIL image or path) whose longest side is at most `size` pixels."""
    small = load_image(image).copy()
    small.thumbnail((size, size))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def evidence_for(
    candidate: PromptedModel,
    production: PromptedModel | None,
    examples: Sequence[Example],
    rows: Sequence[Row],
    split: str = "test",
) -> Evidence:
    """Predictions of both versions on the same examples and thumbnails worth a look.
    `rows[i]` is the metadata row `examples[i]` was read from."""
    cand = predict_rows(candidate, examples, rows)
    prod = None if production is None else predict_rows(production, examples, rows)
    wanted = set(worth_a_look(cand, prod)[:MAX_THUMBNAILS])
    thumbs = {}
    for example, row in zip(examples, rows, strict=True):
        if row.image in wanted and row.image not in thumbs:
            thumbs[row.image] = thumbnail(example.image)
    return Evidence(split, candidate.task.target_field, cand, prod, thumbs)


def record_evidence(
    registry: PromptRegistry,
    domain: str,
    version: int,
    production_version: int | None,
    data_version: str,
    evidence: Evidence,
) -> None:
    """Store both versions' predictions on `data_version` and the thumbnails."""
    registry.record_predictions(
        domain,
        version,
        data_version,
        evidence.split,
        evidence.candidate,
        target_field=evidence.target_field,
    )
    if production_version is not None and evidence.production is not None:
        registry.record_predictions(
            domain,
            production_version,
            data_version,
            evidence.split,
            evidence.production,
            target_field=evidence.target_field,
        )
    if evidence.thumbnails:
        registry.record_thumbnails(domain, data_version, evidence.split, evidence.thumbnails)
