"""`mpt schedule list | apply | serve`: each domain's cron as a Prefect deployment."""

from __future__ import annotations

import argparse
import sys

from .domain import DOMAINS_DIR_ENV, domains_dir
from .output import emit


def cmd_list(args: argparse.Namespace) -> int:
    from flows.domains import discover
    from flows.drift_check import CHECK_SECONDS, DEPLOYMENT
    from flows.schedules import deployment_name, next_run

    found = discover(domains_dir(args))
    rows = []
    for d in found.domains.values():
        cron, tz = d.config.schedule.cron, d.config.schedule.timezone
        watch = d.config.monitoring
        drift = "-"
        if watch.drift_threshold is not None:
            drift = (
                f"psi > {watch.drift_threshold:g}, at most once per {watch.cooldown_hours:g} h "
                f"({DEPLOYMENT}, every {CHECK_SECONDS} s)"
            )
        try:
            when = next_run(cron, tz).isoformat(sep=" ", timespec="minutes")
        except ValueError as exc:  # a 5-field cron that Prefect's parser rejects
            when = f"invalid cron: {exc}"
        rows.append(
            {
                "domain": d.name,
                "cron": cron,
                "timezone": tz,
                "next_run": when,
                "deployment": deployment_name(d.name),
                "drift_retrain": drift,
            }
        )
    rows += [{"domain": name, "cron": "broken: see below"} for name in found.errors]
    emit(args, rows)
    for name, error in found.errors.items():
        print(f"\n{name}: {error}", file=sys.stderr)
    return 1 if found.errors else 0


def cmd_apply(args: argparse.Namespace) -> int:

    from flows.schedules import DEPLOYMENT_PREFIX, apply_deployments

    result = apply_deployments(domains_dir(args))

    def row(domain: str, deployment: str, action: str) -> dict[str, str]:
        return {"domain": domain, "deployment": deployment, "action": action}

    prefix = len(DEPLOYMENT_PREFIX)
    rows = [row(n[prefix:], n, "created") for n in result.created]
    rows += [row(n[prefix:], n, "updated") for n in result.updated]
    rows += [row(n[prefix:], n, "stale: its domain folder is gone") for n in result.stale]
    rows += [row(n, "-", "skipped: broken domain") for n in result.skipped]
    if result.drift_check:
        rows.append(row("(domains with a drift_threshold)", result.drift_check, "applied"))
    if args.json:
        emit(args, {"api_url": result.api_url, "deployments": rows, "skipped": result.skipped})
    else:
        print(f"Prefect server: {result.api_url}")
        emit(args, rows)
        for name, error in result.skipped.items():
            print(f"\nskipped {name}: {error}", file=sys.stderr)
        if result.stale:
            print(
                "\nstale deployments keep their schedules; remove them with "
                "`prefect deployment delete <flow>/<name>`",
                file=sys.stderr,
            )
    return 1 if result.skipped else 0


def cmd_serve(args: argparse.Namespace) -> int:

    from flows.schedules import serve_deployments

    serve_deployments(domains_dir(args), limit=args.limit)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "schedule", help="each domain's cron as a Prefect deployment: list, apply, serve"
    )
    schedule_sub = group.add_subparsers(dest="schedule_command", required=True)
    place = argparse.ArgumentParser(add_help=False)
    place.add_argument(
        "--domains-dir",
        help=f"folder holding the domains (default: ${DOMAINS_DIR_ENV} or ./domains)",
    )

    p = schedule_sub.add_parser(
        "list",
        help="each domain's cron, time zone, next run (in the domain's time zone) and "
        "drift-triggered retrain",
        parents=[common, place],
    )
    p.set_defaults(func=cmd_list)

    p = schedule_sub.add_parser(
        "apply",
        help="create or update the deployments on the Prefect server at $PREFECT_API_URL",
        parents=[common, place],
    )
    p.set_defaults(func=cmd_apply)

    p = schedule_sub.add_parser(
        "serve",
        help="register the deployments and run their scheduled retrains here (long-running)",
        parents=[place],
    )
    p.add_argument(
        "--limit", type=int, default=None, help="most flow runs at once (default: no limit)"
    )
    p.set_defaults(func=cmd_serve)
