"""What travels between the flow and the tuning workers: plain, picklable data.

Only prompt tensors and metrics come back from a worker; images travel as file bytes so a
worker on another node needs no shared file system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .predictions import Evidence


@dataclass(frozen=True)
class Row:
    """One metadata row: its image file (path relative to data/) and task fields."""

    image: str
    split: str
    label: str | None = None
    caption: str | None = None
    question: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class ArtifactBlob:
    """A prompt artifact in memory: the two files `save_prompts` writes."""

    config_json: str
    tensors: bytes


@dataclass(frozen=True)
class TuneJob:
    domain: str
    task: dict[str, Any]
    """{"name": task name, **task spec} as in an artifact's prompt_config.json."""
    preset: str
    overrides: dict[str, Any]
    train_config: dict[str, Any]
    rows: list[Row]
    images: dict[str, bytes]
    """Image path (as in rows) -> file bytes."""
    production: ArtifactBlob | None = None
    """The current production prompts, evaluated on the same test split."""
    production_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Written into the candidate artifact's config (data version, flow run...)."""


@dataclass(frozen=True)
class TuneOutcome:
    domain: str
    artifact: ArtifactBlob
    metrics: dict[str, dict[str, Any]]
    """Candidate metrics per split (val, test)."""
    production_metrics: dict[str, Any] | None
    """Production's test metrics on the same data, or None without production."""
    history: list[dict[str, Any]]
    seconds: float
    """Wall time of the tuning itself (fit), in the worker."""
    worker: str
    trainable_parameters: int
    evidence: Evidence | None = None
    """Per-example test predictions of both versions and thumbnails, for reviewers."""


@dataclass(frozen=True)
class TuneFailure:
    domain: str
    error: str
    attempts: int
