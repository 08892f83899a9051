"""Live evidence from the servers: each domain's monitoring settings, what its shadow
version answered of production's traffic (tallies and a capped sample of disagreements),
the drift of production's predictions over time, and the compare-and-swap that lets a
drift check start at most one retrain of a domain per cooldown.

Everything a server reports is bounded: one tally row per (shadow, production) pair whose
counts add up across servers and flushes (`ShadowTally.__add__`), the newest
MAX_DISAGREEMENTS disagreements per pair and the newest MAX_DRIFT_POINTS drift points
per domain; older ones are deleted in the transaction that adds new ones.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased, joinedload

from .. import models as m
from ..constants import PRODUCTION
from ..errors import InvalidRecord, NotFoundError
from ..records import (
    WINDOW_RANGE,
    DriftPoint,
    MonitoringReport,
    MonitoringSettings,
    MonitorTarget,
    ShadowEvidence,
    ShadowSample,
    ShadowTally,
)
from ..tallies import CONFIDENCE_BINS, LATENCY_BUCKETS_MS, MAX_VALUES
from . import domains
from .evidence import MAX_THUMBNAIL_BYTES

MAX_DISAGREEMENTS = 48
"""Disagreement samples kept per (shadow, production) pair: the newest."""
MAX_DRIFT_POINTS = 1440
"""Drift points kept per domain: the newest (a day at one point a minute)."""
MAX_INPUTS = 8
MAX_INPUT_CHARS = 1000
MAX_VALUE_CHARS = 2000
"""A stored predicted value (a generated caption) is cut to this many characters."""
SHA256 = re.compile(r"^[0-9a-f]{64}$")
RECORD_STATS = (
    joinedload(m.ShadowStats.domain),
    joinedload(m.ShadowStats.version),
    joinedload(m.ShadowStats.production_version),
)
RECORD_SAMPLE = (
    joinedload(m.ShadowDisagreement.domain),
    joinedload(m.ShadowDisagreement.version),
    joinedload(m.ShadowDisagreement.production_version),
)
RECORD_DRIFT = (joinedload(m.DriftMeasure.domain), joinedload(m.DriftMeasure.version))


# ---------------------------------------------------------------------- settings
def check_settings(domain: str, settings: MonitoringSettings) -> MonitoringSettings:
    """The settings, or an InvalidRecord naming the field, its value and what is allowed."""
    where = f"monitoring settings of {domain}"
    problems = []
    if not 0.0 <= settings.shadow_fraction <= 1.0:
        problems.append(f"shadow_fraction {settings.shadow_fraction!r} must be in [0, 1]")
    if settings.shadow_alias == PRODUCTION:
        problems.append(
            "shadow_alias 'production' would compare production with itself; name another "
            "alias (staging) or leave it unset to shadow the open promotion request"
        )
    low, high = WINDOW_RANGE
    if not low <= settings.window <= high:
        problems.append(f"window {settings.window!r} must be in [{low}, {high}]")
    threshold = settings.drift_threshold
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        problems.append(f"drift_threshold {threshold!r} must be a positive number, or unset")
    if not (math.isfinite(settings.cooldown_hours) and settings.cooldown_hours >= 0):
        problems.append(f"cooldown_hours {settings.cooldown_hours!r} must be 0 or more")
    if problems:
        raise InvalidRecord(f"{where}: " + "; ".join(problems))
    return settings


def find_settings(s: Session, domain: str) -> m.DomainMonitoring | None:
    return s.scalar(
        select(m.DomainMonitoring).join(m.DomainMonitoring.domain).where(m.Domain.name == domain)
    )


def set_settings(
    s: Session, domain: str, settings: MonitoringSettings, *, actor: str
) -> tuple[m.DomainMonitoring, bool]:
    """Store the domain's settings; returns the row and whether anything changed."""
    check_settings(domain, settings)
    row = find_settings(s, domain)
    wanted = settings.to_dict()
    if row is not None and row.settings == wanted:
        return row, False
    if row is None:
        row = m.DomainMonitoring(domain=domains.ensure(s, domain), settings=wanted)
        s.add(row)
    row.settings, row.updated_by, row.updated_at = wanted, actor, m.utcnow()
    s.flush()
    return row, True


def targets(s: Session) -> dict[str, MonitorTarget]:
    """Every domain with monitoring settings -> its settings and shadow version, in three
    queries (settings; pending requests to production; the aliases the settings name)."""
    rows = list(
        s.scalars(select(m.DomainMonitoring).options(joinedload(m.DomainMonitoring.domain)))
    )
    pending: dict[str, tuple[int, int]] = {}
    for name, number, request_id in s.execute(
        select(m.Domain.name, m.PromptVersion.number, m.PromotionRequest.id)
        .join(m.PromotionRequest, m.PromotionRequest.domain_id == m.Domain.id)
        .join(m.PromptVersion, m.PromptVersion.id == m.PromotionRequest.version_id)
        .where(m.PromotionRequest.status == "pending", m.PromotionRequest.alias == PRODUCTION)
        .order_by(m.PromotionRequest.id)
    ):
        pending[name] = (number, request_id)  # the newest open request wins
    names = {r.to_record().shadow_alias for r in rows} - {None}
    aliased: dict[tuple[str, str], int] = {}
    for name, alias, number in s.execute(
        select(m.Domain.name, m.Alias.name, m.PromptVersion.number)
        .join(m.Alias, m.Alias.domain_id == m.Domain.id)
        .join(m.PromptVersion, m.PromptVersion.id == m.Alias.version_id)
        .where(m.Alias.name.in_(names | {PRODUCTION}))
    ):
        aliased[(name, alias)] = number
    out = {}
    for row in rows:
        name, settings = row.domain.name, row.to_record()
        shadow, source = None, None
        if settings.shadow_fraction > 0:
            if settings.shadow_alias:
                shadow = aliased.get((name, settings.shadow_alias))
                source = f"alias {settings.shadow_alias}"
            elif name in pending:
                shadow, request_id = pending[name]
                source = f"request #{request_id}"
        if shadow is not None and shadow == aliased.get((name, PRODUCTION)):
            shadow, source = None, None  # production would shadow itself
        out[name] = MonitorTarget(name, settings, shadow, source if shadow else None)
    return out


# ---------------------------------------------------------------------- a server's report
def _version_ids(s: Session, pairs: set[tuple[str, int]]) -> dict[tuple[str, int], m.PromptVersion]:
    if not pairs:
        return {}
    wanted = or_(*(and_(m.Domain.name == d, m.PromptVersion.number == n) for d, n in pairs))
    found = {
        (v.domain.name, v.number): v
        for v in s.scalars(
            select(m.PromptVersion)
            .join(m.PromptVersion.domain)
            .where(wanted)
            .options(joinedload(m.PromptVersion.domain))
        )
    }
    missing = sorted(pairs - set(found))
    if missing:
        named = ", ".join(f"{d} v{n}" for d, n in missing)
        raise NotFoundError(f"a server reported on {named}, which the registry does not hold")
    return found


def _counts(what: str, values: Any, bins: int) -> tuple[int, ...]:
    if not (
        isinstance(values, tuple | list)
        and len(values) == bins
        and all(isinstance(v, int) and v >= 0 for v in values)
    ):
        raise InvalidRecord(f"{what}: expected {bins} non-negative counts, got {values!r}")
    return tuple(values)


def check_tally(t: ShadowTally) -> ShadowTally:
    what = f"shadow tally of {t.domain} v{t.version} against v{t.production}"
    numbers = (t.requests, t.agreed, t.similarity_n, t.errors, t.dropped)
    if any(not isinstance(n, int) or n < 0 for n in numbers) or t.agreed > t.requests:
        raise InvalidRecord(f"{what}: counts must be non-negative, agreed <= requests")
    if not (math.isfinite(t.similarity_sum) and 0 <= t.similarity_sum <= t.similarity_n):
        raise InvalidRecord(f"{what}: similarity_sum must be in [0, similarity_n]")
    _counts(f"{what}, latency_ms", t.latency_ms, len(LATENCY_BUCKETS_MS) + 1)
    for name in ("shadow_confidence", "production_confidence"):
        _counts(f"{what}, {name}", getattr(t, name), CONFIDENCE_BINS)
    for name in ("shadow_values", "production_values"):
        values = getattr(t, name)
        if len(values) > MAX_VALUES or any(
            not isinstance(n, int) or n < 0 for n in values.values()
        ):
            raise InvalidRecord(
                f"{what}: {name} must count at most {MAX_VALUES} values (merge_counts)"
            )
    return t


def _add_tally(s: Session, t: ShadowTally, versions: dict, now: datetime) -> None:
    v, prod = versions[(t.domain, t.version)], versions[(t.domain, t.production)]
    pair = (m.ShadowStats.version_id == v.id, m.ShadowStats.production_version_id == prod.id)
    # Replicas report concurrently, and their counts must all add up: write to the row
    # first, which locks it (PostgreSQL: the row; SQLite: the file) until this transaction
    # ends, then read what it holds. Reading first would let two writers add to one value.
    locked = s.execute(
        update(m.ShadowStats)
        .where(*pair)
        .values(last_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    row = None
    if locked:
        row = s.scalar(
            select(m.ShadowStats)
            .where(*pair)
            .options(*RECORD_STATS)
            .execution_options(populate_existing=True)
        )
    if row is None:  # a new pair: a concurrent twin fails on the unique constraint
        row = m.ShadowStats(domain_id=v.domain_id, version=v, production_version=prod, first_at=now)
        total = t
        s.add(row)
    else:
        total = row.to_record() + t
    row.requests, row.agreed, row.errors, row.dropped = (
        total.requests,
        total.agreed,
        total.errors,
        total.dropped,
    )
    row.similarity_sum, row.similarity_n = total.similarity_sum, total.similarity_n
    row.latency_ms = list(total.latency_ms)
    row.shadow_values, row.production_values = total.shadow_values, total.production_values
    row.shadow_confidence = list(total.shadow_confidence)
    row.production_confidence = list(total.production_confidence)
    row.last_at = now


def _check_sample(x: ShadowSample) -> None:
    what = f"shadow disagreement of {x.domain} v{x.version}"
    if not SHA256.match(x.image_sha256 or ""):
        raise InvalidRecord(f"{what}: image_sha256 must be 64 lower-case hex digits")
    if not isinstance(x.inputs, dict) or len(x.inputs) > MAX_INPUTS:
        raise InvalidRecord(f"{what}: inputs must be a dict of at most {MAX_INPUTS} fields")
    for name, value in x.inputs.items():
        if not isinstance(value, str) or len(value) > MAX_INPUT_CHARS:
            raise InvalidRecord(
                f"{what}: input {name!r} must be text of at most {MAX_INPUT_CHARS} characters"
            )
    for score in (x.production_score, x.shadow_score):
        if score is not None and not (math.isfinite(score) and 0 <= score <= 1):
            raise InvalidRecord(f"{what}: a score must be in [0, 1] or None; got {score!r}")
    if x.thumbnail is not None and (
        not x.thumbnail.startswith(b"\xff\xd8\xff") or len(x.thumbnail) > MAX_THUMBNAIL_BYTES
    ):
        raise InvalidRecord(f"{what}: the thumbnail must be a JPEG of at most 32 KB")


def _cut(value: str | None) -> str | None:
    return None if value is None else value[:MAX_VALUE_CHARS]


def _keep_newest(s: Session, model: Any, limit: int, *where: Any) -> None:
    old = select(model.id).where(*where).order_by(model.id.desc()).offset(limit)
    stale = list(s.scalars(old))
    if stale:
        s.execute(delete(model).where(model.id.in_(stale)))


def record(s: Session, report: MonitoringReport) -> None:
    """Add one server's report: tallies added to their rows, disagreements and drift
    points appended, each kept to its cap."""
    for t in report.tallies:
        check_tally(t)
    for x in report.samples:
        _check_sample(x)
    for p in report.drift:
        if not (math.isfinite(p.drift) and p.drift >= 0 and p.samples >= 0):
            raise InvalidRecord(f"drift point of {p.domain}: drift must be a number >= 0")
    pairs = {(t.domain, n) for t in report.tallies for n in (t.version, t.production)}
    pairs |= {(x.domain, n) for x in report.samples for n in (x.version, x.production)}
    pairs |= {(p.domain, p.version) for p in report.drift}
    versions = _version_ids(s, pairs)
    now = m.utcnow()
    for t in report.tallies:
        _add_tally(s, t, versions, now)
    capped_pairs = set()
    for x in report.samples:
        v, prod = versions[(x.domain, x.version)], versions[(x.domain, x.production)]
        s.add(
            m.ShadowDisagreement(
                domain_id=v.domain_id,
                version=v,
                production_version=prod,
                at=x.at,
                image_sha256=x.image_sha256,
                inputs=dict(x.inputs),
                production_value=_cut(x.production_value),
                production_score=x.production_score,
                shadow_value=_cut(x.shadow_value),
                shadow_score=x.shadow_score,
                thumbnail=x.thumbnail,
            )
        )
        capped_pairs.add((v.id, prod.id))
    for p in report.drift:
        v = versions[(p.domain, p.version)]
        s.add(
            m.DriftMeasure(
                domain_id=v.domain_id,
                version=v,
                at=p.at,
                drift=p.drift,
                components={k: float(x) for k, x in p.components.items()},
                samples=p.samples,
            )
        )
    s.flush()
    for version_id, production_id in capped_pairs:
        _keep_newest(
            s,
            m.ShadowDisagreement,
            MAX_DISAGREEMENTS,
            m.ShadowDisagreement.version_id == version_id,
            m.ShadowDisagreement.production_version_id == production_id,
        )
    for domain_id in {versions[(p.domain, p.version)].domain_id for p in report.drift}:
        _keep_newest(s, m.DriftMeasure, MAX_DRIFT_POINTS, m.DriftMeasure.domain_id == domain_id)


# ---------------------------------------------------------------------- reading it back
def evidence(s: Session, domain: str, version: int, production: int) -> ShadowEvidence | None:
    """What servers reported of `domain` v`version` as the shadow of production
    v`production`: the tally and the newest disagreements. None when nothing was."""
    d = domains.read(s, domain)
    shadow, prod = m.PromptVersion, aliased(m.PromptVersion)
    row = s.scalar(
        select(m.ShadowStats)
        .join(shadow, shadow.id == m.ShadowStats.version_id)
        .join(prod, prod.id == m.ShadowStats.production_version_id)
        .where(m.ShadowStats.domain_id == d.id, shadow.number == version, prod.number == production)
        .options(*RECORD_STATS)
    )
    if row is None:
        return None
    samples = s.scalars(
        select(m.ShadowDisagreement)
        .where(
            m.ShadowDisagreement.version_id == row.version_id,
            m.ShadowDisagreement.production_version_id == row.production_version_id,
        )
        .order_by(m.ShadowDisagreement.id.desc())
        .limit(MAX_DISAGREEMENTS)
        .options(*RECORD_SAMPLE)
    )
    return ShadowEvidence(
        domain=domain,
        version=version,
        production=production,
        tally=row.to_record(),
        first_at=row.first_at,
        last_at=row.last_at,
        samples=[x.to_record() for x in samples],
    )


def drift_history(s: Session, domain: str, limit: int = MAX_DRIFT_POINTS) -> list[DriftPoint]:
    """The domain's newest drift points, oldest first."""
    d = domains.read(s, domain)
    rows = s.scalars(
        select(m.DriftMeasure)
        .where(m.DriftMeasure.domain_id == d.id)
        .order_by(m.DriftMeasure.id.desc())
        .limit(limit)
        .options(*RECORD_DRIFT)
    )
    return [r.to_record() for r in reversed(list(rows))]


def latest_drift(s: Session) -> dict[str, DriftPoint]:
    """Every domain with a drift point -> its newest, in one query."""
    newest = select(func.max(m.DriftMeasure.id)).group_by(m.DriftMeasure.domain_id)
    rows = s.scalars(
        select(m.DriftMeasure).where(m.DriftMeasure.id.in_(newest)).options(*RECORD_DRIFT)
    )
    return {r.domain.name: r.to_record() for r in rows}


# ---------------------------------------------------------------------- drift retrains
def claim_retrain(
    s: Session, domain: str, *, cooldown: timedelta, now: datetime
) -> tuple[bool, datetime | None]:
    """Mark a drift-triggered retrain of `domain` as started now, unless one started
    within `cooldown`: (claimed, when the last one started). A compare-and-swap, so two
    checks running at once start one retrain, not two."""
    row = find_settings(s, domain)
    if row is None:
        raise NotFoundError(
            f"domain {domain!r} has no monitoring settings in the registry; `mpt run "
            f"{domain}` stores them from the monitoring: block of its domain.yaml"
        )
    previous = row.last_retrain_at
    claimed = s.execute(
        update(m.DomainMonitoring)
        .where(
            m.DomainMonitoring.id == row.id,
            or_(
                m.DomainMonitoring.last_retrain_at.is_(None),
                m.DomainMonitoring.last_retrain_at <= now - cooldown,
            ),
        )
        .values(last_retrain_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    s.expire(row)
    return claimed == 1, previous


def release_retrain(
    s: Session, domain: str, *, claimed_at: datetime, previous: datetime | None
) -> None:
    """Undo a claim whose retrain could not be started (only if nothing claimed since)."""
    row = find_settings(s, domain)
    if row is None:
        return
    s.execute(
        update(m.DomainMonitoring)
        .where(m.DomainMonitoring.id == row.id, m.DomainMonitoring.last_retrain_at == claimed_at)
        .values(last_retrain_at=previous)
        .execution_options(synchronize_session=False)
    )
