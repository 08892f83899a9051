"""Review evidence stored beside the versions: per-example predictions of a version on one
split of one data version, and small JPEG thumbnails of the examples reviewers look at.

Both are written by the flow when it evaluates candidate and production, and only read by
the review pages, which never run a model or open the data folder. Predictions live in a
table keyed by (version, data version, split), like the metrics they explain, so a page
reads them in one query and a version evaluated again on newer data keeps both records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager

from .. import models as m
from ..errors import InvalidRecord
from ..records import ReviewEvidence, TaskEvidence

MAX_THUMBNAILS = 48
"""Per call of `record_thumbnails` (the flow stores disagreements only)."""
MAX_THUMBNAIL_BYTES = 32_000
ROW_FIELDS = {
    "image": True,
    "target": True,
    "prediction": True,
    "score": False,
    "quality": False,
}
"""Field -> required. `score`: the prediction's probability among its candidates (None for
generated text); `quality`: the example's own value of its task's `example_metric` (a
caption's CIDEr-D), where the task scores examples one by one. Any other key of a row is a
task input the prediction was made from (a VQA row's question): a field name of lower-case
letters, digits and '_', with a text value."""
INPUT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")


def check_rows(rows: Any, label: str) -> list[dict[str, Any]]:
    """The rows, or an InvalidRecord naming the first bad row and field."""
    if not isinstance(rows, list):
        raise InvalidRecord(f"predictions of {label} must be a list of rows; got {type(rows)}")
    for i, row in enumerate(rows):
        where = f"predictions of {label}, row {i}"
        if not isinstance(row, dict):
            raise InvalidRecord(f"{where}: a row is a dict; got {row!r}")
        for name, value in row.items():
            if name in ROW_FIELDS:
                continue
            if not isinstance(name, str) or not INPUT_NAME.match(name):
                raise InvalidRecord(
                    f"{where}: {name!r} is not a field name; a row has {list(ROW_FIELDS)} and "
                    "the task's inputs (lower-case field names)"
                )
            if not isinstance(value, str):
                raise InvalidRecord(f"{where}: input {name!r} must be text; got {value!r}")
        for name, required in ROW_FIELDS.items():
            value = row.get(name)
            if value is None:
                if required:
                    raise InvalidRecord(f"{where}: {name!r} is missing")
                continue
            if name == "score":
                ok = isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1
                if not ok:
                    raise InvalidRecord(f"{where}: score must be in [0, 1] or None; got {value!r}")
            elif name == "quality":
                ok = isinstance(value, int | float) and math.isfinite(value) and value >= 0
                if not ok:
                    raise InvalidRecord(
                        f"{where}: quality must be a finite number >= 0 or None; got {value!r}"
                    )
            elif not isinstance(value, str) or (name == "image" and not value):
                raise InvalidRecord(f"{where}: {name!r} must be a non-empty string; got {value!r}")
    return rows


def check_thumbnails(thumbnails: Any, label: str) -> dict[str, bytes]:
    if not isinstance(thumbnails, dict):
        raise InvalidRecord(f"thumbnails of {label} must be a dict image -> JPEG bytes")
    if len(thumbnails) > MAX_THUMBNAILS:
        raise InvalidRecord(
            f"{len(thumbnails)} thumbnails for {label}; at most {MAX_THUMBNAILS} are kept, "
            "store the disagreements only"
        )
    for image, jpeg in thumbnails.items():
        if not isinstance(image, str) or not image:
            raise InvalidRecord(f"thumbnail of {label}: image name {image!r} is not a path")
        if not isinstance(jpeg, bytes) or not jpeg.startswith(b"\xff\xd8\xff"):
            raise InvalidRecord(f"thumbnail {image} of {label} is not JPEG data")
        if len(jpeg) > MAX_THUMBNAIL_BYTES:
            raise InvalidRecord(
                f"thumbnail {image} of {label} is {len(jpeg)} bytes; at most "
                f"{MAX_THUMBNAIL_BYTES} (make it smaller)"
            )
    return thumbnails


def record_predictions(
    s: Session,
    v: m.PromptVersion,
    data: m.DataVersion,
    split: str,
    rows: list[dict[str, Any]],
    *,
    target_field: str,
    task: TaskEvidence | None = None,
) -> m.Prediction:
    """Store (or replace) the per-example predictions of `v` on `split` of `data`. Rows:
    image (path relative to data/), the task's inputs (a question), target, prediction, score
    (probability of the prediction, or None), quality (see ROW_FIELDS); `task`: what the
    task's contract says about them. A bad row is an InvalidRecord naming it."""
    label = f"{v.domain.name} v{v.number} on {split} of {data.md5}"
    check_rows(rows, label)
    if task is not None and task.example_metric is None and any("quality" in r for r in rows):
        raise InvalidRecord(
            f"predictions of {label} carry a quality but task {task.task!r} names no "
            "example_metric saying what it measures"
        )
    row = s.scalar(
        select(m.Prediction).where(
            m.Prediction.version_id == v.id,
            m.Prediction.data_version_id == data.id,
            m.Prediction.split == split,
        )
    )
    if row is None:
        row = m.Prediction(version=v, data_version=data, split=split)
        s.add(row)
    row.rows, row.target_field, row.created_at = rows, target_field, m.utcnow()
    row.task = None if task is None else task.to_dict()
    s.flush()
    return row


def read_predictions(
    s: Session, domain: str, number: int, data_version: str, split: str
) -> m.Prediction | None:
    """Stored predictions of a version on a split of a data version, or None: one query."""
    return s.scalar(
        select(m.Prediction)
        .join(m.Prediction.version)
        .join(m.PromptVersion.domain)
        .join(m.Prediction.data_version)
        .options(
            contains_eager(m.Prediction.version).contains_eager(m.PromptVersion.domain),
            contains_eager(m.Prediction.data_version),
        )
        .where(
            m.Domain.name == domain,
            m.PromptVersion.number == number,
            m.DataVersion.md5 == data_version,
            m.Prediction.split == split,
        )
    )


def record_thumbnails(
    s: Session, data: m.DataVersion, split: str, thumbnails: dict[str, bytes]
) -> int:
    """Store JPEG thumbnails of example images (image path -> bytes), at most
    MAX_THUMBNAILS per call, replacing older ones of the same images. Returns how many."""
    check_thumbnails(thumbnails, f"{data.domain.name} {split} of {data.md5}")
    existing = {
        t.image: t
        for t in s.scalars(
            select(m.Thumbnail).where(
                m.Thumbnail.data_version_id == data.id,
                m.Thumbnail.split == split,
                m.Thumbnail.image.in_(list(thumbnails)),
            )
        )
    }
    for image, jpeg in thumbnails.items():
        if image in existing:
            existing[image].jpeg = jpeg
        else:
            s.add(m.Thumbnail(data_version_id=data.id, split=split, image=image, jpeg=jpeg))
    s.flush()
    return len(thumbnails)


def read_thumbnails(
    s: Session, domain: str, data_version: str, split: str, images: Iterable[str] | None
) -> dict[str, bytes]:
    """Stored thumbnails of `images` (default: all) of a split of a data version."""
    query = (
        select(m.Thumbnail.image, m.Thumbnail.jpeg)
        .join(m.DataVersion, m.Thumbnail.data_version_id == m.DataVersion.id)
        .join(m.Domain, m.DataVersion.domain_id == m.Domain.id)
        .where(
            m.Domain.name == domain,
            m.DataVersion.md5 == data_version,
            m.Thumbnail.split == split,
        )
    )
    if images is not None:
        query = query.where(m.Thumbnail.image.in_(list(images)))
    return {image: bytes(jpeg) for image, jpeg in s.execute(query)}


def record_review(
    s: Session,
    evidence: ReviewEvidence,
    data: m.DataVersion,
    candidate: m.PromptVersion,
    production: m.PromptVersion | None,
) -> None:
    """What reviewers compare, stored beside the versions: both versions' predictions on
    the same split of `data`, and the thumbnails worth a look."""
    if evidence.production is not None and production is None:
        raise InvalidRecord(
            f"review evidence of {candidate.domain.name} v{candidate.number} carries "
            "production's predictions but no production version was given; pass production "
            "(its number and metrics) or leave its predictions out"
        )
    split, target, task = evidence.split, evidence.target_field, evidence.task
    record_predictions(
        s, candidate, data, split, evidence.candidate, target_field=target, task=task
    )
    if production is not None and evidence.production is not None:
        record_predictions(
            s, production, data, split, evidence.production, target_field=target, task=task
        )
    if evidence.thumbnails:
        record_thumbnails(s, data, split, evidence.thumbnails)
