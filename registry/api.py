"""The registry's Python API. Each public method is one transaction (the boundary owns it);
the rules live here, not in the CLI: reviewer != requester, terminal decisions, production
only through an approved request that passed its policy (or a recorded override), atomic
alias moves, append-only history.
"""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import models as m
from .constants import PRODUCTION
from .db import session_scope
from .errors import ConflictError, NotFoundError, RuleViolation
from .evidence import EvidenceAPI
from .identity import IdentityAPI, alias_role, append_audit, audited, authorize
from .lineage import config_hash, git_commit, package_version
from .policy import Policy, evaluate_policy, per_group
from .records import (
    AliasInfo,
    BackboneInfo,
    DataVersionInfo,
    EvaluationInfo,
    HistoryEntry,
    RequestInfo,
    VersionInfo,
)
from .settings import RegistrySettings
from .store import ArtifactStore, StoredArtifact, open_store, pack_files


def current_user() -> str:
    return getpass.getuser()


def open_registry(settings: RegistrySettings | None = None) -> PromptRegistry:
    """The registry from MPT_* settings. The embedded SQLite default migrates itself;
    a server database is migrated explicitly (`mpt registry upgrade`)."""
    from .migrate import upgrade

    settings = settings or RegistrySettings()
    if settings.database.startswith("sqlite"):
        upgrade(settings.database)
    return PromptRegistry.from_settings(settings)


class PromptRegistry(IdentityAPI, EvidenceAPI):
    """Prompt versions, lineage, aliases, reviewed promotions and their history; users,
    roles and the audit log (`identity.py`); review evidence (`evidence.py`).

    >>> reg = PromptRegistry.from_settings()          # MPT_DATABASE_URL, MPT_ARTIFACT_STORE
    >>> v = reg.register_version("retail", "out/retail", method="mpt", ...)
    >>> req = reg.request_promotion("retail", 1, requested_by="ana", policy=Policy("accuracy"))
    >>> reg.approve(req.id, reviewer="ben")
    """

    def __init__(self, database_url: str, store: ArtifactStore) -> None:
        self.url = database_url
        self.store = store

    @classmethod
    def from_settings(cls, settings: RegistrySettings | None = None) -> PromptRegistry:
        settings = settings or RegistrySettings()
        return cls(settings.database, open_store(settings.store_url, settings.artifact_s3_endpoint))

    # ------------------------------------------------------------------ lookups
    @staticmethod
    def _domain(s: Session, name: str, create: bool = False) -> m.Domain:
        domain = s.scalar(select(m.Domain).where(m.Domain.name == name))
        if domain is None:
            if not create:
                raise NotFoundError(f"domain {name!r} has no registered versions")
            domain = m.Domain(name=name)
            s.add(domain)
            s.flush()
        return domain

    @staticmethod
    def _version(s: Session, domain: m.Domain, number: int) -> m.PromptVersion:
        row = s.scalar(
            select(m.PromptVersion).where(
                m.PromptVersion.domain_id == domain.id, m.PromptVersion.number == number
            )
        )
        if row is None:
            latest = s.scalar(
                select(func.max(m.PromptVersion.number)).where(
                    m.PromptVersion.domain_id == domain.id
                )
            )
            raise NotFoundError(
                f"{domain.name} v{number} does not exist; versions are 1..{latest or 0}"
            )
        return row

    @staticmethod
    def _data_version(s: Session, domain: m.Domain, md5: str) -> m.DataVersion:
        row = s.scalar(
            select(m.DataVersion).where(
                m.DataVersion.domain_id == domain.id, m.DataVersion.md5 == md5
            )
        )
        if row is None:
            raise NotFoundError(
                f"data version {md5} of {domain.name} is not recorded; record it first "
                "(record_data_version) with its validation result"
            )
        return row

    @staticmethod
    def _alias(s: Session, domain: m.Domain, alias: str) -> m.Alias | None:
        return s.scalar(
            select(m.Alias).where(m.Alias.domain_id == domain.id, m.Alias.name == alias)
        )

    @staticmethod
    def _number(s: Session, version_id: int | None) -> int | None:
        if version_id is None:
            return None
        return s.scalar(select(m.PromptVersion.number).where(m.PromptVersion.id == version_id))

    def _version_info(self, s: Session, v: m.PromptVersion) -> VersionInfo:
        domain = s.get(m.Domain, v.domain_id)
        backbone = s.get(m.Backbone, v.backbone_id)
        data = s.get(m.DataVersion, v.data_version_id)
        evaluations = [
            EvaluationInfo(md5, e.split, e.metrics, e.created_at)
            for e, md5 in s.execute(
                select(m.Evaluation, m.DataVersion.md5)
                .join(m.DataVersion, m.Evaluation.data_version_id == m.DataVersion.id)
                .where(m.Evaluation.version_id == v.id)
                .order_by(m.Evaluation.id)
            )
        ]
        aliases = list(
            s.scalars(select(m.Alias.name).where(m.Alias.version_id == v.id).order_by(m.Alias.name))
        )
        return VersionInfo(
            domain=domain.name,
            number=v.number,
            status=v.status,
            method=v.method,
            config=v.config,
            config_hash=v.config_hash,
            artifact_uri=v.artifact_uri,
            artifact_sha256=v.artifact_sha256,
            artifact_size=v.artifact_size,
            data_version=data.md5,
            backbone=BackboneInfo(backbone.family, backbone.name, backbone.weights_sha256),
            code_version=v.code_version,
            git_commit=v.git_commit,
            flow_run_id=v.flow_run_id,
            created_by=v.created_by,
            created_at=v.created_at,
            aliases=aliases,
            evaluations=evaluations,
            training_history=v.training_history or [],
            search=v.search,
        )

    def _request_info(self, s: Session, r: m.PromotionRequest) -> RequestInfo:
        return RequestInfo(
            id=r.id,
            domain=s.get(m.Domain, r.domain_id).name,
            version=self._number(s, r.version_id),
            alias=r.alias,
            base_version=self._number(s, r.base_version_id),
            requested_by=r.requested_by,
            requested_at=r.requested_at,
            status=r.status,
            policy_passed=r.policy_passed,
            policy_report=r.policy_report,
            reviewer=r.reviewer,
            comment=r.comment,
            decided_at=r.decided_at,
        )

    def _history_info(self, s: Session, h: m.AliasHistory) -> HistoryEntry:
        return HistoryEntry(
            id=h.id,
            domain=s.get(m.Domain, h.domain_id).name,
            alias=h.alias,
            from_version=self._number(s, h.from_version_id),
            to_version=self._number(s, h.to_version_id),
            kind=h.kind,
            actor=h.actor,
            reason=h.reason,
            request_id=h.request_id,
            at=h.at,
        )

    # ------------------------------------------------------------------ data and versions
    def record_data_version(
        self,
        domain: str,
        md5: str,
        *,
        rows: int,
        row_counts: dict[str, int],
        validation_passed: bool,
        validation_summary: str = "",
        report_uri: str | None = None,
        validation_key: str | None = None,
    ) -> DataVersionInfo:
        """Record a validated data version. Recording the same domain and md5 again updates
        its validation result (rules may have changed), never its identity."""
        with session_scope(self.url) as s:
            d = self._domain(s, domain, create=True)
            row = s.scalar(
                select(m.DataVersion).where(
                    m.DataVersion.domain_id == d.id, m.DataVersion.md5 == md5
                )
            )
            if row is None:
                row = m.DataVersion(domain_id=d.id, md5=md5)
                s.add(row)
            row.rows, row.row_counts = rows, row_counts
            row.validation_passed, row.validation_summary = validation_passed, validation_summary
            row.report_uri, row.validation_key = report_uri, validation_key
            s.flush()
            return self._data_info(d, row)

    def data_version(self, domain: str, md5: str) -> DataVersionInfo | None:
        """The recorded data version `md5` of `domain`, or None."""
        with session_scope(self.url) as s:
            d = s.scalar(select(m.Domain).where(m.Domain.name == domain))
            row = (
                None
                if d is None
                else s.scalar(
                    select(m.DataVersion).where(
                        m.DataVersion.domain_id == d.id, m.DataVersion.md5 == md5
                    )
                )
            )
            return None if row is None else self._data_info(d, row)

    @staticmethod
    def _data_info(d: m.Domain, row: m.DataVersion) -> DataVersionInfo:
        return DataVersionInfo(
            d.name,
            row.md5,
            row.rows,
            row.row_counts,
            row.validation_passed,
            row.validation_summary,
            row.report_uri,
            row.created_at,
            row.validation_key,
        )

    def register_version(
        self,
        domain: str,
        artifact_dir: str | Path,
        *,
        method: str,
        config: dict[str, Any],
        data_version: str,
        backbone: dict[str, str],
        metrics: dict[str, dict[str, Any]],
        created_by: str | None = None,
        flow_run_id: str | None = None,
        code_version: str | None = None,
        commit: str | None = None,
        training_history: list[dict[str, Any]] | None = None,
    ) -> VersionInfo:
        """Store the artifact (content-addressed) and write version N+1 with its lineage and
        its metrics per split on its own data version, all-or-nothing. If the database
        write fails the uploaded blob is an orphan that `gc()` removes."""
        stored = self.store.put_dir(Path(artifact_dir))
        created_by = created_by or current_user()
        with session_scope(self.url) as s:
            authorize(s, created_by, "requester", "registering a version")
            d = self._domain(s, domain, create=True)
            v = self._insert_version(
                s,
                d,
                stored,
                method=method,
                config=config,
                data=self._data_version(s, d, data_version),
                backbone=backbone,
                metrics=metrics,
                created_by=created_by,
                flow_run_id=flow_run_id,
                code_version=code_version,
                commit=commit,
                training_history=training_history,
            )
            return self._version_info(s, v)

    def register_candidate(
        self,
        domain: str,
        files: dict[str, bytes],
        *,
        method: str,
        config: dict[str, Any],
        data_version: str,
        backbone: dict[str, str],
        metrics: dict[str, dict[str, Any]],
        policy: Policy,
        production: tuple[int, dict[str, Any]] | None = None,
        created_by: str | None = None,
        flow_run_id: str | None = None,
        code_version: str | None = None,
        split: str = "test",
        training_history: list[dict[str, Any]] | None = None,
        search: dict[str, Any] | None = None,
    ) -> tuple[VersionInfo, RequestInfo | None]:
        """What a retrain registers, in ONE transaction: the candidate version (artifact
        files, lineage, metrics), production's metrics on the same data version
        (`production` = (its number, its `split` metrics)) and a promotion request checked
        against `policy`. Idempotent on retry: the same flow run, domain and data version
        give back the version (and request) registered the first time, writing nothing."""
        stored = self.store.put(pack_files(files))  # content-addressed: a retry reuses it
        created_by = created_by or current_user()
        with session_scope(self.url) as s:
            authorize(s, created_by, "requester", "registering a candidate")
            d = self._domain(s, domain, create=True)
            data = self._data_version(s, d, data_version)
            if flow_run_id:
                earlier = s.scalar(
                    select(m.PromptVersion).where(
                        m.PromptVersion.domain_id == d.id,
                        m.PromptVersion.flow_run_id == flow_run_id,
                        m.PromptVersion.data_version_id == data.id,
                    )
                )
                if earlier is not None:
                    request = s.scalar(
                        select(m.PromotionRequest)
                        .where(m.PromotionRequest.version_id == earlier.id)
                        .order_by(m.PromotionRequest.id)
                    )
                    info = self._request_info(s, request) if request else None
                    return self._version_info(s, earlier), info
            v = self._insert_version(
                s,
                d,
                stored,
                method=method,
                config=config,
                data=data,
                backbone=backbone,
                metrics=metrics,
                created_by=created_by,
                flow_run_id=flow_run_id,
                code_version=code_version,
                training_history=training_history,
                search=search,
            )
            if production is not None:
                number, prod_metrics = production
                prod = self._version(s, d, number)
                self._upsert_evaluation(s, prod, data, split, prod_metrics)
            r = self._open_request(s, d, v, requested_by=created_by, policy=policy, split=split)
            what = {"domain": d.name, "alias": r.alias, "version": v.number, "request_id": r.id}
            append_audit(s, "request", created_by, "ok", None, what)
            return self._version_info(s, v), self._request_info(s, r)

    def _insert_version(
        self,
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
    ) -> m.PromptVersion:
        if not data.validation_passed:
            raise RuleViolation(
                f"data version {data.md5} of {d.name} failed validation; a prompt "
                "version cannot be registered on it"
            )
        bb = s.scalar(
            select(m.Backbone).where(
                m.Backbone.family == backbone["family"],
                m.Backbone.name == backbone["name"],
                m.Backbone.weights_sha256 == backbone["weights_sha256"],
            )
        )
        if bb is None:
            bb = m.Backbone(**{k: backbone[k] for k in ("family", "name", "weights_sha256")})
            s.add(bb)
            s.flush()
        latest = s.scalar(
            select(func.max(m.PromptVersion.number)).where(m.PromptVersion.domain_id == d.id)
        )
        v = m.PromptVersion(
            domain_id=d.id,
            number=(latest or 0) + 1,
            method=method,
            config=config,
            config_hash=config_hash(config),
            artifact_uri=stored.uri,
            artifact_sha256=stored.sha256,
            artifact_size=stored.size,
            data_version_id=data.id,
            backbone_id=bb.id,
            code_version=code_version or package_version(),
            git_commit=commit if commit is not None else git_commit(),
            flow_run_id=flow_run_id,
            created_by=created_by,
            training_history=training_history,
            search=search,
        )
        s.add(v)
        s.flush()
        for split, values in metrics.items():
            s.add(
                m.Evaluation(version_id=v.id, data_version_id=data.id, split=split, metrics=values)
            )
        s.flush()
        return v

    def record_evaluation(
        self, domain: str, number: int, data_version: str, split: str, metrics: dict[str, Any]
    ) -> VersionInfo:
        """Metrics of an existing version on another data version (e.g. production on the
        candidate's data, so the policy compares like with like). Replaces an older result."""
        with session_scope(self.url) as s:
            d = self._domain(s, domain)
            v = self._version(s, d, number)
            self._upsert_evaluation(s, v, self._data_version(s, d, data_version), split, metrics)
            return self._version_info(s, v)

    @staticmethod
    def _upsert_evaluation(
        s: Session, v: m.PromptVersion, data: m.DataVersion, split: str, metrics: dict[str, Any]
    ) -> None:
        row = s.scalar(
            select(m.Evaluation).where(
                m.Evaluation.version_id == v.id,
                m.Evaluation.data_version_id == data.id,
                m.Evaluation.split == split,
            )
        )
        if row is None:
            s.add(
                m.Evaluation(version_id=v.id, data_version_id=data.id, split=split, metrics=metrics)
            )
        else:
            row.metrics = metrics
        s.flush()

    def find_version(
        self,
        domain: str,
        *,
        data_version: str,
        backbone_sha256: str,
        config: dict[str, Any],
        code_version: str,
    ) -> VersionInfo | None:
        """A version already tuned from the same data, backbone, config and code, if any."""
        with session_scope(self.url) as s:
            row = s.scalar(
                select(m.PromptVersion)
                .join(m.Domain, m.PromptVersion.domain_id == m.Domain.id)
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
            )
            return None if row is None else self._version_info(s, row)

    def list_versions(self, domain: str | None = None) -> list[VersionInfo]:
        with session_scope(self.url) as s:
            query = select(m.PromptVersion).join(m.Domain, m.PromptVersion.domain_id == m.Domain.id)
            if domain:
                query = query.where(m.Domain.name == domain)
            rows = s.scalars(query.order_by(m.Domain.name, m.PromptVersion.number))
            return [self._version_info(s, v) for v in rows]

    def get_version(self, domain: str, number: int) -> VersionInfo:
        with session_scope(self.url) as s:
            return self._version_info(s, self._version(s, self._domain(s, domain), number))

    def fetch_artifact(self, domain: str, number: int, target_dir: str | Path) -> Path:
        """Unpack a version's artifact into `target_dir`, verified against its sha256."""
        v = self.get_version(domain, number)
        return self.store.get_dir(v.artifact_sha256, Path(target_dir), label=f"{domain} v{number}")

    def artifact_files(self, domain: str, number: int) -> dict[str, bytes]:
        """A version's artifact files in memory ({name: bytes}), verified against its sha256."""
        v = self.get_version(domain, number)
        return self.store.get_files(v.artifact_sha256, label=f"{domain} v{number}")

    def diff(
        self, domain: str, a: int, b: int, split: str = "test", data_version: str | None = None
    ) -> dict[str, Any]:
        """Metric-by-metric and per-class comparison of two versions on one data version
        (default: b's own data version; both must have been evaluated on it)."""
        va, vb = self.get_version(domain, a), self.get_version(domain, b)
        data = data_version or vb.data_version
        ma, mb = va.metrics(split, data), vb.metrics(split, data)
        missing = [f"v{v.number}" for v, met in ((va, ma), (vb, mb)) if met is None]
        if missing:
            raise NotFoundError(
                f"{', '.join(missing)} of {domain} not evaluated on {split} of data version {data}"
            )
        scalar = {
            k: (ma[k], mb[k], mb[k] - ma[k])
            for k in sorted(set(ma) & set(mb))
            if isinstance(ma[k], int | float)
        }
        ga, gb = per_group(ma), per_group(mb)
        per_class = {c: (ga[c], gb[c], gb[c] - ga[c]) for c in ga if c in gb}
        return {
            "domain": domain,
            "a": a,
            "b": b,
            "split": split,
            "data_version": data,
            "metrics": scalar,
            "per_class": per_class,
        }

    # ------------------------------------------------------------------ aliases
    def aliases(self, domain: str) -> list[AliasInfo]:
        with session_scope(self.url) as s:
            d = self._domain(s, domain)
            rows = s.scalars(
                select(m.Alias).where(m.Alias.domain_id == d.id).order_by(m.Alias.name)
            )
            return [
                AliasInfo(domain, a.name, self._number(s, a.version_id), a.updated_at) for a in rows
            ]

    def alias_targets(self, alias: str = PRODUCTION) -> dict[str, int | None]:
        """Every registered domain -> the version `alias` points at (None if unset), in one
        query: what a prediction server polls to pick up approvals and rollbacks."""
        with session_scope(self.url) as s:
            rows = s.execute(
                select(m.Domain.name, m.PromptVersion.number)
                .outerjoin(m.Alias, (m.Alias.domain_id == m.Domain.id) & (m.Alias.name == alias))
                .outerjoin(m.PromptVersion, m.PromptVersion.id == m.Alias.version_id)
                .order_by(m.Domain.name)
            )
            return {name: number for name, number in rows}

    def resolve(self, domain: str, alias: str = PRODUCTION) -> int | None:
        """The version number an alias points at now (None if unset)."""
        with session_scope(self.url) as s:
            d = s.scalar(select(m.Domain).where(m.Domain.name == domain))
            row = None if d is None else self._alias(s, d, alias)
            return None if row is None else self._number(s, row.version_id)

    def _move(
        self,
        s: Session,
        d: m.Domain,
        alias: str,
        to: m.PromptVersion,
        *,
        expected: int | None,
        kind: str,
        actor: str,
        reason: str,
        request_id: int | None = None,
    ) -> None:
        """Compare-and-swap the alias from `expected` (version id, None = unset) to `to`,
        and append the history row, in the caller's transaction."""
        now = m.utcnow()
        if expected is None:
            if self._alias(s, d, alias) is not None:
                raise ConflictError(f"{d.name}:{alias} was set concurrently; re-read and retry")
            s.add(m.Alias(domain_id=d.id, name=alias, version_id=to.id, updated_at=now))
            s.flush()  # the unique (domain, name) constraint stops a concurrent twin
        else:
            moved = s.execute(
                update(m.Alias)
                .where(
                    m.Alias.domain_id == d.id, m.Alias.name == alias, m.Alias.version_id == expected
                )
                .values(version_id=to.id, updated_at=now)
            ).rowcount
            if moved != 1:
                raise ConflictError(
                    f"{d.name}:{alias} moved concurrently; nothing was changed, re-read and retry"
                )
        s.add(
            m.AliasHistory(
                domain_id=d.id,
                alias=alias,
                from_version_id=expected,
                to_version_id=to.id,
                kind=kind,
                actor=actor,
                reason=reason,
                request_id=request_id,
                at=now,
            )
        )

    def set_alias(
        self,
        domain: str,
        alias: str,
        number: int,
        *,
        actor: str,
        reason: str = "",
        address: str | None = None,
    ) -> AliasInfo:
        """Point a non-production alias (staging, any free name) at a version."""
        if alias == PRODUCTION:
            raise RuleViolation(
                "production moves only through an approved promotion request "
                "(`mpt promote request` + `mpt promote approve`) or a rollback"
            )
        with audited(
            self.url, "set_alias", actor, address, domain=domain, alias=alias, version=number
        ) as (s, _):
            d = self._domain(s, domain)
            authorize(s, actor, alias_role(s, d, alias), f"moving {domain}:{alias}")
            v = self._version(s, d, number)
            current = self._alias(s, d, alias)
            self._move(
                s,
                d,
                alias,
                v,
                expected=current.version_id if current else None,
                kind="set",
                actor=actor,
                reason=reason,
            )
            return AliasInfo(domain, alias, number, m.utcnow())

    # ------------------------------------------------------------------ promotion
    def request_promotion(
        self,
        domain: str,
        number: int,
        *,
        requested_by: str,
        policy: Policy,
        alias: str = PRODUCTION,
        split: str = "test",
        address: str | None = None,
    ) -> RequestInfo:
        """Open a request; the policy is evaluated now, candidate vs the alias's current
        version on the candidate's data version, and the report is stored with it."""
        with audited(
            self.url, "request", requested_by, address, domain=domain, alias=alias, version=number
        ) as (s, what):
            authorize(s, requested_by, "requester", "requesting a promotion")
            d = self._domain(s, domain)
            r = self._open_request(
                s,
                d,
                self._version(s, d, number),
                requested_by=requested_by,
                policy=policy,
                alias=alias,
                split=split,
            )
            what.update(request_id=r.id, policy_passed=r.policy_passed)
            return self._request_info(s, r)

    def _open_request(
        self,
        s: Session,
        d: m.Domain,
        v: m.PromptVersion,
        *,
        requested_by: str,
        policy: Policy,
        alias: str = PRODUCTION,
        split: str = "test",
    ) -> m.PromotionRequest:
        domain, number = d.name, v.number
        if v.status != "candidate":
            raise RuleViolation(
                f"{domain} v{number} is {v.status}; only candidates can be promoted"
            )
        current = self._alias(s, d, alias)
        if current is not None and current.version_id == v.id:
            raise RuleViolation(f"{domain}:{alias} already points at v{number}")
        pending = s.scalar(
            select(m.PromotionRequest.id).where(
                m.PromotionRequest.version_id == v.id,
                m.PromotionRequest.alias == alias,
                m.PromotionRequest.status == "pending",
            )
        )
        if pending is not None:
            raise RuleViolation(
                f"request #{pending} for {domain} v{number} -> {alias} is already pending"
            )
        data = s.get(m.DataVersion, v.data_version_id)
        cand = self._metrics(s, v.id, data.id, split)
        prod = None if current is None else self._metrics(s, current.version_id, data.id, split)
        if current is not None and prod is None:
            prod = {}  # evaluated nowhere on this data: the policy says so
        report = evaluate_policy(policy, cand or {}, prod, data_version=data.md5, split=split)
        if current is not None:
            report["production_version"] = self._number(s, current.version_id)
        r = m.PromotionRequest(
            domain_id=d.id,
            version_id=v.id,
            alias=alias,
            base_version_id=current.version_id if current else None,
            requested_by=requested_by,
            policy_passed=report["passed"],
            policy_report=report,
        )
        s.add(r)
        s.flush()
        return r

    @staticmethod
    def _metrics(
        s: Session, version_id: int, data_version_id: int, split: str
    ) -> dict[str, Any] | None:
        return s.scalar(
            select(m.Evaluation.metrics).where(
                m.Evaluation.version_id == version_id,
                m.Evaluation.data_version_id == data_version_id,
                m.Evaluation.split == split,
            )
        )

    def _pending(self, s: Session, request_id: int, reviewer: str) -> m.PromotionRequest:
        r = s.get(m.PromotionRequest, request_id)
        if r is None:
            raise NotFoundError(f"promotion request #{request_id} does not exist")
        if r.status != "pending":
            raise RuleViolation(
                f"request #{request_id} was already {r.status} by {r.reviewer} at "
                f"{r.decided_at:%Y-%m-%d %H:%M}Z; decisions are final, open a new request"
            )
        if reviewer == r.requested_by:
            raise RuleViolation(
                f"{reviewer} requested #{request_id} and cannot review it; "
                "another reviewer must decide"
            )
        return r

    def _decide(
        self, s: Session, r: m.PromotionRequest, status: str, reviewer: str, comment: str
    ) -> None:
        decided = s.execute(
            update(m.PromotionRequest)
            .where(m.PromotionRequest.id == r.id, m.PromotionRequest.status == "pending")
            .values(status=status, reviewer=reviewer, comment=comment, decided_at=m.utcnow())
        ).rowcount
        if decided != 1:
            raise ConflictError(f"request #{r.id} was decided concurrently; nothing was changed")

    def approve(
        self,
        request_id: int,
        *,
        reviewer: str,
        comment: str = "",
        override_reason: str | None = None,
        address: str | None = None,
    ) -> RequestInfo:
        """Approve and move the alias atomically. Refused if the policy failed (unless
        `override_reason`, recorded as an override) or the request is superseded."""
        with audited(
            self.url, "approve", reviewer, address, request_id=request_id, comment=comment
        ) as (s, what):
            r = self._pending(s, request_id, reviewer)
            d = s.get(m.Domain, r.domain_id)
            what.update(domain=d.name, alias=r.alias, override_reason=override_reason)
            authorize(s, reviewer, "reviewer", f"approving request #{r.id}")
            v = s.get(m.PromptVersion, r.version_id)
            current = self._alias(s, d, r.alias)
            now_id = current.version_id if current else None
            if now_id != r.base_version_id:
                was, now = self._number(s, r.base_version_id), self._number(s, now_id)
                raise RuleViolation(
                    f"request #{r.id} is superseded: {d.name}:{r.alias} "
                    f"{'was unset' if was is None else f'pointed at v{was}'} when it was opened "
                    f"and now points at {'nothing' if now is None else f'v{now}'}, so its policy "
                    f"report is stale; nothing was changed: open a new request for v{v.number}"
                )
            if not r.policy_passed and not override_reason:
                reasons = "; ".join(r.policy_report.get("reasons", [])) or "policy failed"
                raise RuleViolation(
                    f"request #{r.id} failed its promotion policy ({reasons}); approve with an "
                    "override reason (--override REASON) to promote anyway, recorded as an override"
                )
            kind = "override" if not r.policy_passed else "promotion"
            what.update(version=v.number, kind=kind, from_version=self._number(s, now_id))
            reason = override_reason or comment or f"approved request #{r.id}"
            self._decide(s, r, "approved", reviewer, comment or (override_reason or ""))
            self._move(
                s,
                d,
                r.alias,
                v,
                expected=now_id,
                kind=kind,
                actor=reviewer,
                reason=reason,
                request_id=r.id,
            )
            s.flush()
            s.refresh(r)
            return self._request_info(s, r)

    def reject(
        self, request_id: int, *, reviewer: str, comment: str, address: str | None = None
    ) -> RequestInfo:
        with audited(
            self.url, "reject", reviewer, address, request_id=request_id, comment=comment
        ) as (s, what):
            if not comment.strip():
                raise RuleViolation("a rejection needs a comment saying why")
            r = self._pending(s, request_id, reviewer)
            what.update(domain=s.get(m.Domain, r.domain_id).name, alias=r.alias)
            what.update(version=self._number(s, r.version_id))
            authorize(s, reviewer, "reviewer", f"rejecting request #{r.id}")
            self._decide(s, r, "rejected", reviewer, comment)
            s.flush()
            s.refresh(r)
            return self._request_info(s, r)

    def requests(self, domain: str | None = None, status: str | None = None) -> list[RequestInfo]:
        with session_scope(self.url) as s:
            query = select(m.PromotionRequest).join(
                m.Domain, m.PromotionRequest.domain_id == m.Domain.id
            )
            if domain:
                query = query.where(m.Domain.name == domain)
            if status:
                query = query.where(m.PromotionRequest.status == status)
            return [
                self._request_info(s, r) for r in s.scalars(query.order_by(m.PromotionRequest.id))
            ]

    def get_request(self, request_id: int) -> RequestInfo:
        with session_scope(self.url) as s:
            r = s.get(m.PromotionRequest, request_id)
            if r is None:
                raise NotFoundError(f"promotion request #{request_id} does not exist")
            return self._request_info(s, r)

    def rollback(
        self,
        domain: str,
        number: int,
        *,
        actor: str,
        reason: str,
        alias: str = PRODUCTION,
        address: str | None = None,
    ) -> HistoryEntry:
        """Move the alias back to a version it pointed at before; recorded as a rollback."""
        with audited(
            self.url, "rollback", actor, address, domain=domain, alias=alias, version=number
        ) as (s, what):
            if not reason.strip():
                raise RuleViolation("a rollback needs a reason")
            what["reason"] = reason
            d = self._domain(s, domain)
            authorize(s, actor, alias_role(s, d, alias), f"rolling back {domain}:{alias}")
            v = self._version(s, d, number)
            current = self._alias(s, d, alias)
            if current is None:
                raise RuleViolation(f"{domain}:{alias} is not set; there is nothing to roll back")
            if current.version_id == v.id:
                raise RuleViolation(f"{domain}:{alias} already points at v{number}")
            was_there = s.scalar(
                select(m.AliasHistory.id)
                .where(
                    m.AliasHistory.domain_id == d.id,
                    m.AliasHistory.alias == alias,
                    m.AliasHistory.to_version_id == v.id,
                )
                .limit(1)
            )
            if was_there is None:
                raise RuleViolation(
                    f"{domain} v{number} was never {alias}; a rollback returns to an earlier "
                    f"{alias} version, promote new versions through a request"
                )
            self._move(
                s,
                d,
                alias,
                v,
                expected=current.version_id,
                kind="rollback",
                actor=actor,
                reason=reason,
            )
            s.flush()
            last = s.scalar(select(m.AliasHistory).order_by(m.AliasHistory.id.desc()).limit(1))
            return self._history_info(s, last)

    # ------------------------------------------------------------------ history
    def history(self, domain: str, alias: str | None = None) -> list[HistoryEntry]:
        with session_scope(self.url) as s:
            d = self._domain(s, domain)
            query = select(m.AliasHistory).where(m.AliasHistory.domain_id == d.id)
            if alias:
                query = query.where(m.AliasHistory.alias == alias)
            return [self._history_info(s, h) for h in s.scalars(query.order_by(m.AliasHistory.id))]

    def alias_at(self, domain: str, at: datetime, alias: str = PRODUCTION) -> int | None:
        """Which version `alias` pointed at, at time `at` (timezone-aware): one query."""
        with session_scope(self.url) as s:
            version_id = s.scalar(
                select(m.AliasHistory.to_version_id)
                .join(m.Domain, m.AliasHistory.domain_id == m.Domain.id)
                .where(
                    m.Domain.name == domain, m.AliasHistory.alias == alias, m.AliasHistory.at <= at
                )
                .order_by(m.AliasHistory.at.desc(), m.AliasHistory.id.desc())
                .limit(1)
            )
            return self._number(s, version_id)

    # ------------------------------------------------------------------ maintenance
    def gc(self, dry_run: bool = False) -> list[str]:
        """Delete stored blobs no version references (left by failed registrations)."""
        with session_scope(self.url) as s:
            referenced = set(s.scalars(select(m.PromptVersion.artifact_sha256)))
        orphans = sorted(sha for sha in self.store.list() if sha not in referenced)
        if not dry_run:
            for sha in orphans:
                self.store.delete(sha)
        return orphans
