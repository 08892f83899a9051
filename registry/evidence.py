"""Review evidence stored beside the versions: per-example predictions of a version on one
split of one data version, and small JPEG thumbnails of the examples reviewers look at.

Both are written by the flow when it evaluates candidate and production, and only read by
the review pages, which never run a model or open the data folder. Predictions live in a
table keyed by (version, data version, split), like the metrics they explain, so a page
reads them in one query and a version evaluated again on newer data keeps both records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .db import session_scope
from .errors import InvalidRecord
from .records import PredictionSet

MAX_THUMBNAILS = 48
"""Per call of `record_thumbnails` (the flow stores disagreements only)."""
MAX_THUMBNAIL_BYTES = 32_000
ROW_FIELDS = {"image": True, "target": True, "prediction": True, "score": False, "question": False}
"""Field -> required."""


def check_rows(rows: Any, label: str) -> list[dict[str, Any]]:
    """The rows, or an InvalidRecord naming the first bad row and field."""
    if not isinstance(rows, list):
        raise InvalidRecord(f"predictions of {label} must be a list of rows; got {type(rows)}")
    for i, row in enumerate(rows):
        where = f"predictions of {label}, row {i}"
        if not isinstance(row, dict):
            raise InvalidRecord(f"{where}: a row is a dict; got {row!r}")
        unknown = sorted(set(row) - set(ROW_FIELDS))
        if unknown:
            raise InvalidRecord(f"{where}: unknown field(s) {unknown}; allowed: {list(ROW_FIELDS)}")
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


class EvidenceAPI:
    """Evidence methods of `PromptRegistry` (mixed in; each call is one transaction)."""

    url: str
    if TYPE_CHECKING:  # PromptRegistry's lookups, which raise NotFoundError naming the thing
        _domain: Callable[..., m.Domain]
        _version: Callable[[Session, m.Domain, int], m.PromptVersion]
        _data_version: Callable[[Session, m.Domain, str], m.DataVersion]

    def record_predictions(
        self,
        domain: str,
        number: int,
        data_version: str,
        split: str,
        rows: list[dict[str, Any]],
        *,
        target_field: str,
    ) -> PredictionSet:
        """Store (or replace) the per-example predictions of `domain` v`number` on `split` of
        `data_version`. Rows: image (path relative to data/), question (if any), target,
        prediction, score (probability of the prediction, or None)."""
        label = f"{domain} v{number} on {split} of {data_version}"
        check_rows(rows, label)
        with session_scope(self.url) as s:
            d = self._domain(s, domain)
            v = self._version(s, d, number)
            data = self._data_version(s, d, data_version)
            row = s.scalar(
                select(m.Prediction).where(
                    m.Prediction.version_id == v.id,
                    m.Prediction.data_version_id == data.id,
                    m.Prediction.split == split,
                )
            )
            if row is None:
                row = m.Prediction(version_id=v.id, data_version_id=data.id, split=split)
                s.add(row)
            row.rows, row.target_field, row.created_at = rows, target_field, m.utcnow()
            s.flush()
            return PredictionSet(
                domain, number, data_version, split, target_field, rows, row.created_at
            )

    def predictions(
        self, domain: str, number: int, data_version: str, split: str = "test"
    ) -> PredictionSet | None:
        """Stored predictions of a version on a split of a data version, or None."""
        with session_scope(self.url) as s:
            found = s.execute(
                select(m.Prediction)
                .join(m.PromptVersion, m.Prediction.version_id == m.PromptVersion.id)
                .join(m.Domain, m.PromptVersion.domain_id == m.Domain.id)
                .join(m.DataVersion, m.Prediction.data_version_id == m.DataVersion.id)
                .where(
                    m.Domain.name == domain,
                    m.PromptVersion.number == number,
                    m.DataVersion.md5 == data_version,
                    m.Prediction.split == split,
                )
            ).scalar()
            if found is None:
                return None
            return PredictionSet(
                domain,
                number,
                data_version,
                split,
                found.target_field,
                found.rows,
                found.created_at,
            )

    def record_thumbnails(
        self, domain: str, data_version: str, split: str, thumbnails: dict[str, bytes]
    ) -> int:
        """Store JPEG thumbnails of example images (image path -> bytes), at most
        MAX_THUMBNAILS per call, replacing older ones of the same images. Returns how many."""
        check_thumbnails(thumbnails, f"{domain} {split} of {data_version}")
        with session_scope(self.url) as s:
            d = self._domain(s, domain)
            data = self._data_version(s, d, data_version)
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
            return len(thumbnails)

    def thumbnails(
        self, domain: str, data_version: str, split: str, images: Iterable[str] | None = None
    ) -> dict[str, bytes]:
        """Stored thumbnails of `images` (default: all) of a split of a data version."""
        wanted = None if images is None else list(images)
        with session_scope(self.url) as s:
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
            if wanted is not None:
                query = query.where(m.Thumbnail.image.in_(wanted))
            return {image: bytes(jpeg) for image, jpeg in s.execute(query)}

    def domains(self) -> list[str]:
        """Names of every domain with at least one registered version, sorted."""
        with session_scope(self.url) as s:
            return list(
                s.scalars(
                    select(m.Domain.name)
                    .join(m.PromptVersion, m.PromptVersion.domain_id == m.Domain.id)
                    .group_by(m.Domain.name)
                    .order_by(m.Domain.name)
                )
            )
