"""The registry's tables: SQLAlchemy 2 typed models on one DeclarativeBase.

Constraint names follow one naming convention so Alembic migrations stay stable on
SQLite and PostgreSQL. Every schema change goes through a migration in `migrations/`.

Relationships let a row reach what its record names (a version's domain, data version,
backbone, evaluations and aliases) without a query of its own: loaded lazily for one row,
eagerly (`resources.*.RECORD`) for lists. `to_record()` turns a row into the frozen
dataclass of `records.py`; ORM rows never leave the registry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .constants import REQUEST_STATUSES, VERSION_STATUSES
from .records import (
    AliasInfo,
    AuditEntry,
    BackboneInfo,
    DataVersionInfo,
    DriftPoint,
    EvaluationInfo,
    HistoryEntry,
    MonitoringSettings,
    PredictionSet,
    RequestInfo,
    ShadowSample,
    ShadowTally,
    TaskEvidence,
    UserInfo,
    VersionInfo,
)
from .roles import ROLES

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AUDIT_OUTCOMES = ("ok", "refused")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the registry; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Domain(Base):
    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Backbone(Base):
    __tablename__ = "backbones"
    __table_args__ = (
        UniqueConstraint("family", "name", "weights_sha256", name="uq_backbones_identity"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    family: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(500))
    weights_sha256: Mapped[str] = mapped_column(String(64))

    def to_record(self) -> BackboneInfo:
        return BackboneInfo(self.family, self.name, self.weights_sha256)


class DataVersion(Base):
    __tablename__ = "data_versions"
    __table_args__ = (UniqueConstraint("domain_id", "md5", name="uq_data_versions_domain_md5"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    md5: Mapped[str] = mapped_column(String(32))
    rows: Mapped[int] = mapped_column(Integer)
    row_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    validation_passed: Mapped[bool] = mapped_column(Boolean)
    validation_summary: Mapped[str] = mapped_column(Text, default="")
    validation_key: Mapped[str | None] = mapped_column(String(64))
    """Hash of the rules and code it was validated with: unchanged data under unchanged
    rules need not be validated again."""
    report_uri: Mapped[str | None] = mapped_column(String(1000))
    rows_added: Mapped[int | None] = mapped_column(Integer)
    """Rows the import that wrote this version's table added (`mpt domain import`); None
    when no import wrote it (a table edited by hand, a first version of a demo domain)."""
    added_from: Mapped[str | None] = mapped_column(String(1000))
    """That import in words: `append 2: imagefolder /data/week-32`."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    domain: Mapped[Domain] = relationship()

    def to_record(self) -> DataVersionInfo:
        return DataVersionInfo(
            domain=self.domain.name,
            md5=self.md5,
            rows=self.rows,
            row_counts=self.row_counts,
            validation_passed=self.validation_passed,
            validation_summary=self.validation_summary,
            report_uri=self.report_uri,
            created_at=self.created_at,
            validation_key=self.validation_key,
            rows_added=self.rows_added,
            added_from=self.added_from,
        )


class PromptVersion(Base):
    """Immutable once written (the API has no update path except `status`)."""

    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("domain_id", "number", name="uq_prompt_versions_domain_number"),
        CheckConstraint(f"status IN {VERSION_STATUSES}", name="status"),
        CheckConstraint("number >= 1", name="number_positive"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    number: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config_hash: Mapped[str] = mapped_column(String(64))
    artifact_uri: Mapped[str] = mapped_column(String(1000))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    data_version_id: Mapped[int] = mapped_column(ForeignKey("data_versions.id"))
    backbone_id: Mapped[int] = mapped_column(ForeignKey("backbones.id"))
    code_version: Mapped[str] = mapped_column(String(100))
    git_commit: Mapped[str | None] = mapped_column(String(40))
    flow_run_id: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="candidate")
    training_history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """One row per epoch (epoch, train_loss, val_<metric>, ...), for the training curve."""
    search: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The hyper-parameter search that chose the config: every trial's validation metric,
    the chosen params, the space and the folds (None when the domain searched nothing)."""
    primary_metric: Mapped[str | None] = mapped_column(String(100))
    """The metric the version is judged by, as its domain declared it at registration (None
    on versions registered before it was stored, or without a domain)."""
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Why the run that registered it started, when not its cron or a person (drift)."""

    domain: Mapped[Domain] = relationship()
    data_version: Mapped[DataVersion] = relationship()
    backbone: Mapped[Backbone] = relationship()
    evaluations: Mapped[list[Evaluation]] = relationship(
        back_populates="version", order_by="Evaluation.id"
    )
    aliases: Mapped[list[Alias]] = relationship(back_populates="version", order_by="Alias.name")

    def to_record(self) -> VersionInfo:
        return VersionInfo(
            domain=self.domain.name,
            number=self.number,
            status=self.status,
            method=self.method,
            config=self.config,
            config_hash=self.config_hash,
            artifact_uri=self.artifact_uri,
            artifact_sha256=self.artifact_sha256,
            artifact_size=self.artifact_size,
            data_version=self.data_version.md5,
            backbone=self.backbone.to_record(),
            code_version=self.code_version,
            git_commit=self.git_commit,
            flow_run_id=self.flow_run_id,
            created_by=self.created_by,
            created_at=self.created_at,
            aliases=[a.name for a in self.aliases],
            evaluations=[e.to_record() for e in self.evaluations],
            training_history=self.training_history or [],
            search=self.search,
            primary_metric=self.primary_metric,
            trigger=self.trigger,
        )


class Evaluation(Base):
    """Metrics of one prompt version on one split of one data version."""

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint("version_id", "data_version_id", "split", name="uq_evaluations_once"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    data_version_id: Mapped[int] = mapped_column(ForeignKey("data_versions.id"))
    split: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    version: Mapped[PromptVersion] = relationship(back_populates="evaluations")
    data_version: Mapped[DataVersion] = relationship()

    def to_record(self) -> EvaluationInfo:
        return EvaluationInfo(self.data_version.md5, self.split, self.metrics, self.created_at)


class Alias(Base):
    """A mutable name (production, staging, ...) pointing at exactly one version."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_aliases_domain_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    name: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    domain: Mapped[Domain] = relationship()
    version: Mapped[PromptVersion] = relationship(back_populates="aliases")

    def to_record(self) -> AliasInfo:
        return AliasInfo(self.domain.name, self.name, self.version.number, self.updated_at)


class PromotionRequest(Base):
    __tablename__ = "promotion_requests"
    __table_args__ = (CheckConstraint(f"status IN {REQUEST_STATUSES}", name="status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    alias: Mapped[str] = mapped_column(String(100))
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id"))
    """What the alias pointed at when the request was opened (the policy's baseline)."""
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    policy_passed: Mapped[bool] = mapped_column(Boolean)
    policy_report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reviewer: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column()
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("promotion_requests.id"))
    """The request that replaced this one when its baseline moved (status superseded)."""

    domain: Mapped[Domain] = relationship()
    version: Mapped[PromptVersion] = relationship(foreign_keys=[version_id])
    base_version: Mapped[PromptVersion | None] = relationship(foreign_keys=[base_version_id])

    def to_record(self) -> RequestInfo:
        return RequestInfo(
            id=self.id,
            domain=self.domain.name,
            version=self.version.number,
            alias=self.alias,
            base_version=_number(self.base_version),
            requested_by=self.requested_by,
            requested_at=self.requested_at,
            status=self.status,
            policy_passed=self.policy_passed,
            policy_report=self.policy_report,
            reviewer=self.reviewer,
            comment=self.comment,
            decided_at=self.decided_at,
            superseded_by=self.superseded_by_id,
        )


class AliasHistory(Base):
    """Append-only: one row per alias move. Never updated or deleted."""

    __tablename__ = "alias_history"
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    alias: Mapped[str] = mapped_column(String(100))
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id"))
    to_version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    kind: Mapped[str] = mapped_column(String(20))
    """promotion | override | rollback | set"""
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("promotion_requests.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    domain: Mapped[Domain] = relationship()
    from_version: Mapped[PromptVersion | None] = relationship(foreign_keys=[from_version_id])
    to_version: Mapped[PromptVersion] = relationship(foreign_keys=[to_version_id])

    def to_record(self) -> HistoryEntry:
        return HistoryEntry(
            id=self.id,
            domain=self.domain.name,
            alias=self.alias,
            from_version=_number(self.from_version),
            to_version=self.to_version.number,
            kind=self.kind,
            actor=self.actor,
            reason=self.reason,
            request_id=self.request_id,
            at=self.at,
        )


# ---------------------------------------------------------------------- identities
class User(Base):
    """A person with a role, proven by a token of which only a salted scrypt hash is kept;
    or a service account (the retrain flow) that has no token and never logs in."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN {ROLES}", name="role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    """Public part of the token, to find the row without trying every hash."""
    token_salt: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str | None] = mapped_column(String(128))
    service: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    token_rotated_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()

    def to_record(self) -> UserInfo:
        """The user without the token's salt and hash, which never leave the registry."""
        return UserInfo(
            name=self.name,
            role=self.role,
            active=self.active,
            service=self.service,
            created_by=self.created_by,
            created_at=self.created_at,
            token_rotated_at=self.token_rotated_at,
            revoked_at=self.revoked_at,
            last_login_at=self.last_login_at,
        )


class UserSession(Base):
    """A browser session: the cookie carries a random secret, the row only its sha256."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    address: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship()


class AuditRecord(Base):
    """Append-only: who did (or was refused) what, when, from which address."""

    __tablename__ = "audit_log"
    __table_args__ = (CheckConstraint(f"outcome IN {AUDIT_OUTCOMES}", name="outcome"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(200))
    domain: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[int | None] = mapped_column(Integer)
    """No foreign key: a refused action may name a request that does not exist."""
    version: Mapped[int | None] = mapped_column(Integer)
    alias: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def to_record(self) -> AuditEntry:
        return AuditEntry(
            id=self.id,
            at=self.at,
            actor=self.actor,
            action=self.action,
            outcome=self.outcome,
            address=self.address,
            domain=self.domain,
            request_id=self.request_id,
            version=self.version,
            alias=self.alias,
            detail=self.detail,
        )


class ProtectedAlias(Base):
    """An alias that, like production, only a reviewer or admin may move (auth on)."""

    __tablename__ = "protected_aliases"
    __table_args__ = (
        UniqueConstraint("domain_id", "name", name="uq_protected_aliases_domain_name"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    name: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------------- review evidence
class Prediction(Base):
    """Per-example predictions of one version on one split of one data version, stored
    when the flow evaluates it, so review pages never run a model."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("version_id", "data_version_id", "split", name="uq_predictions_once"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    data_version_id: Mapped[int] = mapped_column(ForeignKey("data_versions.id"))
    split: Mapped[str] = mapped_column(String(20))
    target_field: Mapped[str] = mapped_column(String(50))
    rows: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """[{"image", "question"?, "target", "prediction", "score", "quality"?}] in the split's
    row order."""
    task: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """`TaskEvidence.to_dict()`: what the task's contract says about the rows (None on rows
    stored before it was kept)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    version: Mapped[PromptVersion] = relationship()
    data_version: Mapped[DataVersion] = relationship()

    def to_record(self) -> PredictionSet:
        return PredictionSet(
            domain=self.version.domain.name,
            version=self.version.number,
            data_version=self.data_version.md5,
            split=self.split,
            target_field=self.target_field,
            rows=self.rows,
            created_at=self.created_at,
            task=None if self.task is None else TaskEvidence.from_dict(self.task),
        )


class Thumbnail(Base):
    """A small JPEG of one example image of a data version (disagreements only, capped)."""

    __tablename__ = "example_thumbnails"
    __table_args__ = (
        UniqueConstraint("data_version_id", "split", "image", name="uq_example_thumbnails_image"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    data_version_id: Mapped[int] = mapped_column(ForeignKey("data_versions.id"))
    split: Mapped[str] = mapped_column(String(20))
    image: Mapped[str] = mapped_column(String(1000))
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------------- live evidence
class DomainMonitoring(Base):
    """A domain's `monitoring:` settings as servers read them, and when a drift check last
    started a retrain of it (the compare-and-swap that keeps one retrain per cooldown)."""

    __tablename__ = "domain_monitoring"
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_retrain_at: Mapped[datetime | None] = mapped_column()

    domain: Mapped[Domain] = relationship()

    def to_record(self) -> MonitoringSettings:
        return MonitoringSettings.from_dict(self.settings)


class ShadowStats(Base):
    """Counts of one shadow version against one production version, summed over every
    server's reports: a fixed number of columns and capped JSON, one row per pair."""

    __tablename__ = "shadow_stats"
    __table_args__ = (
        UniqueConstraint("version_id", "production_version_id", name="uq_shadow_stats_pair"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    production_version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    agreed: Mapped[int] = mapped_column(BigInteger, default=0)
    similarity_sum: Mapped[float] = mapped_column(Float, default=0.0)
    similarity_n: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[list[int]] = mapped_column(JSON)
    shadow_values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    production_values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    shadow_confidence: Mapped[list[int]] = mapped_column(JSON)
    production_confidence: Mapped[list[int]] = mapped_column(JSON)
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)

    domain: Mapped[Domain] = relationship()
    version: Mapped[PromptVersion] = relationship(foreign_keys=[version_id])
    production_version: Mapped[PromptVersion] = relationship(foreign_keys=[production_version_id])

    def to_record(self) -> ShadowTally:
        return ShadowTally(
            domain=self.domain.name,
            version=self.version.number,
            production=self.production_version.number,
            requests=self.requests,
            agreed=self.agreed,
            similarity_sum=self.similarity_sum,
            similarity_n=self.similarity_n,
            errors=self.errors,
            dropped=self.dropped,
            latency_ms=tuple(self.latency_ms),
            shadow_values=dict(self.shadow_values),
            production_values=dict(self.production_values),
            shadow_confidence=tuple(self.shadow_confidence),
            production_confidence=tuple(self.production_confidence),
        )


class ShadowDisagreement(Base):
    """One item where a shadow version and production disagreed; the newest are kept,
    a fixed number per pair of versions."""

    __tablename__ = "shadow_disagreements"
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"), index=True)
    production_version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    image_sha256: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    production_value: Mapped[str | None] = mapped_column(Text)
    production_score: Mapped[float | None] = mapped_column(Float)
    shadow_value: Mapped[str | None] = mapped_column(Text)
    shadow_score: Mapped[float | None] = mapped_column(Float)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)

    domain: Mapped[Domain] = relationship()
    version: Mapped[PromptVersion] = relationship(foreign_keys=[version_id])
    production_version: Mapped[PromptVersion] = relationship(foreign_keys=[production_version_id])

    def to_record(self) -> ShadowSample:
        return ShadowSample(
            domain=self.domain.name,
            version=self.version.number,
            production=self.production_version.number,
            at=self.at,
            image_sha256=self.image_sha256,
            inputs=dict(self.inputs),
            production_value=self.production_value,
            production_score=self.production_score,
            shadow_value=self.shadow_value,
            shadow_score=self.shadow_score,
            thumbnail=self.thumbnail,
        )


class DriftMeasure(Base):
    """Drift of a domain's production predictions at one moment; the newest are kept, a
    fixed number per domain."""

    __tablename__ = "drift_points"
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    drift: Mapped[float] = mapped_column(Float)
    components: Mapped[dict[str, Any]] = mapped_column(default=dict)
    samples: Mapped[int] = mapped_column(Integer)

    domain: Mapped[Domain] = relationship()
    version: Mapped[PromptVersion] = relationship()

    def to_record(self) -> DriftPoint:
        return DriftPoint(
            domain=self.domain.name,
            version=self.version.number,
            at=self.at,
            drift=self.drift,
            components=dict(self.components),
            samples=self.samples,
        )


def _number(version: PromptVersion | None) -> int | None:
    return None if version is None else version.number
