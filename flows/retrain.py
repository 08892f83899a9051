"""The retrain flow (Prefect 3): for each domain, validate (GX) -> version data (DVC) ->
skip if nothing changed -> tune on Ray -> evaluate candidate and production on the same
test split -> register -> open a promotion request. Thin tasks around `pipeline.py`.

Every per-domain step is isolated: a domain that fails gets its status, stage and full
reason in the run's table, and the others go on. Expected failures (bad data, a backbone
that does not load) are results, not exceptions, so Prefect logs no traceback for them.
"""

from __future__ import annotations

import base64
import io
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from cluster.ray import ray_session
from registry import PromptRegistry, open_registry

from . import pipeline
from .datacache import RemoteLocation
from .dispatch import WorkerStartError, tune_on_ray
from .domains import Domain, discover
from .jobs import BackboneRef, TuneFailure
from .pipeline import DomainResult, PreparedDomain, PrepareFailure, note, summary_row
from .preflight import check_services
from .progress import current
from .settings import PlatformSettings, load_settings
from .versioning import DataVersioner, RemoteSpec, find_repo_root

T = TypeVar("T")


def _failure(domain: str, stage: str, exc: BaseException, **fields: Any) -> DomainResult:
    message = f"{stage} failed: {type(exc).__name__}: {exc}"
    return DomainResult(domain, "failed", message=message, stage=stage, **fields)


def guarded(domain: str, stage: str, step: Callable[[], T], **fields: Any) -> T | DomainResult:
    """Run one domain's step; any error becomes that domain's failed result."""
    try:
        return step()
    except PrepareFailure as failure:
        return failure.result
    except Exception as exc:  # one domain's failure never stops the others
        logging.getLogger("mpt.run").debug("%s: %s failed", domain, stage, exc_info=True)
        return _failure(domain, stage, exc, **fields)


@task(retries=1, retry_delay_seconds=2, cache_policy=NONE)
def prepare_domain(
    domain: Domain, versioner: DataVersioner, registry: PromptRegistry, report_root: Path
) -> PreparedDomain | DomainResult:
    current().stage(domain.name, "validating")
    return guarded(
        domain.name,
        "validate",
        lambda: pipeline.prepare(domain, versioner, registry, report_root),
    )


@task(cache_policy=NONE)
def tune_domains(ref: BackboneRef, jobs, ray_address: str | None) -> dict | str:
    """domain -> outcome or failure; or why no worker could start (a string)."""
    reporter = current()
    for job in jobs:
        reporter.stage(job.domain, "tuning", "waiting for a worker")
    try:
        outcomes, _ = tune_on_ray(ref, jobs, address=ray_address, on_epoch=reporter.epoch)
    except WorkerStartError as exc:
        return str(exc)
    return outcomes


@task(cache_policy=NONE)
def search_domains(jobs, home: Path) -> dict:
    """domain -> SearchOutcome or why its search failed; trials on Ray Tune."""
    from .search import search_on_ray

    for job in jobs:
        current().stage(job.domain, "searching", "Ray Tune trials")
    return search_on_ray(jobs, storage=home / "ray-tune")


@task(retries=1, retry_delay_seconds=2, cache_policy=NONE)
def register_domain(
    prepared, outcome, registry, production_version, run_id, search=None
) -> DomainResult:
    current().stage(prepared.domain.name, "registering")
    return guarded(
        prepared.domain.name,
        "register",
        lambda: pipeline.register_outcome(
            prepared, outcome, registry, production_version, run_id, search
        ),
        data_version=prepared.data.md5,
        validation=prepared.validation,
    )


def _curve_png(result: DomainResult) -> str | None:
    if not result.history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    epochs = [h["epoch"] for h in result.history]
    ax.plot(epochs, [h["train_loss"] for h in result.history], label="train loss")
    val_key = next((k for k in result.history[0] if k.startswith("val_")), None)
    if val_key:
        ax.plot(epochs, [h[val_key] for h in result.history], label=val_key)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def publish(results: list[DomainResult]) -> None:
    """Prefect artifacts: a markdown summary per domain, a metrics table, training curves."""
    for r in results:
        lines = [
            f"# Retrain: `{r.domain}`",
            "",
            f"- status: **{r.status}**" + (f" (in {r.stage})" if r.stage else ""),
            f"- data version: `{r.data_version or '-'}`",
            f"- validation: {r.validation}",
        ]
        if r.status == "registered":
            prod = "-" if r.production is None else f"{r.production:.4f} (v{r.production_version})"
            lines += [
                f"- candidate v{r.version}: {r.metric} = {r.candidate:.4f}; production: {prod}",
                f"- promotion request #{r.request_id}: policy "
                + ("passed" if r.policy_passed else f"FAILED ({r.message})"),
                f"- **decision needed**: `mpt promote approve {r.request_id} --user <reviewer>` "
                f"or `mpt promote reject {r.request_id} --comment ...`",
            ]
        elif r.message:
            lines += ["", "```", r.message, "```"]
        png = _curve_png(r)
        if png:
            lines += ["", f"![training curve](data:image/png;base64,{png})"]
        create_markdown_artifact(
            "\n".join(lines),
            key=f"retrain-{r.domain}".lower(),
            description=f"retrain of {r.domain}",
        )
    create_table_artifact(
        [summary_row(r) for r in results], key="retrain-metrics", description="retrain run"
    )


def remote_location(settings: PlatformSettings, repo_root: Path) -> RemoteLocation:
    """Where workers read data versions: the DVC remote, a local path made absolute."""
    url = settings.dvc_remote_url
    if not url.startswith("s3://"):
        url = str(RemoteSpec(url).local_path(repo_root))
    return RemoteLocation(url, settings.dvc_s3_endpoint)


@flow(name="retrain", log_prints=True)
def retrain_flow(
    domains: list[str] | None = None,
    force: bool = False,
    ray_address: str | None = None,
    domains_dir: str | None = None,
    preflight: bool = True,
) -> list[dict[str, Any]]:
    """Retrain the named domains (default: all discovered) and open promotion requests.
    `preflight=False`: the caller checked the services just before (`mpt run` does)."""
    logger = get_run_logger()
    settings = load_settings(domains_dir=domains_dir)
    ray_address = ray_address or settings.ray_address
    found = discover(settings.domains_dir, domains)
    results = [
        DomainResult(name, "invalid", validation="broken domain.yaml", message=error)
        for name, error in found.errors.items()
    ]
    for name, error in found.errors.items():
        logger.error("domain %s skipped: %s", name, error.splitlines()[0])
    try:
        repo_root = find_repo_root(settings.domains_dir)
    except Exception as exc:
        repo_root = None
        problems = [str(exc)]
    else:
        problems = check_services(settings, repo_root=repo_root) if preflight else []
    if problems:
        for problem in problems:
            logger.error("preflight: %s", problem)
        message = "services not ready: " + "; ".join(problems)
        results += [
            DomainResult(name, "failed", message=message, stage="preflight")
            for name in found.domains
        ]
        return _finish(results)
    assert repo_root is not None
    registry = open_registry()
    run_id = str(flow_run.id) if flow_run.id else None
    versioner = DataVersioner(
        repo_root, RemoteSpec(settings.dvc_remote_url, settings.dvc_s3_endpoint)
    )
    location = remote_location(settings, repo_root)

    groups: dict[tuple, list[tuple[BackboneRef, PreparedDomain]]] = defaultdict(list)
    for domain in found.domains.values():
        prepared = prepare_domain(domain, versioner, registry, settings.home / "reports")
        if isinstance(prepared, DomainResult):
            logger.error("domain %s: %s", domain.name, note(prepared))
            results.append(prepared)
            current().stage(domain.name, prepared.status, note(prepared))
            continue
        ref = guarded(domain.name, "plan", lambda d=domain: pipeline.backbone_ref(d))
        if isinstance(ref, DomainResult):
            results.append(ref)
            continue
        groups[ref.key].append((ref, prepared))

    for group in groups.values():
        results += _tune_group(group, registry, location, run_id, force, ray_address, settings.home)
    return _finish(results)


def _tune_group(
    group: list[tuple[BackboneRef, PreparedDomain]],
    registry: PromptRegistry,
    location: RemoteLocation,
    run_id: str | None,
    force: bool,
    ray_address: str | None,
    home: Path,
) -> list[DomainResult]:
    results, todo = [], []
    for ref, prepared in group:
        name, md5 = prepared.domain.name, prepared.data.md5
        existing = None if force else pipeline.existing_version(prepared, ref, registry)
        if existing is not None:
            results.append(prepared.skipped(existing))
            current().stage(name, "skipped", f"unchanged since v{existing}")
            continue
        job = guarded(
            name,
            "job",
            lambda p=prepared, r=ref: pipeline.build_job(p, r, registry, location, run_id),
            data_version=md5,
            validation=prepared.validation,
        )
        if isinstance(job, DomainResult):
            results.append(job)
            continue
        todo.append((prepared, job))
    if not todo:
        return results
    with ray_session(ray_address):
        todo, searched, failed = _search(todo, home)
        results += failed
        if not todo:
            return results
        ref = group[0][0]
        outcomes = tune_domains(ref, [job for _, job in todo], ray_address)
    if isinstance(outcomes, str):
        return results + [
            p.failed("tune", f"backbone {ref.describe()} did not start on a worker: {outcomes}")
            for p, _ in todo
        ]
    for prepared, job in todo:
        outcome = outcomes[job.domain]
        if isinstance(outcome, TuneFailure):
            results.append(
                prepared.failed(
                    "tune", f"tuning failed after {outcome.attempts} attempt(s): {outcome.error}"
                )
            )
            continue
        results.append(
            register_domain(
                prepared,
                outcome,
                registry,
                job.production_version,
                run_id,
                searched.get(job.domain),
            )
        )
    return results


def _search(todo: list, home: Path) -> tuple[list, dict[str, dict], list[DomainResult]]:
    """Run the searches the domains ask for; their jobs come back with the chosen config.
    Returns (jobs to tune, domain -> search lineage, failed domains)."""
    wanted = [job for _, job in todo if job.spec.search is not None]
    if not wanted:
        return todo, {}, []
    outcomes = search_domains(wanted, home)
    kept, lineage, failed = [], {}, []
    for prepared, job in todo:
        found = outcomes.get(job.domain)
        if found is None:
            kept.append((prepared, job))
        elif isinstance(found, str):
            failed.append(prepared.failed("search", f"search failed: {found}"))
        else:
            kept.append((prepared, found.job))
            lineage[job.domain] = found.lineage
    return kept, lineage, failed


def _finish(results: list[DomainResult]) -> list[dict[str, Any]]:
    results.sort(key=lambda r: r.domain)
    for r in results:
        current().stage(r.domain, r.status, note(r))
    publish(results)
    return [r.to_dict() for r in results]
