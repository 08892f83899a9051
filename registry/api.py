"""The registry's Python API: a thin facade over the data functions of `resources/`.

Each public method is one transaction, opened by `transaction()` (the boundary owns it);
the rules live in the data functions, not here and not in the CLI. Every method that
changes the registry is audited (`tests/registry/test_audit.py` calls each one): most run
in `_audited`, which commits the audit record with the change, or records the refusal in
a transaction of its own.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from . import resources
from .constants import PRODUCTION
from .db import session_scope
from .errors import NotFoundError, RegistryError
from .models import utcnow
from .policy import Policy, per_group
from .records import (
    AliasInfo,
    AuditEntry,
    DataVersionInfo,
    DriftPoint,
    HistoryEntry,
    MonitoringReport,
    MonitoringSettings,
    MonitorTarget,
    PredictionSet,
    RequestInfo,
    ReviewEvidence,
    ShadowEvidence,
    TaskEvidence,
    UserInfo,
    VersionInfo,
)
from .resources.audit import Detail
from .settings import RegistrySettings
from .store import ArtifactStore, open_store, pack_files

log = logging.getLogger(__name__)


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


class PromptRegistry:
    """Prompt versions, lineage, aliases, reviewed promotions and their history; users,
    roles and the audit log; review evidence.

    >>> reg = PromptRegistry.from_settings()          # MPT_DATABASE_URL, MPT_ARTIFACT_STORE
    >>> v = reg.register_version("retail", "out/retail", method="mpt", ...)
    >>> req = reg.request_promotion("retail", 1, requested_by="ana", policy=Policy("accuracy"))
    >>> reg.approve(req.id, reviewer="ben")

    User administration with `actor=None` means the caller acts through direct database
    access (the bootstrap path, like `airflow users create`), audited as `operator:<login>`.
    """

    def __init__(self, database_url: str, store: ArtifactStore) -> None:
        self.url = database_url
        self.store = store

    @classmethod
    def from_settings(cls, settings: RegistrySettings | None = None) -> PromptRegistry:
        settings = settings or RegistrySettings()
        return cls(settings.database, open_store(settings.store_url, settings.artifact_s3_endpoint))

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work for the data functions of `registry.resources`: commits when
        the block ends, rolls back on any error; driver errors become registry errors
        (`db.session_scope`). ORM rows read in it must not leave it: return records."""
        with session_scope(self.url) as s:
            yield s

    @contextmanager
    def _audited(
        self, action: str, actor: str, address: str | None = None, **what: Any
    ) -> Iterator[tuple[Session, Detail]]:
        """One audited transaction: yields (session, details to fill in). On success the
        audit row commits with the change (written first, so it precedes the records the
        action appends itself, and completed with the details at the end); a refused action
        (any RegistryError) is rolled back and recorded as refused, with the reason, in a
        transaction of its own."""
        detail: Detail = dict(what)
        try:
            with self.transaction() as s:
                row = resources.audit.append(s, action, actor, "ok", address, detail)
                s.flush()
                yield s, detail
                resources.audit.complete(row, detail)
        except RegistryError as exc:
            try:
                with self.transaction() as s:
                    refused = {**detail, "error": str(exc)}
                    resources.audit.append(s, action, actor, "refused", address, refused)
            except RegistryError:
                log.exception(
                    "could not record the refused %s by %s in the audit log", action, actor
                )
            raise

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
        rows_added: int | None = None,
        added_from: str | None = None,
        actor: str | None = None,
    ) -> DataVersionInfo:
        """Record a validated data version. Recording the same domain and md5 again updates
        its validation result (rules may have changed), never its identity. `rows_added`
        and `added_from`: what the import that wrote its table added (lineage)."""
        with self._audited(
            "data_version",
            actor or current_user(),
            domain=domain,
            data_version=md5,
            validation_passed=validation_passed,
        ) as (s, _):
            return resources.data_versions.record(
                s,
                domain,
                md5,
                rows=rows,
                row_counts=row_counts,
                validation_passed=validation_passed,
                validation_summary=validation_summary,
                report_uri=report_uri,
                validation_key=validation_key,
                rows_added=rows_added,
                added_from=added_from,
            ).to_record()

    def data_version(self, domain: str, md5: str) -> DataVersionInfo | None:
        """The recorded data version `md5` of `domain`, or None."""
        with self.transaction() as s:
            row = resources.data_versions.find(s, domain, md5)
            return None if row is None else row.to_record()

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
        primary_metric: str | None = None,
    ) -> VersionInfo:
        """Store the artifact (content-addressed) and write version N+1 with its lineage and
        its metrics per split on its own data version, all-or-nothing. If the database
        write fails the uploaded blob is an orphan that `gc()` removes."""
        stored = self.store.put_dir(Path(artifact_dir))
        created_by = created_by or current_user()
        with self._audited("register", created_by, domain=domain, data_version=data_version) as (
            s,
            detail,
        ):
            resources.users.authorize(s, created_by, "requester", "registering a version")
            d = resources.domains.ensure(s, domain)
            v = resources.versions.insert(
                s,
                d,
                stored,
                method=method,
                config=config,
                data=resources.data_versions.read(s, d, data_version),
                backbone=backbone,
                metrics=metrics,
                created_by=created_by,
                flow_run_id=flow_run_id,
                code_version=code_version,
                commit=commit,
                training_history=training_history,
                primary_metric=primary_metric,
            )
            detail.update(version=v.number, artifact_sha256=stored.sha256)
            return v.to_record()

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
        primary_metric: str | None = None,
        evidence: ReviewEvidence | None = None,
        trigger: dict[str, Any] | None = None,
    ) -> tuple[VersionInfo, RequestInfo | None]:
        """What a retrain registers, in ONE transaction: the candidate version (artifact
        files, lineage, metrics), production's metrics on the same data version
        (`production` = (its number, its `split` metrics)), a promotion request checked
        against `policy`, and the review `evidence` (both versions' predictions on the
        candidate's data version, thumbnails). `trigger`: why the run started, when not
        its cron or a person (kept in the version's lineage). Idempotent on retry: the
        same flow run, domain and data version give back the version (and request)
        registered the first time, writing nothing."""
        stored = self.store.put(pack_files(files))  # content-addressed: a retry reuses it
        created_by = created_by or current_user()
        with self._audited(
            "register", created_by, domain=domain, data_version=data_version, flow_run=flow_run_id
        ) as (s, detail):
            v, r = resources.candidates.register(
                s,
                domain,
                stored,
                method=method,
                config=config,
                data_version=data_version,
                backbone=backbone,
                metrics=metrics,
                policy=policy,
                production=production,
                created_by=created_by,
                flow_run_id=flow_run_id,
                code_version=code_version,
                split=split,
                training_history=training_history,
                search=search,
                primary_metric=primary_metric,
                review=evidence,
                trigger=trigger,
                audit=detail,
            )
            return v.to_record(), None if r is None else r.to_record()

    def record_evaluation(
        self,
        domain: str,
        number: int,
        data_version: str,
        split: str,
        metrics: dict[str, Any],
        *,
        actor: str | None = None,
    ) -> VersionInfo:
        """Metrics of an existing version on another data version (e.g. production on the
        candidate's data, so the policy compares like with like). Replaces an older result."""
        with self._audited(
            "evaluate",
            actor or current_user(),
            domain=domain,
            version=number,
            data_version=data_version,
            split=split,
        ) as (s, _):
            d = resources.domains.read(s, domain)
            v = resources.versions.read(s, d, number)
            resources.versions.record_evaluation(
                s, v, resources.data_versions.read(s, d, data_version), split, metrics
            )
            return v.to_record()

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
        with self.transaction() as s:
            row = resources.versions.find_tuned(
                s,
                domain,
                data_version=data_version,
                backbone_sha256=backbone_sha256,
                config=config,
                code_version=code_version,
            )
            return None if row is None else row.to_record()

    def list_versions(self, domain: str | None = None) -> list[VersionInfo]:
        """Every version (of `domain`), by domain and number: a constant number of queries."""
        with self.transaction() as s:
            return [v.to_record() for v in resources.versions.read_all(s, domain)]

    def get_version(self, domain: str, number: int) -> VersionInfo:
        with self.transaction() as s:
            return resources.versions.read(s, resources.domains.read(s, domain), number).to_record()

    def lookup(self, domain: str, ref: str | int) -> VersionInfo:
        """A version by number (3, "3", "v3") or by alias ("@production", "@staging"): what
        `mpt registry pull` and the library loader take. NotFoundError names what exists."""
        with self.transaction() as s:
            d = resources.domains.read(s, domain)
            number = resources.aliases.parse_ref(s, d, ref)
            return resources.versions.read(s, d, number).to_record()

    def domains(self) -> list[str]:
        """Names of every domain with at least one registered version, sorted."""
        with self.transaction() as s:
            return resources.domains.names_with_versions(s)

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
        with self.transaction() as s:
            return [
                a.to_record()
                for a in resources.aliases.read_all(s, resources.domains.read(s, domain))
            ]

    def alias_targets(self, alias: str = PRODUCTION) -> dict[str, int | None]:
        """Every registered domain -> the version `alias` points at (None if unset), in one
        query: what a prediction server polls to pick up approvals and rollbacks."""
        with self.transaction() as s:
            return resources.aliases.targets(s, alias)

    def resolve(self, domain: str, alias: str = PRODUCTION) -> int | None:
        """The version number an alias points at now (None if unset)."""
        with self.transaction() as s:
            return resources.aliases.resolve(s, domain, alias)

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
        with self._audited(
            "set_alias", actor, address, domain=domain, alias=alias, version=number
        ) as (s, _):
            moved = resources.aliases.set_alias(
                s, domain, alias, number, actor=actor, reason=reason
            )
            return AliasInfo(domain, alias, number, moved.at)

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
        with self._audited(
            "rollback", actor, address, domain=domain, alias=alias, version=number, reason=reason
        ) as (s, _):
            return resources.aliases.rollback(
                s, domain, alias, number, actor=actor, reason=reason
            ).to_record()

    def protected_aliases(self, domain: str) -> list[str]:
        """`production` and every alias an admin protected, sorted."""
        with self.transaction() as s:
            return resources.aliases.protected(s, domain)

    def protect_alias(
        self,
        domain: str,
        alias: str,
        *,
        actor: str,
        protect: bool = True,
        address: str | None = None,
    ) -> list[str]:
        """Mark (or unmark) an alias as protected: with authentication on it then moves only
        by a reviewer or admin. `production` is always protected."""
        action = "alias_protect" if protect else "alias_unprotect"
        with self._audited(action, actor, address, domain=domain, alias=alias) as (s, _):
            resources.aliases.protect(s, domain, alias, actor=actor, protect=protect)
        return self.protected_aliases(domain)

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
        with self._audited(
            "request", requested_by, address, domain=domain, alias=alias, version=number
        ) as (s, detail):
            return resources.promotions.request(
                s,
                domain,
                number,
                requested_by=requested_by,
                policy=policy,
                alias=alias,
                split=split,
                audit=detail,
            ).to_record()

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
        with self._audited(
            "approve", reviewer, address, request_id=request_id, comment=comment
        ) as (s, detail):
            return resources.promotions.approve(
                s,
                request_id,
                reviewer=reviewer,
                comment=comment,
                override_reason=override_reason,
                audit=detail,
            ).to_record()

    def reject(
        self, request_id: int, *, reviewer: str, comment: str, address: str | None = None
    ) -> RequestInfo:
        with self._audited("reject", reviewer, address, request_id=request_id, comment=comment) as (
            s,
            detail,
        ):
            return resources.promotions.reject(
                s, request_id, reviewer=reviewer, comment=comment, audit=detail
            ).to_record()

    def requests(self, domain: str | None = None, status: str | None = None) -> list[RequestInfo]:
        """Requests (of `domain`, with `status`), oldest first: a constant number of queries."""
        with self.transaction() as s:
            return [r.to_record() for r in resources.promotions.read_all(s, domain, status)]

    def get_request(self, request_id: int) -> RequestInfo:
        with self.transaction() as s:
            return resources.promotions.read(s, request_id).to_record()

    # ------------------------------------------------------------------ history
    def history(self, domain: str, alias: str | None = None) -> list[HistoryEntry]:
        """Every move of the domain's aliases (or of `alias`), oldest first: a constant
        number of queries."""
        with self.transaction() as s:
            return [
                h.to_record()
                for h in resources.history.read_all(s, resources.domains.read(s, domain), alias)
            ]

    def alias_at(self, domain: str, at: datetime, alias: str = PRODUCTION) -> int | None:
        """Which version `alias` pointed at, at time `at` (timezone-aware): one query."""
        with self.transaction() as s:
            return resources.history.version_at(s, domain, at, alias)

    # ------------------------------------------------------------------ review evidence
    def record_predictions(
        self,
        domain: str,
        number: int,
        data_version: str,
        split: str,
        rows: list[dict[str, Any]],
        *,
        target_field: str,
        task: TaskEvidence | None = None,
        actor: str | None = None,
    ) -> PredictionSet:
        """Store (or replace) the per-example predictions of `domain` v`number` on `split` of
        `data_version` (a retrain stores them with the candidate: `register_candidate`);
        `task`: what its task's contract says about them (how the pages show them)."""
        with self._audited(
            "predictions",
            actor or current_user(),
            domain=domain,
            version=number,
            data_version=data_version,
            split=split,
            rows=len(rows),
        ) as (s, _):
            d = resources.domains.read(s, domain)
            v = resources.versions.read(s, d, number)
            data = resources.data_versions.read(s, d, data_version)
            return resources.evidence.record_predictions(
                s, v, data, split, rows, target_field=target_field, task=task
            ).to_record()

    def predictions(
        self, domain: str, number: int, data_version: str, split: str = "test"
    ) -> PredictionSet | None:
        """Stored predictions of a version on a split of a data version, or None."""
        with self.transaction() as s:
            found = resources.evidence.read_predictions(s, domain, number, data_version, split)
            return None if found is None else found.to_record()

    def record_thumbnails(
        self,
        domain: str,
        data_version: str,
        split: str,
        thumbnails: dict[str, bytes],
        *,
        actor: str | None = None,
    ) -> int:
        """Store JPEG thumbnails of example images (image path -> bytes), at most
        MAX_THUMBNAILS per call, replacing older ones of the same images. Returns how many."""
        with self._audited(
            "thumbnails",
            actor or current_user(),
            domain=domain,
            data_version=data_version,
            split=split,
            images=len(thumbnails),
        ) as (s, _):
            data = resources.data_versions.read(s, resources.domains.read(s, domain), data_version)
            return resources.evidence.record_thumbnails(s, data, split, thumbnails)

    def thumbnails(
        self, domain: str, data_version: str, split: str, images: Iterable[str] | None = None
    ) -> dict[str, bytes]:
        """Stored thumbnails of `images` (default: all) of a split of a data version."""
        with self.transaction() as s:
            return resources.evidence.read_thumbnails(s, domain, data_version, split, images)

    # ------------------------------------------------------------------ live evidence
    def set_monitoring(
        self,
        domain: str,
        settings: MonitoringSettings,
        *,
        actor: str,
        address: str | None = None,
    ) -> bool:
        """Store a domain's monitoring settings (from its domain.yaml) for servers and the
        drift check; audited when they change. Returns whether they changed."""
        with self.transaction() as s:
            if resources.monitoring.set_settings(s, domain, settings, actor=actor)[1]:
                what = {"domain": domain, **settings.to_dict()}
                resources.audit.append(s, "monitoring_set", actor, "ok", address, what)
                return True
            return False

    def monitoring(self, domain: str) -> MonitoringSettings | None:
        """A domain's stored monitoring settings, or None."""
        with self.transaction() as s:
            row = resources.monitoring.find_settings(s, domain)
            return None if row is None else row.to_record()

    def monitor_targets(self) -> dict[str, MonitorTarget]:
        """Every domain with monitoring settings -> its settings and the version that
        shadows production (the open request's, or the named alias's), in three queries:
        what a prediction server polls beside `alias_targets`."""
        with self.transaction() as s:
            return resources.monitoring.targets(s)

    def record_monitoring(self, report: MonitoringReport) -> None:
        """Add one server's report (shadow tallies, disagreements, drift points), kept to
        their caps, in one transaction."""
        with self.transaction() as s:
            resources.monitoring.record(s, report)

    def shadow_evidence(self, domain: str, version: int, production: int) -> ShadowEvidence | None:
        """What `domain` v`version` answered of production v`production`'s traffic as its
        shadow (tally and newest disagreements), or None."""
        with self.transaction() as s:
            return resources.monitoring.evidence(s, domain, version, production)

    def drift_history(self, domain: str, limit: int = 1440) -> list[DriftPoint]:
        """The domain's newest drift points, oldest first."""
        with self.transaction() as s:
            return resources.monitoring.drift_history(s, domain, limit)

    def latest_drift(self) -> dict[str, DriftPoint]:
        """Every domain with a drift point -> its newest."""
        with self.transaction() as s:
            return resources.monitoring.latest_drift(s)

    def claim_drift_retrain(
        self,
        domain: str,
        *,
        cooldown: timedelta,
        actor: str,
        detail: dict[str, Any],
        now: datetime | None = None,
    ) -> tuple[bool, datetime | None]:
        """Claim the drift-triggered retrain of `domain` (at most one per `cooldown`, even
        for checks running at once): (claimed, when the previous one started). A claim is
        audited as `drift_retrain` with `detail` (the drift, threshold, window)."""
        now = now or utcnow()
        with self.transaction() as s:
            claimed, previous = resources.monitoring.claim_retrain(
                s, domain, cooldown=cooldown, now=now
            )
            if claimed:
                what = {"domain": domain, **detail, "claimed_at": now.isoformat()}
                resources.audit.append(s, "drift_retrain", actor, "ok", None, what)
            return claimed, previous

    def release_drift_retrain(
        self,
        domain: str,
        *,
        claimed_at: datetime,
        previous: datetime | None,
        actor: str,
        error: str,
    ) -> None:
        """Give back a claim whose retrain could not be started, audited as refused."""
        with self.transaction() as s:
            resources.monitoring.release_retrain(
                s, domain, claimed_at=claimed_at, previous=previous
            )
            what = {"domain": domain, "error": error, "claimed_at": claimed_at.isoformat()}
            resources.audit.append(s, "drift_retrain", actor, "refused", None, what)

    # ------------------------------------------------------------------ users and sessions
    def auth_enabled(self) -> bool:
        """True when any active user exists, or MPT_AUTH=required."""
        with self.transaction() as s:
            return resources.users.auth_on(s)

    def add_user(
        self, name: str, role: str, *, actor: str | None = None, address: str | None = None
    ) -> tuple[UserInfo, str]:
        """A new user with `role`; returns the user and their token, which is shown this
        once (only its hash is kept)."""
        token = resources.users.new_token()
        who = actor or resources.users.operator()
        with self._audited("user_add", who, address, user=name, role=role) as (s, _):
            resources.users.authorize_admin(s, actor, "adding a user")
            return resources.users.add(
                s, name, role, token, created_by=who
            ).to_record(), token.token

    def ensure_service_account(self, name: str) -> UserInfo:
        """A token-less requester for code with direct database access (the retrain flow);
        it can register and request, never decide, and never turns authentication on.
        Creating it is audited as the database operator's act; finding it writes nothing."""
        with self.transaction() as s:
            new = resources.users.find(s, name) is None
            user = resources.users.ensure_service_account(s, name)
            if new:
                what = {"user": name, "role": user.role}
                resources.audit.append(s, "service_account", user.created_by, "ok", None, what)
            return user.to_record()

    def list_users(self) -> list[UserInfo]:
        with self.transaction() as s:
            return [u.to_record() for u in resources.users.read_all(s)]

    def get_user(self, name: str) -> UserInfo:
        with self.transaction() as s:
            return resources.users.read(s, name).to_record()

    def revoke_user(
        self, name: str, *, actor: str | None = None, address: str | None = None
    ) -> UserInfo:
        """Deactivate a user: their token and sessions stop working at once. Their name
        stays in the history and audit log, and is not given to anyone else."""
        who = actor or resources.users.operator()
        with self._audited("user_revoke", who, address, user=name) as (s, _):
            resources.users.authorize_admin(s, actor, "revoking a user")
            return resources.users.revoke(s, name).to_record()

    def rotate_token(
        self, name: str, *, actor: str | None = None, address: str | None = None
    ) -> tuple[UserInfo, str]:
        """A new token for an active user; the old one and their sessions stop working."""
        token = resources.users.new_token()
        who = actor or resources.users.operator()
        with self._audited("user_rotate", who, address, user=name) as (s, _):
            resources.users.authorize_admin(s, actor, "rotating a user's token")
            return resources.users.rotate(s, name, token).to_record(), token.token

    def authenticate(self, token: str | None) -> UserInfo | None:
        """The active user whose token this is, else None. The same work is done whether
        or not the key id exists, and the answer never says which part was wrong."""
        with self.transaction() as s:
            user = resources.users.authenticate(s, token)
            return None if user is None else user.to_record()

    def create_session(self, name: str, *, ttl: timedelta, address: str | None = None) -> str:
        """Open a session for an active user (after `authenticate`); returns its secret,
        which only the cookie holds (the row keeps its sha256). Audited as a login."""
        with self._audited("login", name, address) as (s, _):
            return resources.sessions.open_session(s, name, ttl=ttl, address=address)

    def session_user(self, secret: str | None) -> UserInfo | None:
        """The user of a live session (not ended, not expired, user still active)."""
        with self.transaction() as s:
            user = resources.sessions.user_of(s, secret)
            return None if user is None else user.to_record()

    def end_session(self, secret: str, *, address: str | None = None) -> None:
        """Log out: the session stops working at once."""
        with self.transaction() as s:
            resources.sessions.end(s, secret, address=address)

    # ------------------------------------------------------------------ audit
    def record_audit(
        self,
        action: str,
        actor: str,
        *,
        outcome: str = "ok",
        address: str | None = None,
        **what: Any,
    ) -> None:
        """Append an audit record for something a boundary decided (e.g. a refused login)."""
        with self.transaction() as s:
            resources.audit.append(s, action, actor, outcome, address, what)

    def audit_log(
        self, *, domain: str | None = None, actor: str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        """Newest first."""
        with self.transaction() as s:
            return [
                a.to_record()
                for a in resources.audit.read_all(s, domain=domain, actor=actor, limit=limit)
            ]

    # ------------------------------------------------------------------ maintenance
    def gc(self, dry_run: bool = False, *, actor: str | None = None) -> list[str]:
        """Delete stored blobs no version references (left by failed registrations); the
        deletion is audited (a dry run changes nothing and is not)."""
        with self.transaction() as s:
            referenced = resources.versions.artifact_sha256s(s)
        orphans = sorted(sha for sha in self.store.list() if sha not in referenced)
        if not dry_run:
            with self._audited("gc", actor or current_user(), removed=len(orphans)) as (_, detail):
                for sha in orphans:
                    self.store.delete(sha)
                detail["blobs"] = orphans[:100]
        return orphans
