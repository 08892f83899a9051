"""`mpt domain new | list | check | prepare | version`: domain folders from the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.settings import load_settings

from .output import emit

DOMAINS_DIR_ENV = "MPT_DOMAINS_DIR"


def domains_dir(args: argparse.Namespace) -> Path:
    return load_settings(domains_dir=args.domains_dir).domains_dir


def cmd_version(args: argparse.Namespace) -> int:
    """Track each named domain's data with DVC (and push it): one row per domain."""
    from flows.domains import get_domain
    from flows.versioning import DataVersioner, RemoteSpec, find_repo_root

    settings = load_settings(domains_dir=args.domains_dir)
    domains = [get_domain(settings.domains_dir, name) for name in dict.fromkeys(args.names)]
    remote = RemoteSpec(settings.dvc_remote_url, endpoint_url=settings.dvc_s3_endpoint)
    rows = []
    for domain in domains:
        versioner = DataVersioner(find_repo_root(domain.root), remote)
        version = versioner.track(domain.data_dir)
        pushed = versioner.push(domain.data_dir) if args.push else None
        rows.append(
            {
                "domain": domain.name,
                "data_version": version.md5,
                "files": version.files,
                "size": version.size,
                "pushed": "-" if pushed is None else f"{pushed} objects to {remote.describe()}",
            }
        )
    emit(args, rows)
    return 0


def cmd_new(args: argparse.Namespace) -> None:
    from flows.domains.scaffold import scaffold_domain

    root = scaffold_domain(domains_dir(args), args.name, args.task)
    print(f"created {root}: edit {root / 'domain.yaml'}, put images in {root / 'data/images'}")
    print(f"and rows in {root / 'data/metadata.csv'}, then run `mpt domain check {args.name}`")


def cmd_list(args: argparse.Namespace) -> int:
    from flows.domains import discover

    found = discover(domains_dir(args))
    rows = [
        {
            "domain": d.name,
            "task": d.config.task,
            "preset": d.config.prompts.preset,
            "backbone": d.config.backbone.family,
            "schedule": f"{d.config.schedule.cron} ({d.config.schedule.timezone})",
            "status": "ok",
        }
        for d in found.domains.values()
    ]
    rows += [{"domain": name, "status": "broken: see below"} for name in found.errors]
    emit(args, rows)
    for name, error in found.errors.items():
        print(f"\n{name}: {error}")
    return 1 if found.errors else 0


def cmd_check(args: argparse.Namespace) -> int:
    """The full preflight of a domain: schema, backbone and overrides, data; warnings."""
    from flows.domains import get_domain
    from flows.domains.check import check_backbone, policy_warnings
    from flows.validation import validate_data  # GX imports slowly: only when checking

    domain = get_domain(domains_dir(args), args.name)
    problems = check_backbone(domain)
    checked = validate_data(domain, Path(args.report_dir) if args.report_dir else None)
    report = checked.report
    warnings = policy_warnings(domain, checked.table)
    if args.json:
        emit(args, {**report.to_dict(), "problems": problems, "warnings": warnings})
    else:
        for problem in problems:
            print(f"{domain.name}: FAILED: {problem}")
        print(report.summary)
        for warning in warnings:
            print(f"{domain.name}: warning: {warning}")
        if report.docs_path:
            print(f"Data Docs: {report.docs_path}")
    return 0 if report.passed and not problems else 1


def cmd_prepare(args: argparse.Namespace) -> int:
    from flows.domains.prepare import main as prepare_main

    return prepare_main([*args.names, "--domains-dir", str(domains_dir(args))])


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("domain", help="domain folders: new, list, check, prepare, version")
    domain_sub = group.add_subparsers(dest="domain_command", required=True)
    place = argparse.ArgumentParser(add_help=False)
    place.add_argument(
        "--domains-dir",
        help=f"folder holding the domains (default: ${DOMAINS_DIR_ENV} or ./domains)",
    )

    p = domain_sub.add_parser("new", help="scaffold a domain folder", parents=[common, place])
    p.add_argument("name")
    p.add_argument(
        "--task", required=True, help="one of mpt_core's tasks (e.g. classification, vqa)"
    )
    p.set_defaults(func=cmd_new)

    p = domain_sub.add_parser(
        "list", help="list domains; broken ones are reported", parents=[common, place]
    )
    p.set_defaults(func=cmd_list)

    p = domain_sub.add_parser(
        "check", help="validate a domain's config and data (no training)", parents=[common, place]
    )
    p.add_argument("name")
    p.add_argument("--report-dir", help="write Data Docs, validation.json and summary.txt here")
    p.set_defaults(func=cmd_check)

    p = domain_sub.add_parser(
        "prepare",
        help="regenerate a demo domain's data from installed packages",
        parents=[common, place],
    )
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_prepare)

    p = domain_sub.add_parser(
        "version",
        help="track domains' data with DVC; print each data version",
        parents=[common, place],
    )
    p.add_argument("names", nargs="+", metavar="name")
    p.add_argument(
        "--push", action="store_true", help="also push to the DVC remote ($MPT_DVC_REMOTE)"
    )
    p.set_defaults(func=cmd_version)
