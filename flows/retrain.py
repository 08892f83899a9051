"""The retrain flow (Prefect 3): for each domain, version data (DVC) -> validate (GX) ->
skip if nothing changed -> tune on Ray -> evaluate candidate and production on the same
test split -> register -> open a promotion request. Thin tasks around `pipeline.py`."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from registry import PromptRegistry, open_registry

from . import pipeline
from .dispatch import tune_on_ray
from .domains import Domain, discover
from .jobs import TuneFailure
from .settings import PlatformSettings, load_settings
from .versioning import DataVersioner, RemoteSpec, find_repo_root


@task(retries=1, retry_delay_seconds=2, cache_policy=NONE)
def prepare_domain(
    domain: Domain, versioner: DataVersioner, registry: PromptRegistry, report_root: Path
) -> pipeline.PreparedDomain:
    prepared = pipeline.version_and_validate(domain, versioner, report_root)
    pipeline.record_data(prepared, registry, report_root)
    return prepared


@task(cache_policy=NONE)
def tune_domains(backbone, jobs, ray_address: str | None):
    return tune_on_ray(backbone, jobs, address=ray_address)


@task(retries=1, retry_delay_seconds=2, cache_policy=NONE)
def register_domain(prepared, outcome, backbone, registry, production_version, run_id):
    return pipeline.register_outcome(
        prepared, outcome, backbone, registry, production_version, run_id
    )


def _curve_png(result: pipeline.DomainResult) -> str | None:
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


def publish(results: list[pipeline.DomainResult]) -> None:
    """Prefect artifacts: a markdown summary per domain, a metrics table, training curves."""
    for r in results:
        lines = [
            f"# Retrain: `{r.domain}`",
            "",
            f"- status: **{r.status}**",
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
            lines.append(f"- {r.message}")
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


def summary_row(r: pipeline.DomainResult) -> dict[str, Any]:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    return {
        "domain": r.domain,
        "status": r.status,
        "data_version": (r.data_version or "-")[:12],
        "validation": r.validation,
        "metric": r.metric or "-",
        "candidate": fmt(r.candidate) + (f" (v{r.version})" if r.version else ""),
        "production": fmt(r.production)
        + (f" (v{r.production_version})" if r.production_version else ""),
        "request": f"#{r.request_id}" if r.request_id else "-",
        "tune_s": "-" if r.tune_seconds is None else f"{r.tune_seconds:.1f}",
        "note": r.message[:80],
    }


@flow(name="retrain", log_prints=True)
def retrain_flow(
    domains: list[str] | None = None,
    force: bool = False,
    ray_address: str | None = None,
    domains_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Retrain the named domains (default: all discovered) and open promotion requests."""
    logger = get_run_logger()
    settings: PlatformSettings = load_settings(domains_dir=domains_dir)
    ray_address = ray_address or settings.ray_address
    found = discover(settings.domains_dir, domains)
    results: list[pipeline.DomainResult] = [
        pipeline.DomainResult(name, "invalid", validation="broken domain.yaml", message=error)
        for name, error in found.errors.items()
    ]
    for name, error in found.errors.items():
        logger.error("domain %s skipped: %s", name, error)
    registry = open_registry()
    report_root = settings.home / "reports"
    run_id = str(flow_run.id) if flow_run.id else None

    groups: dict[tuple, list] = defaultdict(list)
    for domain in found.domains.values():
        versioner = DataVersioner(
            find_repo_root(domain.root),
            RemoteSpec(settings.dvc_remote_url, settings.dvc_s3_endpoint),
        )
        try:
            prepared = prepare_domain(domain, versioner, registry, report_root)
        except Exception as exc:  # one domain's failure never stops the others
            logger.error("domain %s: versioning/validation failed: %s", domain.name, exc)
            results.append(pipeline.DomainResult(domain.name, "failed", message=str(exc)))
            continue
        if not prepared.report.passed:
            logger.error("domain %s: validation failed\n%s", domain.name, prepared.report.summary)
            results.append(
                pipeline.DomainResult(
                    domain.name,
                    "invalid",
                    prepared.data.md5,
                    "FAILED",
                    message=prepared.report.summary.splitlines()[0],
                )
            )
            continue
        logger.info("domain %s: data %s validated", domain.name, prepared.data.md5[:12])
        spec = domain.config.backbone
        groups[(spec.family, spec.name, tuple(sorted(spec.options.items())))].append(prepared)

    for group in groups.values():
        backbone = pipeline.backbone_for(group[0].domain)
        todo, production = [], {}
        for prepared in group:
            existing = None if force else pipeline.existing_version(prepared, backbone, registry)
            if existing is not None:
                results.append(
                    pipeline.DomainResult(
                        prepared.domain.name,
                        "skipped",
                        prepared.data.md5,
                        "passed",
                        version=existing,
                        message=f"unchanged since v{existing} (data, backbone, config, code)",
                    )
                )
                continue
            job = pipeline.build_job(prepared, backbone, registry, run_id)
            production[job.domain] = job.production_version
            todo.append((prepared, job))
        if not todo:
            continue
        logger.info("tuning %s on Ray", ", ".join(j.domain for _, j in todo))
        outcomes, cluster = tune_domains(backbone, [j for _, j in todo], ray_address)
        logger.info(
            "Ray: %s workers on %s CPUs / %s GPUs", cluster.workers, cluster.cpus, cluster.gpus
        )
        for prepared, job in todo:
            outcome = outcomes[job.domain]
            if isinstance(outcome, TuneFailure):
                results.append(
                    pipeline.DomainResult(
                        job.domain,
                        "failed",
                        prepared.data.md5,
                        "passed",
                        message=f"tuning failed after {outcome.attempts} attempt(s): "
                        f"{outcome.error}",
                    )
                )
                continue
            results.append(
                register_domain(
                    prepared, outcome, backbone, registry, production[job.domain], run_id
                )
            )
    results.sort(key=lambda r: r.domain)
    publish(results)
    return [r.to_dict() for r in results]
