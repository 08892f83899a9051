"""Each domain's cron as a Prefect deployment of the retrain flow.

One deployment per discovered domain, `retrain-<domain>`, with the domain's cron in its time
zone, parameters `{"domains": [<domain>], "domains_dir": <abs path>}` and tags
`mpt, retrain, <domain>`. They are runner deployments (no work pool, no image): `mpt schedule
apply` registers or updates them on the server at PREFECT_API_URL, and `mpt schedule serve`
(`prefect.serve`) registers them too and runs their flow runs in this machine's processes.

A broken domain folder is skipped and reported; the others are still scheduled. A broken
domain's deployment from an earlier apply stays on the server unchanged until it is fixed.

When a domain sets `monitoring.drift_threshold`, one more deployment, `drift-check`
(flows.drift_check), runs every CHECK_SECONDS and starts the retrain deployment of a
domain whose production drifted above its threshold (at most once per cooldown).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpt_core.errors import MptError

from .domains import Domain, discover

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

DEPLOYMENT_PREFIX = "retrain-"
TAGS = ("mpt", "retrain")
SCHEDULE_SLUG = "domain-yaml"
"""Marks the schedule that comes from domain.yaml (one per deployment)."""
START_HINT = (
    "start a server with `prefect server start` and set "
    "PREFECT_API_URL=http://127.0.0.1:4200/api (or point it at your Prefect server)"
)


class ScheduleError(MptError):
    """Deployments could not be built, registered or served."""


@dataclass
class DeploymentPlan:
    """The deployments of one domains folder, and the domains that could not get one."""

    deployments: list[RunnerDeployment] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Domain folder -> why it has no deployment (broken domain.yaml, cron Prefect rejects)."""
    drift_check: RunnerDeployment | None = None
    """The drift check, when a domain sets `monitoring.drift_threshold`."""


@dataclass
class ApplyResult:
    """What `apply_deployments` did on the server at `api_url`."""

    api_url: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Domain folder -> why it was skipped (its deployment, if any, was left unchanged)."""
    stale: list[str] = field(default_factory=list)
    """Deployments of the retrain flow on the server whose domain folder is gone."""
    ids: dict[str, str] = field(default_factory=dict)
    """Deployment name -> its id on the server."""
    drift_check: str | None = None
    """The drift check's deployment ("<flow>/<name>"), when one was applied."""


def deployment_name(domain: str) -> str:
    return f"{DEPLOYMENT_PREFIX}{domain}"


def default_flow() -> Flow:
    """The retrain flow, imported only when needed (it pulls in Ray and the training code)."""
    try:
        from .retrain import retrain_flow
    except ImportError as exc:
        raise ScheduleError(
            f"the retrain flow (flows.retrain.retrain_flow) cannot be imported: {exc}"
        ) from exc
    return retrain_flow


def next_run(cron: str, timezone: str, after: dt.datetime | None = None) -> dt.datetime:
    """The first time at or after `after` (default: now) that `cron` fires in `timezone`,
    as an aware datetime in that zone; computed the way Prefect's scheduler computes it
    (including daylight-saving gaps and folds)."""
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule

    start = after or dt.datetime.now(dt.UTC)
    dates = asyncio.run(CronSchedule(cron=cron, timezone=timezone).get_dates(n=1, start=start))
    return dates[0]


def _deployment(domain: Domain, domains_dir: Path, flow: Flow) -> RunnerDeployment:
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    schedule = domain.config.schedule
    return flow.to_deployment(
        name=deployment_name(domain.name),
        schedule=Cron(schedule.cron, timezone=schedule.timezone, slug=SCHEDULE_SLUG),
        parameters={"domains": [domain.name], "domains_dir": str(domains_dir)},
        tags=[*TAGS, domain.name],
        description=(
            f"Retrain the prompts of domain {domain.name!r} at cron {schedule.cron!r} "
            f"({schedule.timezone}), from {domain.root / 'domain.yaml'}."
        ),
        # served runs start `python -m prefect.engine`, which imports the entrypoint: a module
        # path works from any working directory (`flows` is an installed package)
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def _drift_check(
    domains: list[Domain], flow: Flow, retrains: list[RunnerDeployment]
) -> RunnerDeployment:
    from prefect.schedules import Interval
    from prefect.types.entrypoint import EntrypointType

    from .drift_check import CHECK_SECONDS, DEPLOYMENT

    watched = ", ".join(f"{d.name} > {d.config.monitoring.drift_threshold:g}" for d in domains)
    names = {deployment_name(d.name) for d in domains}
    deployments = {
        r.name.removeprefix(DEPLOYMENT_PREFIX): f"{r.flow_name}/{r.name}"
        for r in retrains
        if r.name in names
    }
    return flow.to_deployment(
        name=DEPLOYMENT,
        schedule=Interval(CHECK_SECONDS, slug=SCHEDULE_SLUG),
        parameters={"deployments": deployments},
        tags=[*TAGS, DEPLOYMENT],
        description=(
            f"Every {CHECK_SECONDS} s, start the retrain deployment of a domain whose "
            f"production drifted above its monitoring.drift_threshold ({watched})."
        ),
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def drift_watched(domains: list[Domain]) -> list[Domain]:
    """The domains whose domain.yaml sets `monitoring.drift_threshold`."""
    return [d for d in domains if d.config.monitoring.drift_threshold is not None]


def plan_deployments(
    domains_dir: str | Path, flow: Flow | None = None, drift_flow: Flow | None = None
) -> DeploymentPlan:
    """One deployment per valid domain under `domains_dir`; broken ones go to `skipped`;
    the drift check when a domain sets a drift threshold (`drift_flow`, default
    flows.drift_check's)."""
    domains_dir = Path(domains_dir).resolve()  # runs may start in another working directory
    if not domains_dir.is_dir():
        raise ScheduleError(
            f"domains folder {domains_dir} does not exist; pass --domains-dir or set "
            "MPT_DOMAINS_DIR"
        )
    flow = flow or default_flow()
    found = discover(domains_dir)
    plan = DeploymentPlan(skipped=dict(found.errors))
    for name, domain in found.domains.items():
        try:
            plan.deployments.append(_deployment(domain, domains_dir, flow))
        except ValueError as exc:  # e.g. a 5-field cron that Prefect's parser rejects
            plan.skipped[name] = f"{domain.root / 'domain.yaml'}: schedule: {exc}"
    watched = drift_watched(list(found.domains.values()))
    if watched:
        if drift_flow is None:
            from .drift_check import drift_check_flow as drift_flow
        plan.drift_check = _drift_check(watched, drift_flow, plan.deployments)
    return plan


def build_deployments(domains_dir: str | Path, flow: Flow | None = None) -> list[RunnerDeployment]:
    """The deployments of every valid domain (see `plan_deployments` for the skipped ones)."""
    return plan_deployments(domains_dir, flow).deployments


@contextlib.contextmanager
def prefect_settings_from_env() -> Iterator[str]:
    """Enter Prefect settings read from the environment *now*; yield the API URL.

    Prefect snapshots its settings when it is imported; PREFECT_API_URL may have been set
    since (by a test, or by code that imported prefect early). Without a URL the client
    would silently start a throwaway ephemeral server, which is never what a schedule wants.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import Settings

    settings = Settings()
    url = settings.api.url
    if not url:
        raise ScheduleError(
            "PREFECT_API_URL is not set (neither in the environment nor in the active Prefect "
            f"profile), so there is no server to hold the schedules; {START_HINT}"
        )
    with SettingsContext(profile=get_settings_context().profile, settings=settings):
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
        if problem is not None:
            reason = (
                "connection refused or timed out"
                if isinstance(problem, httpx.TransportError)
                else str(problem) or type(problem).__name__
            )
            raise ScheduleError(
                f"the Prefect server at PREFECT_API_URL={url} is not reachable ({reason}); "
                f"{START_HINT}"
            )
        yield url


def _existing(client: Any, flow_name: str) -> dict[str, str]:
    """Name -> id of the deployments of `flow_name` tagged mpt+retrain on the server."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterName,
    )

    found: dict[str, str] = {}
    page = 200
    while True:
        batch = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=list(TAGS))),
            limit=page,
            offset=len(found),
        )
        found.update({d.name: str(d.id) for d in batch})
        if len(batch) < page:
            return found


def apply_deployments(
    domains_dir: str | Path, flow: Flow | None = None, drift_flow: Flow | None = None
) -> ApplyResult:
    """Create or update every valid domain's deployment on the server at PREFECT_API_URL.

    Idempotent: a deployment is matched by name (`<flow>/retrain-<domain>`) and updated in
    place, its schedule replaced by the one in domain.yaml and made active (as `serve` does
    when it starts; `serve` pauses them when it stops). Domains added since the last apply get
    created; broken domains are skipped (see `ApplyResult.skipped`).
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import DeploymentApplyError

    flow = flow or default_flow()
    plan = plan_deployments(domains_dir, flow, drift_flow)
    with prefect_settings_from_env() as url:
        result = ApplyResult(api_url=url, skipped=plan.skipped)
        with get_client(sync_client=True) as client:
            existing = _existing(client, flow.name)
        for deployment in plan.deployments:
            try:
                result.ids[deployment.name] = str(deployment.apply())
            except DeploymentApplyError as exc:
                raise ScheduleError(
                    f"the server at {url} refused deployment {deployment.name!r}: {exc}"
                ) from exc
            (result.updated if deployment.name in existing else result.created).append(
                deployment.name
            )
        if plan.drift_check is not None:
            check = plan.drift_check
            result.ids[check.name] = str(check.apply())
            result.drift_check = f"{check.flow_name}/{check.name}"
    wanted = {d.name for d in plan.deployments} | {deployment_name(n) for n in plan.skipped}
    result.stale = sorted(set(existing) - wanted)
    return result


def serve_deployments(
    domains_dir: str | Path,
    flow: Flow | None = None,
    drift_flow: Flow | None = None,
    **serve_kwargs: Any,
) -> None:
    """Register every valid domain's deployment and run its scheduled flow runs here until
    interrupted (`prefect.serve`; on shutdown Prefect pauses the schedules it served)."""
    import sys

    from prefect import serve

    plan = plan_deployments(domains_dir, flow, drift_flow)
    for name, reason in plan.skipped.items():
        print(f"skipped domain {name}: {reason}", file=sys.stderr)
    if not plan.deployments:
        raise ScheduleError(
            f"no valid domain under {Path(domains_dir).resolve()} to serve; "
            "add one with `mpt domain new` and check it with `mpt domain list`"
        )
    with prefect_settings_from_env():
        checks = [plan.drift_check] if plan.drift_check is not None else []
        serve(*plan.deployments, *checks, **serve_kwargs)
