"""What the registry returns: frozen dataclasses, never ORM rows (each model's `to_record()`
builds its record); and `ReviewEvidence`, what a retrain hands it with a candidate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .constants import PRODUCTION
from .tallies import CONFIDENCE_BINS, LATENCY_BUCKETS_MS, add_bins, merge_counts


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
    trigger: dict[str, Any] | None = None
    """Why the run that registered it started, when something other than its cron or a
    person started it: {"reason": "drift", "drift": ..., "threshold": ...}."""

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

    @property
    def shadow_passed(self) -> bool | None:
        """Whether the policy's shadow rule held when the request was approved (None: the
        policy has no shadow rule, or the request was not approved)."""
        shadow = self.policy_report.get("shadow")
        return None if shadow is None else bool(shadow.get("passed"))


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


# ---------------------------------------------------------------------- live evidence
WINDOW_RANGE = (50, 1_000_000)
"""Allowed drift window sizes: below 50 predictions PSI says little (its small-sample bias
grows as 1/window)."""


@dataclass(frozen=True)
class MonitoringSettings(_Record):
    """A domain's `monitoring:` block, as servers and the drift check read it from the
    registry (`mpt run` writes it from domain.yaml)."""

    shadow_fraction: float = 0.0
    """Share of production's items the shadow version also answers (0: no shadow)."""
    shadow_alias: str | None = None
    """The alias whose version shadows production; None: the version of the domain's
    open promotion request to production (the newest, if several are pending)."""
    keep_images: bool = False
    """Shadow disagreements keep a thumbnail of the image; otherwise only its sha256."""
    window: int = 1000
    """Production predictions per domain the drift is measured over (a sliding window)."""
    drift_threshold: float | None = None
    """Drift (PSI) above which the drift check starts a retrain; None: never."""
    cooldown_hours: float = 24.0
    """At most one drift-triggered retrain of the domain in this many hours."""

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> MonitoringSettings:
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in (data or {})}
        return cls(**known)


@dataclass(frozen=True)
class MonitorTarget(_Record):
    """What a server monitors for one domain: its settings, and the version that shadows
    production (None: no shadow), with where it comes from ("request #3", "alias staging")."""

    domain: str
    settings: MonitoringSettings
    shadow: int | None = None
    shadow_source: str | None = None


@dataclass(frozen=True)
class ShadowTally(_Record):
    """What one server saw of one shadow version against one production version since its
    last report: counts only, so tallies of several replicas and flushes add up."""

    domain: str
    version: int
    """The shadow version."""
    production: int
    """The production version it was compared with."""
    requests: int = 0
    """Items the shadow answered."""
    agreed: int = 0
    """Of those, items where it predicted what production predicted (top-1 / exact match)."""
    similarity_sum: float = 0.0
    """Generated text: the sum of the text similarity (token F1) of the two answers."""
    similarity_n: int = 0
    errors: int = 0
    """Items the shadow failed on (its exception is in the server's log)."""
    dropped: int = 0
    """Items sampled for the shadow but dropped because its queue was full."""
    latency_ms: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS_MS) + 1)
    """Shadow compute time per item, counted in LATENCY_BUCKETS_MS."""
    shadow_values: dict[str, int] = field(default_factory=dict)
    production_values: dict[str, int] = field(default_factory=dict)
    shadow_confidence: tuple[int, ...] = (0,) * CONFIDENCE_BINS
    production_confidence: tuple[int, ...] = (0,) * CONFIDENCE_BINS

    def __add__(self, other: ShadowTally) -> ShadowTally:
        """Both tallies of the same pair of versions in one (counts capped as they add)."""
        if (self.domain, self.version, self.production) != (
            other.domain,
            other.version,
            other.production,
        ):
            raise ValueError("only tallies of the same shadow and production versions add up")
        return ShadowTally(
            domain=self.domain,
            version=self.version,
            production=self.production,
            requests=self.requests + other.requests,
            agreed=self.agreed + other.agreed,
            similarity_sum=self.similarity_sum + other.similarity_sum,
            similarity_n=self.similarity_n + other.similarity_n,
            errors=self.errors + other.errors,
            dropped=self.dropped + other.dropped,
            latency_ms=add_bins(self.latency_ms, other.latency_ms),
            shadow_values=merge_counts(self.shadow_values, other.shadow_values),
            production_values=merge_counts(self.production_values, other.production_values),
            shadow_confidence=add_bins(self.shadow_confidence, other.shadow_confidence),
            production_confidence=add_bins(self.production_confidence, other.production_confidence),
        )


@dataclass(frozen=True)
class ShadowSample(_Record):
    """One item where the shadow and production disagreed."""

    domain: str
    version: int
    production: int
    at: datetime
    image_sha256: str
    inputs: dict[str, Any]
    """The item's task inputs besides the image (a question), as sent."""
    production_value: str | None
    production_score: float | None
    shadow_value: str | None
    shadow_score: float | None
    thumbnail: bytes | None = None
    """A JPEG of the image, only where the domain keeps images (`keep_images`)."""


@dataclass(frozen=True)
class DriftPoint(_Record):
    """Drift of a domain's production predictions at one moment, as one server measured it
    over its window: the population stability index of the predicted values and of the
    binned confidences against the version's stored test-split predictions."""

    domain: str
    version: int
    at: datetime
    drift: float
    """The larger of the components: what a threshold is compared with."""
    components: dict[str, float]
    """{"predictions": psi, "confidence": psi} (confidence only where the task scores)."""
    samples: int
    """Production predictions in the window it was measured over."""


@dataclass(frozen=True)
class MonitoringReport:
    """One flush of a server: tallies, disagreement samples and drift points."""

    tallies: list[ShadowTally] = field(default_factory=list)
    samples: list[ShadowSample] = field(default_factory=list)
    drift: list[DriftPoint] = field(default_factory=list)


@dataclass(frozen=True)
class ShadowEvidence(_Record):
    """Everything servers reported of a shadow version against one production version:
    the tallies summed, and the newest disagreement samples."""

    domain: str
    version: int
    production: int
    tally: ShadowTally
    first_at: datetime | None
    last_at: datetime | None
    samples: list[ShadowSample] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.tally.requests

    @property
    def agreement(self) -> float | None:
        return self.tally.agreed / self.tally.requests if self.tally.requests else None

    @property
    def similarity(self) -> float | None:
        t = self.tally
        return t.similarity_sum / t.similarity_n if t.similarity_n else None
