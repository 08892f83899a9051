"""Prompt versions (immutable, numbered per domain, with their lineage) and their
evaluations (metrics of a version on one split of one data version)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, contains_eager, joinedload, selectinload

from .. import models as m
from ..errors import NotFoundError, RuleViolation
from ..lineage import config_hash, git_commit, package_version

if TYPE_CHECKING:
    from ..store import StoredArtifact

RECORD = (
    joinedload(m.PromptVersion.data_version),
    joinedload(m.PromptVersion.backbone),
    selectinload(m.PromptVersion.evaluations).joinedload(m.Evaluation.data_version),
    selectinload(m.PromptVersion.aliases),
)
"""What `PromptVersion.to_record` reads besides its domain, loaded with the rows: listing
N versions is a constant number of queries."""


def _select_records() -> Select[tuple[m.PromptVersion]]:
    """Versions joined with their domain (filter and order by its name), records loaded."""
    return (
        select(m.PromptVersion)
        .join(m.PromptVersion.domain)
        .options(contains_eager(m.PromptVersion.domain), *RECORD)
    )


def read(s: Session, d: m.Domain, number: int) -> m.PromptVersion:
    """Version `number` of `d` (what its record names loaded with it), or a NotFoundError
    naming the versions that exist."""
    row = s.scalar(
        select(m.PromptVersion)
        .where(m.PromptVersion.domain_id == d.id, m.PromptVersion.number == number)
        .options(joinedload(m.PromptVersion.domain), *RECORD)
    )
    if row is None:
        raise NotFoundError(
            f"{d.name} v{number} does not exist; versions are 1..{latest_number(s, d) or 0}"
        )
    return row


def latest_number(s: Session, d: m.Domain) -> int | None:
    return s.scalar(
        select(func.max(m.PromptVersion.number)).where(m.PromptVersion.domain_id == d.id)
    )


def read_all(s: Session, domain: str | None = None) -> list[m.PromptVersion]:
    """Every version (of `domain`), by domain name and number, ready for `to_record`."""
    query = _select_records()
    if domain:
        query = query.where(m.Domain.name == domain)
    return list(s.scalars(query.order_by(m.Domain.name, m.PromptVersion.number)))


def find_tuned(
    s: Session,
    domain: str,
    *,
    data_version: str,
    backbone_sha256: str,
    config: dict[str, Any],
    code_version: str,
) -> m.PromptVersion | None:
    """The latest version tuned from the same data, backbone, config and code, if any."""
    return s.scalar(
        _select_records()
        .join(m.DataVersion, m.PromptVersion.data_version_id == m.DataVersion.id)
        .join(m.Backbone, m.PromptVersion.backbone_id == m.Backbone.id)
        .where(
            m.Domain.name == domain,
            m.DataVersion.md5 == data_version,
            m.Backbone.weights_sha256 == backbone_sha256,
            m.PromptVersion.config_hash == config_hash(config),
            m.PromptVersion.code_version == code_version,
        )
        .order_by(m.PromptVersion.number.desc())
        .limit(1)
    )


def of_flow_run(
    s: Session, d: m.Domain, data: m.DataVersion, flow_run_id: str
) -> m.PromptVersion | None:
    """The version flow run `flow_run_id` registered for `d` on `data`, if it did."""
    return s.scalar(
        select(m.PromptVersion).where(
            m.PromptVersion.domain_id == d.id,
            m.PromptVersion.flow_run_id == flow_run_id,
            m.PromptVersion.data_version_id == data.id,
        )
    )


def artifact_sha256s(s: Session) -> set[str]:
    """The sha256 of every artifact a version references (what `gc` must keep)."""
    return set(s.scalars(select(m.PromptVersion.artifact_sha256)))


def _backbone(s: Session, backbone: dict[str, str]) -> m.Backbone:
    identity = {k: backbone[k] for k in ("family", "name", "weights_sha256")}
    row = s.scalar(select(m.Backbone).filter_by(**identity))
    if row is None:
        row = m.Backbone(**identity)
        s.add(row)
    return row


def insert(
    s: Session,
    d: m.Domain,
    stored: StoredArtifact,
    *,
    method: str,
    config: dict[str, Any],
    data: m.DataVersion,
    backbone: dict[str, str],
    metrics: dict[str, dict[str, Any]],
    created_by: str,
    flow_run_id: str | None,
    code_version: str | None,
    commit: str | None = None,
    training_history: list[dict[str, Any]] | None = None,
    search: dict[str, Any] | None = None,
    primary_metric: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> m.PromptVersion:
    """Version N+1 of `d` with its lineage and its metrics per split on its own data
    version. Refused on data that failed validation. The unique (domain, number)
    constraint turns a concurrent registration into a ConflictError at commit."""
    if not data.validation_passed:
        raise RuleViolation(
            f"data version {data.md5} of {d.name} failed validation; a prompt "
            "version cannot be registered on it"
        )
    v = m.PromptVersion(
        domain=d,
        number=(latest_number(s, d) or 0) + 1,
        method=method,
        config=config,
        config_hash=config_hash(config),
        artifact_uri=stored.uri,
        artifact_sha256=stored.sha256,
        artifact_size=stored.size,
        data_version=data,
        backbone=_backbone(s, backbone),
        code_version=code_version or package_version(),
        git_commit=commit if commit is not None else git_commit(),
        flow_run_id=flow_run_id,
        created_by=created_by,
        training_history=training_history,
        search=search,
        primary_metric=primary_metric,
        trigger=trigger,
        aliases=[],  # a new version has none: nothing to load
        evaluations=[
            m.Evaluation(data_version=data, split=split, metrics=values)
            for split, values in metrics.items()
        ],
    )
    s.add(v)
    s.flush()
    return v


def record_evaluation(
    s: Session, v: m.PromptVersion, data: m.DataVersion, split: str, metrics: dict[str, Any]
) -> m.Evaluation:
    """Metrics of `v` on `split` of `data` (e.g. production on a candidate's data, so the
    policy compares like with like); replaces an older result of the same evaluation."""
    row = next(
        (e for e in v.evaluations if e.data_version_id == data.id and e.split == split), None
    )
    if row is None:
        row = m.Evaluation(data_version=data, split=split, metrics=metrics)
        v.evaluations.append(row)
    else:
        row.metrics = metrics
    s.flush()
    return row


def metrics_on(
    s: Session, version_id: int, data: m.DataVersion, split: str
) -> dict[str, Any] | None:
    """The metrics of version `version_id` on `split` of `data`, or None if not evaluated."""
    return s.scalar(
        select(m.Evaluation.metrics).where(
            m.Evaluation.version_id == version_id,
            m.Evaluation.data_version_id == data.id,
            m.Evaluation.split == split,
        )
    )


def number_of(s: Session, version_id: int | None) -> int | None:
    """The number of the version with id `version_id` (None for None)."""
    if version_id is None:
        return None
    return s.scalar(select(m.PromptVersion.number).where(m.PromptVersion.id == version_id))
