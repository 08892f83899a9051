"""The retrain flow (Prefect 3): for each domain, validate (GX) -> version data (DVC) ->
skip if nothing changed -> tune on Ray -> evaluate candidate and production on the same
test split -> register -> open a promotion request. Thin tasks around `pipeline.py`.

Every per-domain step is isolated: a domain that fails gets its status, stage and full
reason in the run's table, and the others go on. Expected failures (bad data, a backbone
that does not load) are results, not exceptions, so Prefect logs no traceback for them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from cluster.ray import ray_session
from registry import PromptRegistry, open_registry

from . import pipeline
from .datacache import RemoteLocation, remote_location
from .dispatch import WorkerStartError, tune_on_ray
from .domains import Domain, discover
from .jobs import BackboneRef, Failure, StepFailed, TuneJob, TuneOutcome
from .pipeline import DomainResult, PreparedDomain
from .preflight import check_services
from .progress import current
from .run_report import note, publish
from .settings import load_settings
from .versioning import DataVersioner, RemoteSpec, find_repo_root

T = TypeVar("T")


def guarded(domain: str, stage: str, step: Callable[[], T]) -> T | Failure:
    """Run one domain's step; any error becomes that domain's Failure."""
    try:
        return step()
    except StepFailed as exc:
        return exc.failure
    except Exception as exc:  # one domain's failure never stops the others
        logging.getLogger("mpt.run").debug("%s: %s failed", domain, stage, exc_info=True)
        return Failure(domain, stage, f"{stage} failed: {type(exc).__name__}: {exc}")


@task(cache_policy=NONE)
def prepare_domains(
    domains: list[Domain], versioner: DataVersioner, registry: PromptRegistry, report_root: Path
) -> dict[str, PreparedDomain | Failure]:
    """Every domain validated (in parallel) and versioned (in one DVC operation); each
    domain's problem is its own Failure."""
    reporter = current()
    for domain in domains:
        reporter.stage(domain.name, "planning")
    return pipeline.prepare_many(domains, versioner, registry, report_root, on_stage=reporter.stage)


@task(cache_policy=NONE)
def tune_domains(
    ref: BackboneRef, jobs: list[TuneJob], ray_address: str | None
) -> dict[str, TuneOutcome | Failure]:
    """domain -> outcome or why it failed (every domain fails when no worker starts)."""
    reporter = current()
    for job in jobs:
        reporter.stage(job.domain, "tuning", "waiting for a worker")
    try:
        outcomes, _ = tune_on_ray(ref, jobs, address=ray_address, on_epoch=reporter.epoch)
    except WorkerStartError as exc:
        message = f"backbone {ref.describe()} did not start on a worker: {exc}"
        return {job.domain: Failure(job.domain, "tune", message) for job in jobs}
    return outcomes


@task(cache_policy=NONE)
def search_domains(jobs, home: Path) -> dict:
    """domain -> SearchOutcome or its Failure; trials on Ray Tune, progress in the table."""
    from .search import search_on_ray

    reporter = current()
    for job in jobs:
        reporter.stage(job.domain, "searching", "Ray Tune trials")

    def progress(domain: str, detail: str) -> None:
        reporter.stage(domain, "searching", detail)

    return search_on_ray(jobs, storage=home / "ray-tune", on_progress=progress)


@task(retries=1, retry_delay_seconds=2, cache_policy=NONE)
def register_domain(
    prepared, outcome, registry, production_version, run_id, search=None, trigger=None
) -> DomainResult:
    current().stage(prepared.domain.name, "registering")
    registered = guarded(
        prepared.domain.name,
        "register",
        lambda: pipeline.register_outcome(
            prepared, outcome, registry, production_version, run_id, search, trigger
        ),
    )
    return (
        DomainResult.of_failure(registered, prepared)
        if isinstance(registered, Failure)
        else registered
    )


@flow(name="retrain", log_prints=True)
def retrain_flow(
    domains: list[str] | None = None,
    force: bool = False,
    ray_address: str | None = None,
    domains_dir: str | None = None,
    preflight: bool = True,
    trigger: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Retrain the named domains (default: all discovered) and open promotion requests.
    `preflight=False`: the caller checked the services just before (`mpt run` does).
    `trigger`: why the run started when not its cron or a person (the drift check's
    reading), kept in the lineage of the versions it registers."""
    logger = get_run_logger()
    if trigger:
        logger.info("started by %s: %s", trigger.get("kind", "a trigger"), trigger)
    settings = load_settings(domains_dir=domains_dir)
    ray_address = ray_address or settings.ray_address
    found = discover(settings.domains_dir, domains)
    results = [
        DomainResult.of_failure(
            Failure(name, "config", error, invalid=True, validation="broken domain.yaml")
        )
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
            DomainResult.of_failure(Failure(name, "preflight", message)) for name in found.domains
        ]
        return _finish(results)
    assert repo_root is not None
    registry = open_registry()
    run_id = str(flow_run.id) if flow_run.id else None
    versioner = DataVersioner(
        repo_root, RemoteSpec(settings.dvc_remote_url, settings.dvc_s3_endpoint)
    )
    location = remote_location(settings, repo_root)

    domains = []
    for domain in found.domains.values():  # settings apply even when the data is unchanged
        applied = guarded(
            domain.name, "monitoring", lambda d=domain: pipeline.apply_monitoring(d, registry)
        )
        if isinstance(applied, Failure):
            logger.error("domain %s: %s", domain.name, applied.message)
            results.append(DomainResult.of_failure(applied))
        else:
            domains.append(domain)
    groups: dict[tuple, list[tuple[BackboneRef, PreparedDomain]]] = defaultdict(list)
    ready = prepare_domains(domains, versioner, registry, settings.home / "reports")
    for domain in domains:
        prepared = ready[domain.name]
        if isinstance(prepared, Failure):
            row = DomainResult.of_failure(prepared)
            logger.error("domain %s: %s", domain.name, note(row))
            results.append(row)
            current().stage(domain.name, row.status, note(row))
            continue
        ref = guarded(domain.name, "plan", lambda d=domain: pipeline.backbone_ref(d))
        if isinstance(ref, Failure):
            results.append(DomainResult.of_failure(ref, prepared))
            continue
        groups[ref.key].append((ref, prepared))

    for group in groups.values():
        results += _tune_group(
            group, registry, location, run_id, force, ray_address, settings.home, trigger
        )
    return _finish(results)


def _tune_group(
    group: list[tuple[BackboneRef, PreparedDomain]],
    registry: PromptRegistry,
    location: RemoteLocation,
    run_id: str | None,
    force: bool,
    ray_address: str | None,
    home: Path,
    trigger: dict[str, Any] | None = None,
) -> list[DomainResult]:
    results, todo = [], []
    for ref, prepared in group:
        name = prepared.domain.name
        existing = None if force else pipeline.existing_version(prepared, ref, registry)
        if existing is not None:
            results.append(prepared.skipped(existing, registry))
            current().stage(name, "skipped", f"unchanged since v{existing}")
            continue
        job = guarded(
            name,
            "job",
            lambda p=prepared, r=ref: pipeline.build_job(p, r, registry, location, run_id),
        )
        if isinstance(job, Failure):
            results.append(DomainResult.of_failure(job, prepared))
            continue
        todo.append((prepared, job))
    if not todo:
        return results
    with ray_session(ray_address):
        todo, searched, failed = _search(todo, home)
        results += failed
        if not todo:
            return results
        outcomes = tune_domains(group[0][0], [job for _, job in todo], ray_address)
    for prepared, job in todo:
        outcome = outcomes[job.domain]
        if isinstance(outcome, Failure):
            results.append(DomainResult.of_failure(outcome, prepared))
            continue
        results.append(
            register_domain(
                prepared,
                outcome,
                registry,
                job.production_version,
                run_id,
                searched.get(job.domain),
                trigger,
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
        elif isinstance(found, Failure):
            failed.append(DomainResult.of_failure(found, prepared))
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
