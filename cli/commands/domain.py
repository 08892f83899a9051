"""`mpt domain new | import | list | check | prepare | version`: domain folders from the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from flows.settings import load_settings

from .output import CommandError, emit

if TYPE_CHECKING:
    from flows.importers import SplitRule

DOMAINS_DIR_ENV = "MPT_DOMAINS_DIR"
IMPORT_FORMATS = "imagefolder, coco-captions, vqa, parquet"
"""For `--help` only (the registry is loaded by the command itself, which is slow to import);
tests/cli check it names every registered format."""


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


def cmd_import(args: argparse.Namespace) -> int:
    """Import SOURCE as a new domain, or append it to one (--append)."""
    from flows.importers import FormatOptions, ImportRequest, import_domain

    settings = load_settings(domains_dir=args.domains_dir)
    request = ImportRequest(
        name=args.name,
        format=args.format,
        source=args.source,
        task=args.task,
        append=args.append,
        link=args.link,
        group_by=args.group_by,
        rule=_split_rule(args),
        options=FormatOptions(
            images=args.images,
            image_pattern=args.image_pattern,
            image_column=args.image_column,
            split_column=args.split_column,
            columns=_column_map(args.column),
        ),
        s3_endpoint=args.s3_endpoint or settings.dvc_s3_endpoint,
    )
    result = import_domain(settings.domains_dir, request, progress=not args.json)
    if args.json:
        emit(args, result.to_dict())
        return 0
    per_split = ", ".join(f"{s} {n}" for s, n in result.added.items())
    done = "appended to" if result.mode == "append" else "imported as"
    print(
        f"{args.source} ({args.format}) {done} {result.domain}: {result.rows_added} rows "
        f"({per_split}), task {result.task}; {result.rows} rows in {result.root / 'data'}"
    )
    images = f"images: {result.copied} copied"
    if args.link:
        images += f", {result.linked} hard-linked"
    skipped = f"; {result.skipped} records left out (repeats)" if result.skipped else ""
    print(images + skipped)
    for key, values in result.declared.items():
        if isinstance(values, list | dict):
            print(f"declared {len(values)} {key} in {result.root / 'domain.yaml'}")
    print(f"next: `mpt domain check {result.domain}`, then `mpt run {result.domain}`")
    return 0


def _split_rule(args: argparse.Namespace) -> SplitRule | None:
    """--fractions / --seed as a SplitRule; None when neither is given (an append then
    keeps the rule of the domain's previous import)."""
    from flows.importers import SplitRule

    if args.fractions is None and args.seed is None:
        return None
    fractions = (0.8, 0.1, 0.1)
    if args.fractions is not None:
        try:
            fractions = tuple(float(x) for x in args.fractions.split(","))
        except ValueError:
            raise CommandError(
                f"--fractions {args.fractions!r}: give train,val,test as numbers, e.g. 0.8,0.1,0.1"
            ) from None
    return SplitRule(fractions, args.seed if args.seed is not None else 0)


def _column_map(given: list[str] | None) -> dict[str, str]:
    out = {}
    for item in given or []:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise CommandError(f"--column {item!r}: write FIELD=COLUMN, e.g. label=category")
        out[field.strip()] = column.strip()
    return out


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
    group = sub.add_parser(
        "domain", help="domain folders: new, import, list, check, prepare, version"
    )
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
        "import",
        help=f"a domain from data in a known layout ({IMPORT_FORMATS}), or more rows for one",
        parents=[common, place],
        description="Import SOURCE (a folder, a file or s3://bucket/prefix) as domain NAME: "
        "images copied (or hard-linked), metadata.csv, domain.yaml with the task and the "
        "labels or answers found. Splits are kept where the source has them, else made "
        "stratified by label with --fractions and --seed, keeping --group-by groups whole.",
    )
    p.add_argument("name")
    p.add_argument("source", help="a folder, a file (parquet) or s3://bucket/prefix")
    p.add_argument("--from", dest="format", required=True, help=f"the layout: {IMPORT_FORMATS}")
    p.add_argument("--task", help="the task to train (default: the one the fields found allow)")
    p.add_argument("--append", action="store_true", help="add the rows to the existing domain NAME")
    p.add_argument(
        "--link", action="store_true", help="hard-link images where the file system allows"
    )
    p.add_argument(
        "--group-by",
        metavar="KEY",
        help="a record's key or column (a patient, a source image) whose rows share one split",
    )
    p.add_argument(
        "--fractions",
        metavar="TRAIN,VAL,TEST",
        help="shares for rows the source gives no split (default 0.8,0.1,0.1)",
    )
    p.add_argument("--seed", type=int, help="seed of the split draw (default 0)")
    p.add_argument("--images", metavar="DIR", help="coco-captions, vqa: the images' folder")
    p.add_argument(
        "--image-pattern",
        help="vqa: an image id's file, e.g. 'images/{image_id}.jpg'",
    )
    p.add_argument("--image-column", help="parquet: the column holding the images")
    p.add_argument("--split-column", help="parquet: a column holding each row's split")
    p.add_argument(
        "--column",
        action="append",
        metavar="FIELD=COLUMN",
        help="parquet: the column holding an example field (repeatable), e.g. caption=text",
    )
    p.add_argument(
        "--s3-endpoint", help="S3 endpoint for s3:// sources (default $MPT_DVC_S3_ENDPOINT)"
    )
    p.set_defaults(func=cmd_import)

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
