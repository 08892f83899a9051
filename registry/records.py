"""What the registry returns: frozen dataclasses, never ORM rows (each model's `to_record()`
builds its record); and `ReviewEvidence`, what a retrain hands it with a candidate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .constants import PRODUCTION


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class DataVersionInfo(_Record):
    domain: str
    md5: str
    rows: int
    row_counts: dict[str, int]
    validation_passed: bool
    validation_summary: str
    report_uri: str | None
    created_at: datetime
    validation_key: str | None = None
    rows_added: int | None = None
    """Rows the import that wrote this version's table added; None: no import did."""
    added_from: str | None = None
    """That import in words (`append 2: imagefolder /data/week-32`)."""


@dataclass(frozen=True)
class BackboneInfo(_Record):
    family: str
    name: str
    weights_sha256: str


@dataclass(frozen=True)
class EvaluationInfo(_Record):
    data_version: str
    split: str
    metrics: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class VersionInfo(_Record):
    domain: str
    number: int
    status: str
    method: str
    config: dict[str, Any]
    config_hash: str
    artifact_uri: str
    artifact_sha256: str
    artifact_size: int
    data_version: str
    backbone: BackboneInfo
    code_version: str
    git_commit: str | None
    flow_run_id: str | None
    created_by: str
    created_at: datetime
    aliases: list[str] = field(default_factory=list)
    evaluations: list[EvaluationInfo] = field(default_factory=list)
    training_history: list[dict[str, Any]] = field(default_factory=list)
    """Per-epoch rows of the tuning run (epoch, train_loss, val_<metric>...), if stored."""
    search: dict[str, Any] | None = None
    """The hyper-parameter search that chose the config (None when nothing was searched)."""
    primary_metric: str | None = None
    """The metric the version is judged by, as its domain declared it when it was
    registered; None on versions registered before it was stored."""

    @property
    def state(self) -> str:
        """What the version is now: `production` while the production alias points at it,
        else its stored status (`candidate` unless it was rejected or archived)."""
        return PRODUCTION if PRODUCTION in self.aliases else self.status

    def metrics(
        self, split: str = "test", data_version: str | None = None
    ) -> dict[str, Any] | None:
        """Metrics on `split` of `data_version` (default: the version's own data)."""
        wanted = data_version or self.data_version
        for e in self.evaluations:
            if e.data_version == wanted and e.split == split:
                return e.metrics
        return None


@dataclass(frozen=True)
class AliasInfo(_Record):
    domain: str
    alias: str
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class RequestInfo(_Record):
    id: int
    domain: str
    version: int
    alias: str
    base_version: int | None
    requested_by: str
    requested_at: datetime
    status: str
    policy_passed: bool
    policy_report: dict[str, Any]
    reviewer: str | None
    comment: str | None
    decided_at: datetime | None
    superseded_by: int | None = None
    """The id of the request that replaced this one (status superseded)."""


@dataclass(frozen=True)
class HistoryEntry(_Record):
    id: int
    domain: str
    alias: str
    from_version: int | None
    to_version: int
    kind: str
    actor: str
    reason: str
    request_id: int | None
    at: datetime


@dataclass(frozen=True)
class UserInfo(_Record):
    """A user as the registry shows it: never the token, nor its hash."""

    name: str
    role: str
    active: bool
    service: bool
    created_by: str
    created_at: datetime
    token_rotated_at: datetime | None
    revoked_at: datetime | None
    last_login_at: datetime | None


@dataclass(frozen=True)
class AuditEntry(_Record):
    id: int
    at: datetime
    actor: str
    action: str
    outcome: str
    """ok | refused"""
    address: str | None
    domain: str | None
    request_id: int | None
    version: int | None
    alias: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class TaskEvidence(_Record):
    """What a version's task contract says about its stored predictions, kept with them so
    the review pages (which never import task code) show the evidence that means something
    for that task, whatever the task is: written by the flow from `mpt_core`'s
    `TaskContract` (`flows.predictions.task_evidence`)."""

    task: str
    closed: bool
    """Predictions are one of a declared set (labels, answers): a confusion matrix and a
    per-class table mean something."""
    generates_text: bool
    """Predictions are generated text (captions, open answers): reviewers read the
    references, the candidate's and production's text side by side."""
    example_metric: str | None = None
    """What each row's `quality` measures (the metric of its example's prediction on its
    own, e.g. `cider` of the image's caption), or None when rows are right or wrong."""

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> TaskEvidence:
        return cls(
            str(stored["task"]),
            bool(stored["closed"]),
            bool(stored["generates_text"]),
            stored.get("example_metric"),
        )


@dataclass(frozen=True)
class PredictionSet(_Record):
    """Per-example predictions of one version on one split of one data version."""

    domain: str
    version: int
    data_version: str
    split: str
    target_field: str
    rows: list[dict[str, Any]]
    created_at: datetime
    task: TaskEvidence | None = None
    """What the task's contract says about the rows; None on rows stored before it was kept."""


@dataclass(frozen=True)
class ReviewEvidence:
    """What reviewers compare, registered with a candidate (`register_candidate`): the
    per-example predictions of the candidate and, when production was evaluated, of
    production, on `split` of the candidate's data version, and JPEG thumbnails of the
    examples worth a look. Rows: image (path relative to data/), the task's inputs (a
    question), target (the example's `target_field`), prediction, score (or None), and
    quality (the example's own `task.example_metric`) where the task scores examples."""

    split: str
    target_field: str
    candidate: list[dict[str, Any]]
    production: list[dict[str, Any]] | None = None
    thumbnails: dict[str, bytes] = field(default_factory=dict)
    """Image path (relative to data/) -> JPEG bytes, at most MAX_THUMBNAILS."""
    task: TaskEvidence | None = None
    """What the task's contract says about the rows (how the pages show them)."""
