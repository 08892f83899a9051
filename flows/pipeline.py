"""The retrain pipeline's steps as plain functions; the Prefect flow (`retrain.py`) wraps
them, and tests call them directly.

Per domain: `prepare` (validate, then version with DVC: a refused domain leaves the data
folder, the DVC cache and the remote untouched) -> `plan` (skip when the same data,
backbone, config and code are already registered: decided without loading the backbone)
-> `build_job` -> tuning on Ray (`dispatch`) -> `register_outcome` (candidate, production's
evaluation, the promotion request and the review evidence in one registry transaction).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpt_core.artifacts import CONFIG, FORMAT_VERSION, TENSORS, PromptArtifact, verify_artifact
from mpt_core.backbones import backbone_sha256
from mpt_core.backbones.base import BackboneIdentity
from mpt_core.spec import TuneSpec
from registry import PromptRegistry, ReviewEvidence
from registry.lineage import package_version

from .datacache import RemoteLocation
from .dataset import layout_of, read_rows, rows_digest, rows_from_table
from .domains import Domain
from .jobs import BackboneRef, DataRef, Failure, StepFailed, TuneJob, TuneOutcome
from .validation.report import clip
from .versioning import DataVersion, DataVersioner

if TYPE_CHECKING:
    from .predictions import Evidence

FLOW_USER = "retrain-flow"


@dataclass
class DomainResult:
    """One line of the run's final table."""

    domain: str
    status: str
    """registered | skipped | invalid | failed"""
    data_version: str | None = None
    validation: str = "-"
    metric: str | None = None
    candidate: float | None = None
    production: float | None = None
    version: int | None = None
    production_version: int | None = None
    request_id: int | None = None
    policy_passed: bool | None = None
    tune_seconds: float | None = None
    message: str = ""
    stage: str = ""
    """The step a failure happened in: version, validate, plan, job, tune, register."""
    history: list[dict[str, Any]] = field(default_factory=list)
    features: dict[str, int] = field(default_factory=dict)
    """{images: distinct images tuned and evaluated on, embedded: those whose frozen
    features were computed in this run (the rest came from the feature store)}."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of_failure(cls, failure: Failure, prepared: PreparedDomain | None = None) -> DomainResult:
        """The row of a domain that stopped: its data version and validation from the
        prepared domain where it got that far, else from the failure."""
        data_version = prepared.data.md5 if prepared else failure.data_version
        if prepared is not None:
            validation = prepared.validation
        elif failure.validation is not None:
            validation = failure.validation
        else:
            validation = "FAILED" if failure.invalid else ("passed" if data_version else "-")
        return cls(
            failure.domain,
            "invalid" if failure.invalid else "failed",
            data_version,
            validation,
            stage=failure.stage,
            message=failure.message,
        )


@dataclass(frozen=True)
class PreparedDomain:
    domain: Domain
    data: DataVersion
    rows_sha256: str
    """sha256 of the rows validated (what the worker must read back)."""
    validation: str = "passed"
    """passed | unchanged (validated before, same data and rules: not run again)"""
    rows: int = 0
    """How many rows the data version has."""

    @cached_property
    def spec(self) -> TuneSpec:
        """The domain's tuning spec, built once here: the job carries it, the no-change
        skip looks it up, the registry row records it."""
        return self.domain.config.tune_spec()

    def skipped(self, version: int, registry: PromptRegistry) -> DomainResult:
        """This domain's result when `version` was tuned from the same data, backbone,
        config and code: that version's metric and production's (version and metric on
        this data version), as a registered row shows them."""
        name, metric = self.domain.name, self.spec.primary_metric
        tuned = registry.get_version(name, version).metrics("test") or {}
        production = registry.resolve(name)
        on_data = None
        if production is not None:
            on_data = registry.get_version(name, production).metrics("test", self.data.md5)
        return DomainResult(
            name,
            "skipped",
            self.data.md5,
            self.validation,
            metric=metric,
            candidate=_number(tuned.get(metric)),
            production=_number((on_data or {}).get(metric)),
            version=version,
            production_version=production,
            message=f"unchanged since v{version} (data, backbone, config, code)",
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def validation_key(domain: Domain) -> str:
    """What a validation result depends on besides the data: the rules, the task's contract
    and declaration, the table layout, and the code."""
    c = domain.config
    spec = {
        "validation": c.validation.model_dump(mode="json"),
        "data": c.data.model_dump(mode="json"),
        "task": c.task,
        "declaration": c.declaration(),
        "code": package_version(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------ prepare
def unchanged_data(
    domain: Domain, versioner: DataVersioner, registry: PromptRegistry
) -> DataVersion | None:
    """The data version, if the folder still holds what was recorded and validated under
    the same rules and code (then validation need not run again)."""
    return unchanged_many([domain], versioner, registry)[domain.name]


def prepare(
    domain: Domain,
    versioner: DataVersioner,
    registry: PromptRegistry,
    report_root: Path,
    *,
    push: bool = True,
) -> PreparedDomain:
    """Validate the data folder, then track it with DVC, check DVC recorded exactly the
    bytes that were validated, push it, and record the data version (`prepare_many` for
    one domain). Raises StepFailed (invalid) before anything is written to the DVC cache or
    remote when validation fails."""
    outcome = prepare_many([domain], versioner, registry, report_root, push=push)[domain.name]
    if isinstance(outcome, Failure):
        raise StepFailed(outcome)
    return outcome


Stage = Callable[[str, str], None]
"""(domain, stage) as the preparation moves on: validating, versioning."""
PARALLEL_VALIDATION = 4
"""From this many domains to validate on, validation runs in processes (one per CPU):
below it, starting them (each imports Great Expectations) costs more than it saves."""


def prepare_many(
    domains: Sequence[Domain],
    versioner: DataVersioner,
    registry: PromptRegistry,
    report_root: Path,
    *,
    push: bool = True,
    on_stage: Stage | None = None,
) -> dict[str, PreparedDomain | Failure]:
    """`prepare` for many domains at once, each isolated (its problem is its Failure):
    unchanged ones are found with one `dvc status`, the others validated in parallel
    processes, then tracked with one `dvc add` and pushed with one `dvc push` (DVC holds
    one lock per repository: one operation for all is what makes many domains cheap)."""
    stage = on_stage or (lambda domain, what: None)
    out: dict[str, PreparedDomain | Failure] = {}
    unchanged = _unchanged_each(domains, versioner, registry, out)
    todo = [d for d in domains if d.name not in out and unchanged.get(d.name) is None]
    for domain in domains:
        data = unchanged.get(domain.name)
        if data is not None and domain.name not in out:
            rows = read_rows(layout_of(domain.config), domain.data_dir)
            out[domain.name] = PreparedDomain(
                domain, data, rows_digest(rows), "unchanged", len(rows)
            )
    for domain in todo:
        stage(domain.name, "validating")
    checked = _validate_many(todo, report_root)
    valid = []
    for domain in todo:
        result = checked[domain.name]
        if isinstance(result, Failure):
            out[domain.name] = result
        elif not result.report.passed or result.table is None:
            summary = result.report.summary
            out[domain.name] = Failure(domain.name, "validate", summary, invalid=True)
        else:
            valid.append(domain)
            stage(domain.name, "versioning")
    tracked = versioner.track_many([d.data_dir for d in valid]) if valid else {}
    for domain in valid:
        version = tracked[_key(domain)]
        if isinstance(version, Exception):
            out[domain.name] = _failure_of(domain.name, "version", version)
            continue
        result = _record(domain, version, checked[domain.name], versioner, registry, report_root)
        out[domain.name] = result
    if push:
        ready = [p.domain for p in out.values() if isinstance(p, PreparedDomain)]
        pushed = versioner.push_many([d.data_dir for d in ready]) if ready else {}
        for domain in ready:
            sent = pushed[_key(domain)]
            if isinstance(sent, Exception):
                out[domain.name] = _failure_of(domain.name, "version", sent, out[domain.name])
    return out


def _key(domain: Domain) -> Path:
    """How the versioner's batch operations name a domain's data folder."""
    return domain.data_dir.expanduser().resolve()


def _failure_of(
    name: str, stage: str, exc: Exception, prepared: PreparedDomain | None = None
) -> Failure:
    data_version = prepared.data.md5 if prepared is not None else None
    message = f"{stage} failed: {type(exc).__name__}: {exc}"
    return Failure(name, stage, message, data_version=data_version)


def _unchanged_each(
    domains: Sequence[Domain], versioner: DataVersioner, registry: PromptRegistry, out: dict
) -> dict[str, DataVersion | None]:
    """`unchanged_many`; when the batch fails, each domain alone, so that the failure is
    only the failing domain's (recorded in `out`)."""
    try:
        return unchanged_many(domains, versioner, registry)
    except Exception:
        found: dict[str, DataVersion | None] = {}
        for domain in domains:
            try:
                found |= unchanged_many([domain], versioner, registry)
            except Exception as exc:
                out[domain.name] = _failure_of(domain.name, "version", exc)
        return found


def unchanged_many(
    domains: Sequence[Domain], versioner: DataVersioner, registry: PromptRegistry
) -> dict[str, DataVersion | None]:
    """`unchanged_data` of several domains with one `dvc status`."""
    from .validation.containment import check_data_folder

    clean = [d for d in domains if not check_data_folder(d.data_dir)]
    current = versioner.current_versions([d.data_dir for d in clean]) if clean else {}
    out: dict[str, DataVersion | None] = {d.name: None for d in domains}
    for domain in clean:
        data = current.get(_key(domain))
        if data is None:
            continue
        record = registry.data_version(domain.name, data.md5)
        if record and record.validation_passed and record.validation_key == validation_key(domain):
            out[domain.name] = data
    return out


def _validate_one(domain: Domain, staging: Path) -> Any:
    from .validation import validate_data  # Great Expectations imports slowly

    shutil.rmtree(staging, ignore_errors=True)
    return validate_data(domain, staging)


def _validate_many(domains: Sequence[Domain], report_root: Path) -> dict[str, Any]:
    """name -> ValidatedData (into `<report_root>/<name>/.validating`) or its Failure; in
    one process per CPU when there are enough domains to make that pay."""
    staging = {d.name: report_root / d.name / ".validating" for d in domains}
    out: dict[str, Any] = {}
    workers = min(os.cpu_count() or 1, len(domains))
    if len(domains) < PARALLEL_VALIDATION or workers < 2:
        for domain in domains:
            try:
                out[domain.name] = _validate_one(domain, staging[domain.name])
            except Exception as exc:
                out[domain.name] = _failure_of(domain.name, "validate", exc)
        return out
    context = multiprocessing.get_context("spawn")  # no fork under Prefect's and Ray's threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {d.name: pool.submit(_validate_one, d, staging[d.name]) for d in domains}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except Exception as exc:
                out[name] = _failure_of(name, "validate", exc)
    return out


def _record(
    domain: Domain,
    data: DataVersion,
    checked: Any,
    versioner: DataVersioner,
    registry: PromptRegistry,
    report_root: Path,
) -> PreparedDomain | Failure:
    """Check DVC recorded the validated bytes, keep the report, record the data version."""
    listing = versioner.listing(data.md5)
    changed = sorted(p for p, md5 in checked.md5.items() if listing.get(p) != md5)
    if changed:
        return Failure(
            domain.name,
            "version",
            f"{len(changed)} file(s) changed while the domain was validated, e.g. "
            f"{clip(changed[0])}; run again",
            data_version=data.md5,
        )
    from .importers.log import entry_for, origin

    report = checked.report
    report_dir = report_root / domain.name / data.md5
    shutil.rmtree(report_dir, ignore_errors=True)
    (report_root / domain.name / ".validating").rename(report_dir)
    imported = entry_for(domain.root, checked.md5[domain.config.data.metadata])
    registry.record_data_version(
        domain.name,
        data.md5,
        rows=report.rows,
        row_counts=dict(report.counts),
        validation_passed=True,
        validation_summary=report.summary,
        report_uri=str(report_dir),
        validation_key=validation_key(domain),
        rows_added=imported["rows_added"] if imported else None,
        added_from=origin(imported) if imported else None,
        actor=FLOW_USER,
    )
    rows = rows_from_table(layout_of(domain.config), checked.table)
    return PreparedDomain(domain, data, rows_digest(rows), rows=len(rows))


# ------------------------------------------------------------------ plan and jobs
def unchanged_version(
    domain: Domain, versioner: DataVersioner, registry: PromptRegistry
) -> tuple[str, int] | None:
    """(data md5, version) when nothing changed since that version was tuned: the same
    data under the same validation rules, backbone weights, config and code. Decided
    without validating, without loading the backbone and without Ray."""
    skipped = unchanged_result(domain, versioner, registry)
    return None if skipped is None else (skipped.data_version, skipped.version)


def unchanged_result(
    domain: Domain, versioner: DataVersioner, registry: PromptRegistry
) -> DomainResult | None:
    """The domain's "skipped" result when nothing changed (see `unchanged_version`)."""
    return unchanged_results([domain], versioner, registry)[domain.name]


def unchanged_results(
    domains: Sequence[Domain], versioner: DataVersioner, registry: PromptRegistry
) -> dict[str, DomainResult | None]:
    """`unchanged_result` of several domains, with one `dvc status` for all of them."""
    data = unchanged_many(domains, versioner, registry)
    out: dict[str, DomainResult | None] = {}
    for domain in domains:
        found = data[domain.name]
        if found is None:
            out[domain.name] = None
            continue
        prepared = PreparedDomain(domain, found, rows_sha256="", validation="unchanged")
        number = existing_version(prepared, backbone_ref(domain), registry)
        out[domain.name] = None if number is None else prepared.skipped(number, registry)
    return out


def backbone_ref(domain: Domain) -> BackboneRef:
    """The domain's backbone by name, with its weights sha256 (cached: no loading when the
    weight files did not change since the last load)."""
    spec = domain.config.backbone
    options = tuple(sorted(spec.options.items()))
    sha = backbone_sha256(spec.family, spec.name, **spec.options)
    return BackboneRef(spec.family, spec.name, options, sha)


def existing_version(
    prepared: PreparedDomain, ref: BackboneRef, registry: PromptRegistry
) -> int | None:
    """The version already tuned from this data, backbone, config and code, if any."""
    found = registry.find_version(
        prepared.domain.name,
        data_version=prepared.data.md5,
        backbone_sha256=ref.sha256 or "",
        config=prepared.spec.to_dict(),
        code_version=package_version(),
    )
    return None if found is None else found.number


def production_artifact(
    domain: str, ref: BackboneRef, registry: PromptRegistry
) -> tuple[int | None, PromptArtifact | None]:
    """The production artifact (verified), if there is one this code can evaluate: trained
    on this same backbone, in the artifact format this library reads. Otherwise production
    is not comparable: the candidate is still tuned, and its request's policy says that
    production has no metric on this data (a reviewer may override, with a reason). A
    damaged blob is an error: the store lost integrity, and someone must look."""
    number = registry.resolve(domain)
    if number is None:
        return None, None
    version = registry.get_version(domain, number)
    if version.backbone.weights_sha256 != ref.sha256:
        return number, None
    files = registry.artifact_files(domain, number)  # verified against its sha256
    artifact = PromptArtifact(files[CONFIG].decode(), files[TENSORS])
    if artifact.config.get("format_version") != FORMAT_VERSION:
        return number, None  # an older library's prompts: intact, but not comparable here
    verify_artifact(artifact, source=f"{domain} v{number} (production)")
    return number, artifact


def build_job(
    prepared: PreparedDomain,
    ref: BackboneRef,
    registry: PromptRegistry,
    location: RemoteLocation,
    flow_run_id: str | None,
) -> TuneJob:
    domain = prepared.domain
    prod_number, prod_artifact = production_artifact(domain.name, ref, registry)
    return TuneJob(
        domain=domain.name,
        spec=prepared.spec,
        backbone=ref,
        data=DataRef(
            location,
            prepared.data.md5,
            prepared.rows_sha256,
            layout_of(domain.config),
            prepared.rows,
        ),
        production=prod_artifact,
        production_version=prod_number,
        extra={
            "domain": domain.name,
            "data_version": prepared.data.md5,
            "flow_run_id": flow_run_id,
        },
    )


# ------------------------------------------------------------------ register
def apply_monitoring(domain: Domain, registry: PromptRegistry) -> bool:
    """Store the domain's `monitoring:` block where every `mpt serve` replica and the drift
    check read it (its defaults when the block is absent, so removing it turns shadows
    off); audited when it changed. Returns whether it changed."""
    settings = domain.config.monitoring.settings()
    return registry.set_monitoring(domain.name, settings, actor=FLOW_USER)


def review_evidence(evidence: Evidence, with_production: bool) -> ReviewEvidence:
    """The worker's evidence as the registry stores it with the candidate; production's
    predictions only when production's metrics are registered with it too."""
    return ReviewEvidence(
        split=evidence.split,
        target_field=evidence.target_field,
        candidate=evidence.candidate,
        production=evidence.production if with_production else None,
        thumbnails=evidence.thumbnails,
        task=evidence.task,
    )


def register_outcome(
    prepared: PreparedDomain,
    outcome: TuneOutcome,
    registry: PromptRegistry,
    production_version: int | None,
    flow_run_id: str | None,
    search: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
) -> DomainResult:
    """Verify the candidate artifact, then register it (with the search that chose its
    config, if any, the domain's primary metric, and what triggered the run if not its
    cron or a person), production's metrics on the same
    data, a promotion request checked against the domain's policy and the reviewers'
    evidence (per-example predictions, thumbnails): one transaction, idempotent on retry."""
    domain, md5 = prepared.domain, prepared.data.md5
    c = domain.config
    identity = BackboneIdentity(**outcome.backbone)
    verify_artifact(outcome.artifact, source=f"{domain.name} candidate", backbone=identity)
    production = None
    if production_version is not None and outcome.production_metrics is not None:
        production = (production_version, outcome.production_metrics)
    evidence = None
    if outcome.evidence is not None:
        evidence = review_evidence(outcome.evidence, with_production=production is not None)
    registry.ensure_service_account(FLOW_USER)  # the flow acts with direct database access
    version, request = registry.register_candidate(
        domain.name,
        {CONFIG: outcome.artifact.config_json.encode(), TENSORS: outcome.artifact.tensors},
        method=prepared.spec.preset,
        config=prepared.spec.to_dict(),
        data_version=md5,
        backbone=outcome.backbone,
        metrics=outcome.metrics,
        policy=c.promotion_policy(),
        production=production,
        created_by=FLOW_USER,
        flow_run_id=flow_run_id,
        code_version=package_version(),
        training_history=outcome.history,
        search=search,
        primary_metric=prepared.spec.primary_metric,
        evidence=evidence,
        trigger=trigger,
    )
    metric = prepared.spec.primary_metric
    return DomainResult(
        domain=domain.name,
        status="registered",
        data_version=md5,
        validation=prepared.validation,
        metric=metric,
        candidate=outcome.metrics["test"].get(metric),
        production=(outcome.production_metrics or {}).get(metric),
        version=version.number,
        production_version=production_version,
        request_id=request.id if request else None,
        policy_passed=request.policy_passed if request else None,
        tune_seconds=outcome.seconds,
        message="; ".join(request.policy_report.get("reasons", [])) if request else "",
        history=outcome.history,
        features=outcome.features,
    )
