"""The retrain pipeline's steps as plain functions; the Prefect flow (`retrain.py`) wraps
each in a task, and tests call them directly."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mpt_core import load_backbone
from mpt_core.backbones.base import Backbone
from registry import Policy, PromptRegistry
from registry.lineage import package_version

from .domains import Domain
from .jobs import ArtifactBlob, Row, TuneJob, TuneOutcome
from .predictions import record_evidence
from .validation import ValidationReport, validate_domain
from .versioning import DataVersion, DataVersioner
from .worker import blob_to_dir

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
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreparedDomain:
    domain: Domain
    data: DataVersion
    report: ValidationReport


def version_and_validate(
    domain: Domain, versioner: DataVersioner, report_root: Path, push: bool = True
) -> PreparedDomain:
    """Track the data with DVC (and push it), then validate that exact version."""
    data = versioner.track(domain.data_dir)
    if push:
        versioner.push(domain.data_dir)
    report = validate_domain(domain, report_root / domain.name / data.md5)
    return PreparedDomain(domain, data, report)


def record_data(prepared: PreparedDomain, registry: PromptRegistry, report_root: Path) -> None:
    report = prepared.report
    registry.record_data_version(
        prepared.domain.name,
        prepared.data.md5,
        rows=report.rows,
        row_counts=dict(report.counts),
        validation_passed=report.passed,
        validation_summary=report.summary,
        report_uri=str(report_root / prepared.domain.name / prepared.data.md5),
    )


def training_config(domain: Domain) -> dict[str, Any]:
    """What decides a tuning result besides data, backbone and code: hashed for skipping."""
    c = domain.config
    return {
        "task": {"name": c.task, **c.build_task().to_dict()},
        "preset": c.prompts.preset,
        "overrides": c.prompts.overrides,
        "tuning": c.tuning.model_dump(),
        "backbone": c.backbone.model_dump(),
    }


def backbone_for(domain: Domain) -> Backbone:
    spec = domain.config.backbone
    return load_backbone(spec.family, spec.name, **spec.options)


def existing_version(
    prepared: PreparedDomain, backbone: Backbone, registry: PromptRegistry
) -> int | None:
    """The version already tuned from this data, backbone, config and code, if any."""
    found = registry.find_version(
        prepared.domain.name,
        data_version=prepared.data.md5,
        backbone_sha256=backbone.identity.weights_sha256,
        config=training_config(prepared.domain),
        code_version=package_version(),
    )
    return None if found is None else found.number


def _rows(domain: Domain) -> list[Row]:
    cols = domain.config.data
    with open(domain.metadata_path, newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    return [
        Row(
            image=r[cols.image_column],
            split=r[cols.split_column],
            label=r.get(cols.label_column),
            caption=r.get(cols.caption_column),
            question=r.get(cols.question_column),
            answer=r.get(cols.answer_column),
        )
        for r in records
    ]


def production_blob(
    domain: str, backbone: Backbone, registry: PromptRegistry
) -> tuple[int | None, ArtifactBlob | None]:
    """The production artifact, if there is one trained on this same backbone."""
    number = registry.resolve(domain)
    if number is None:
        return None, None
    version = registry.get_version(domain, number)
    if version.backbone.weights_sha256 != backbone.identity.weights_sha256:
        return number, None
    with tempfile.TemporaryDirectory() as tmp:
        path = registry.fetch_artifact(domain, number, Path(tmp) / "prod")
        return number, ArtifactBlob(
            (path / "prompt_config.json").read_text(), (path / "prompts.safetensors").read_bytes()
        )


def build_job(
    prepared: PreparedDomain, backbone: Backbone, registry: PromptRegistry, flow_run_id: str | None
) -> TuneJob:
    domain = prepared.domain
    rows = _rows(domain)
    images = {r.image: (domain.data_dir / r.image).read_bytes() for r in rows}
    prod_number, prod_blob = production_blob(domain.name, backbone, registry)
    c = domain.config
    return TuneJob(
        domain=domain.name,
        task={"name": c.task, **c.build_task().to_dict()},
        preset=c.prompts.preset,
        overrides=dict(c.prompts.overrides),
        train_config=c.tuning.model_dump(),
        rows=rows,
        images=images,
        production=prod_blob,
        production_version=prod_number,
        extra={
            "domain": domain.name,
            "data_version": prepared.data.md5,
            "flow_run_id": flow_run_id,
        },
    )


def register_outcome(
    prepared: PreparedDomain,
    outcome: TuneOutcome,
    backbone: Backbone,
    registry: PromptRegistry,
    production_version: int | None,
    flow_run_id: str | None,
) -> DomainResult:
    """Register the candidate, record production's metrics on the same data, and open a
    promotion request checked against the domain's policy."""
    domain, md5 = prepared.domain, prepared.data.md5
    c = domain.config
    registry.ensure_service_account(FLOW_USER)  # the flow acts with direct database access
    with tempfile.TemporaryDirectory() as tmp:
        version = registry.register_version(
            domain.name,
            blob_to_dir(outcome.artifact, Path(tmp) / "artifact"),
            method=c.prompts.preset,
            config=training_config(domain),
            data_version=md5,
            backbone=backbone.identity.to_dict(),
            metrics=outcome.metrics,
            created_by=FLOW_USER,
            flow_run_id=flow_run_id,
            code_version=package_version(),
            training_history=outcome.history,
        )
    if outcome.evidence is not None:
        record_evidence(
            registry, domain.name, version.number, production_version, md5, outcome.evidence
        )
    if production_version is not None and outcome.production_metrics is not None:
        registry.record_evaluation(
            domain.name, production_version, md5, "test", outcome.production_metrics
        )
    policy = Policy(c.primary_metric, c.promotion.min_improvement, c.promotion.max_class_regression)
    request = registry.request_promotion(
        domain.name, version.number, requested_by=FLOW_USER, policy=policy
    )
    metric = c.primary_metric
    return DomainResult(
        domain=domain.name,
        status="registered",
        data_version=md5,
        validation="passed",
        metric=metric,
        candidate=outcome.metrics["test"].get(metric),
        production=(outcome.production_metrics or {}).get(metric),
        version=version.number,
        production_version=production_version,
        request_id=request.id,
        policy_passed=request.policy_passed,
        tune_seconds=outcome.seconds,
        message="; ".join(request.policy_report.get("reasons", [])),
        history=outcome.history,
    )
