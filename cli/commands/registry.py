"""`mpt registry ...` and `mpt promote ...`: the registry from the command line.

The registry enforces the rules; these commands only parse, call and print.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpt_core.errors import MptError
from registry import Policy, RegistryError, RegistrySettings  # light: no SQLAlchemy at start-up
from registry.constants import REQUEST_STATUSES

from .output import CommandError, emit
from .users import acting_user, cli_address

if TYPE_CHECKING:
    from registry import DataVersionInfo, PromptRegistry, VersionInfo


def _registry() -> PromptRegistry:
    from registry import open_registry

    return open_registry()


def _primary(version: VersionInfo, metrics: dict[str, Any]) -> str | None:
    """The metric a version is judged by (`registry.metrics.main_metric`), with the primary
    metric stored with it; on versions registered before it was stored, its task's primary
    metric from mpt_core's contract (the task name is in its config)."""
    from registry.metrics import main_metric

    if version.primary_metric:
        return main_metric(metrics, version.primary_metric)
    name = (version.config.get("task") or {}).get("name")
    task_metric = None
    if name:
        from mpt_core import TASKS

        task_metric = TASKS.get(name).primary_metric if name in TASKS else None
    return main_metric(metrics, task_metric)


def _short(metrics: dict[str, Any] | None, key: str) -> str:
    if not metrics or not isinstance(metrics.get(key), int | float):
        return "-"
    return f"{metrics[key]:.4f}"


def _data_lineage(data: DataVersionInfo | None) -> str:
    """A data version's rows and, when an import wrote it, what that import added."""
    if data is None:
        return ""
    counts = ", ".join(f"{split} {n}" for split, n in data.row_counts.items())
    added = f"; +{data.rows_added} rows by {data.added_from}" if data.rows_added is not None else ""
    return f"  ({data.rows} rows: {counts}{added})"


# ------------------------------------------------------------------ registry
def cmd_upgrade(args: argparse.Namespace) -> None:
    from registry import upgrade

    settings = RegistrySettings()
    upgrade(settings.database)
    print(f"registry schema at head on {settings.database}")


def cmd_list(args: argparse.Namespace) -> None:
    reg = _registry()
    rows = []
    for v in reg.list_versions(args.domain):
        test = v.metrics("test") or {}
        main = _primary(v, test)
        rows.append(
            {
                "domain": v.domain,
                "version": v.number,
                "method": v.method,
                "status": v.state,
                "aliases": ",".join(v.aliases) or "-",
                "metric": f"{main}={test[main]:.4f}" if main else "-",
                "data_version": v.data_version[:12],
                "created": f"{v.created_at:%Y-%m-%d %H:%M}",
                "by": v.created_by,
            }
        )
    if args.json:
        emit(args, [{**v.to_dict(), "state": v.state} for v in reg.list_versions(args.domain)])
    else:
        emit(args, rows)


def cmd_show(args: argparse.Namespace) -> None:
    reg = _registry()
    v = reg.get_version(args.domain, args.version)
    data = reg.data_version(v.domain, v.data_version)
    if args.json:
        emit(args, {**v.to_dict(), "state": v.state, "data": data.to_dict() if data else None})
        return
    print(f"{v.domain} v{v.number}  [{v.state}]  aliases: {', '.join(v.aliases) or '-'}")
    print(f"  method        {v.method}  (config {v.config_hash[:12]})")
    print(f"  data version  {v.data_version}{_data_lineage(data)}")
    print(
        f"  backbone      {v.backbone.family}:{v.backbone.name} ({v.backbone.weights_sha256[:12]}…)"
    )
    print(f"  code          {v.code_version} commit {v.git_commit or '-'}")
    print(
        f"  created       {v.created_at:%Y-%m-%d %H:%M:%S}Z by {v.created_by}, "
        f"flow run {v.flow_run_id or '-'}"
    )
    print(f"  artifact      {v.artifact_uri} ({v.artifact_size} bytes)")
    if v.search:
        trials = v.search.get("trials", [])
        print(
            f"  search        {len(trials)} trial(s) on {v.search.get('folds')} fold(s), chosen "
            f"{v.search.get('chosen') or '(the base config)'}, validation "
            f"{v.search.get('value', 0):.4f}"
        )
    for e in v.evaluations:
        scalars = {k: round(x, 4) for k, x in e.metrics.items() if isinstance(x, int | float)}
        print(f"  metrics       {e.split} on data {e.data_version[:12]}: {scalars}")
        for key, groups in e.metrics.items():
            if isinstance(groups, dict):
                per = ", ".join(f"{c}={x:.3f}" for c, x in groups.items())
                print(f"                {key}: {per}")


def cmd_diff(args: argparse.Namespace) -> None:
    diff = _registry().diff(args.domain, args.a, args.b, split=args.split)
    if args.json:
        emit(args, diff)
        return
    print(
        f"{args.domain} v{args.a} -> v{args.b} on {diff['split']} "
        f"of data {diff['data_version'][:12]}"
    )
    rows = [
        {"metric": k, f"v{args.a}": f"{a:.4f}", f"v{args.b}": f"{b:.4f}", "delta": f"{d:+.4f}"}
        for k, (a, b, d) in diff["metrics"].items()
    ]
    rows += [
        {
            "metric": f"  {k}",
            f"v{args.a}": f"{a:.4f}",
            f"v{args.b}": f"{b:.4f}",
            "delta": f"{d:+.4f}",
        }
        for k, (a, b, d) in diff["per_class"].items()
    ]
    emit(args, rows)


def cmd_history(args: argparse.Namespace) -> None:
    reg = _registry()
    if args.at:
        at = _when(args.at)
        version = reg.alias_at(args.domain, at, args.alias or "production")
        print(
            f"{args.domain}:{args.alias or 'production'} at {at.isoformat()}: "
            + (f"v{version}" if version else "not set")
        )
        return
    entries = reg.history(args.domain, args.alias)
    emit(
        args,
        [e.to_dict() for e in entries]
        if args.json
        else [
            {
                "at": f"{e.at:%Y-%m-%d %H:%M:%S}Z",
                "alias": e.alias,
                "from": f"v{e.from_version}" if e.from_version else "-",
                "to": f"v{e.to_version}",
                "kind": e.kind,
                "actor": e.actor,
                "request": f"#{e.request_id}" if e.request_id else "-",
                "reason": e.reason,
            }
            for e in entries
        ],
    )


def _when(text: str) -> datetime:
    from registry import InvalidRecord
    from registry.timeparse import parse_when

    try:
        return parse_when(text)
    except InvalidRecord as exc:
        raise CommandError(f"--at {exc}") from None


def cmd_gc(args: argparse.Namespace) -> None:
    removed = _registry().gc(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} unreferenced artifact blob(s)")
    for sha in removed:
        print(f"  {sha}")


def cmd_register(args: argparse.Namespace) -> None:
    """Register an artifact directory by hand (CI, notebooks, the README walk-through).

    The artifact is verified at the door (format, tensor checksum, safetensors header,
    finite float tensors), and so is the backbone it records: see `_check_backbone`."""
    from mpt_core.artifacts import read_artifact, verify_artifact

    config, _ = verify_artifact(read_artifact(args.artifact), source=str(args.artifact))
    _check_backbone(args, config)
    if bool(args.metrics) == bool(args.evaluate):
        raise CommandError(
            "give --metrics FILE (metrics computed elsewhere) or --evaluate (evaluate it here "
            "on the test split of its data version), one of the two"
        )
    metrics = _metrics_file(args.metrics) if args.metrics else {}
    reg = _registry()
    who = acting_user(args, reg)  # before anything is written
    data_version = args.data_version or _current_data_version(args.domain)
    if reg.data_version(args.domain, data_version) is None:
        reg.record_data_version(
            args.domain,
            data_version,
            rows=0,
            row_counts={},
            validation_passed=True,
            validation_summary="registered by hand with `mpt registry register`",
            actor=who,
        )
    v = reg.register_version(
        args.domain,
        args.artifact,
        method=config.get("method") or "custom",
        config=config.get("prompt_config", config),
        data_version=data_version,
        backbone=config["backbone"],
        metrics=metrics,
        created_by=who,
    )
    print(f"registered {v.domain} v{v.number} ({v.artifact_uri}) on data version {data_version}")
    if args.evaluate:
        _print_evaluated(_evaluate(reg, args.domain, v.number, data_version, who))


def _current_data_version(domain: str) -> str:
    """The data version the domain folder's data.dvc records (what `mpt run` would use)."""
    from flows.domains import get_domain
    from flows.settings import load_settings
    from flows.versioning import DataVersioner, RemoteSpec, find_repo_root

    settings = load_settings()
    try:
        found = get_domain(settings.domains_dir, domain)
    except MptError as exc:
        raise CommandError(
            f"{exc}\nWithout the domain's folder here, give its data version: --data-version MD5"
        ) from None
    remote = RemoteSpec(settings.dvc_remote_url, settings.dvc_s3_endpoint)
    current = DataVersioner(find_repo_root(found.root), remote).version_of(found.data_dir)
    if current is None:
        raise CommandError(
            f"domain {domain!r} has no data version yet (no {found.root / 'data.dvc'}): run "
            f"`mpt domain version {domain} --push`, or give one with --data-version MD5"
        )
    return current.md5


def _evaluate(reg: PromptRegistry, domain: str, number: int, data_version: str, who: str):
    """Evaluate `domain` v`number` on the test split of `data_version` here, and record it."""
    from flows.datacache import remote_location
    from flows.domains import get_domain
    from flows.evaluation import evaluate_version
    from flows.settings import load_settings
    from flows.versioning import find_repo_root
    from flows.worker import node_cache

    settings = load_settings()
    found = get_domain(settings.domains_dir, domain)
    location = remote_location(settings, find_repo_root(found.root))
    return evaluate_version(
        reg, found, number, data_version, location=location, cache=node_cache(), actor=who
    )


def _print_evaluated(done, file=None) -> None:
    scalars = ", ".join(
        f"{k}={x:.4f}" for k, x in done.metrics.items() if isinstance(x, int | float)
    )
    print(
        f"evaluated {done.domain} v{done.version} on {done.split} of data version "
        f"{done.data_version[:12]} ({done.examples} examples): {scalars}",
        file=file or sys.stdout,
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate a version on a data version (default: the domain folder's current one) and
    record the metrics and per-example predictions: what a promotion policy compares."""
    reg = _registry()
    who = acting_user(args, reg)
    data_version = args.data_version or _current_data_version(args.domain)
    _print_evaluated(_evaluate(reg, args.domain, args.version, data_version, who))


def cmd_pull(args: argparse.Namespace) -> None:
    """Write a version (a number or @alias), verified as serving verifies it, into DIR."""
    from flows.pull import pull

    pulled, target = pull(_registry(), args.domain, args.ref, args.dir, layout=args.format)
    v = pulled.version
    what = "save_pretrained layout" if args.format == "peft" else "prompts.safetensors"
    print(
        f"pulled {v.domain} v{v.number} ({v.state}, {v.method}, backbone {v.backbone.family}:"
        f"{v.backbone.name}) into {target} ({what}); artifact sha256 {v.artifact_sha256[:12]}… "
        "and backbone identity verified"
    )


def _check_backbone(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """The backbone the artifact records must be the one its prompts will run on: the
    backbone the domain's domain.yaml declares (family, name and options, resolved to the
    weights installed here) when the domain folder is found, else the one its own family
    and name resolve to here. Either way the weights' sha256 must equal the recorded one;
    a sha256 not cached is computed by loading the backbone, never assumed."""
    from mpt_core.backbones import BackboneIdentity

    try:
        recorded = BackboneIdentity(**config["backbone"])
    except TypeError:
        raise CommandError(
            f"{args.artifact}: its backbone record {config['backbone']!r} is malformed; "
            "re-save the artifact with save_prompts"
        ) from None
    declared = _declared_backbone(args)
    if declared is not None:
        if (declared.family, declared.weights_sha256) != (
            recorded.family,
            recorded.weights_sha256,
        ):
            raise CommandError(
                f"{args.artifact} was trained on backbone {recorded}, but domain "
                f"{args.domain!r} declares {declared}; register it under a domain using that "
                "backbone, or re-tune it on the domain's"
            )
        return
    here = _resolve(recorded.family, recorded.name, {}, f"the backbone {args.artifact} records")
    if here.weights_sha256 != recorded.weights_sha256:
        raise CommandError(
            f"{args.artifact} was trained on backbone {recorded}, but "
            f"{recorded.family}:{recorded.name} here has weights sha256 "
            f"{here.weights_sha256[:12]}…: its prompts would run on other weights. Fix: "
            "register it where the weights it was trained on are installed, or re-tune it "
            "on these"
        )


def _resolve(family: str, name: str | None, options: dict[str, Any], what: str):
    """The identity of the backbone `family`/`name`/`options` resolve to here."""
    from mpt_core.backbones import FAMILIES, backbone_identity
    from registry.errors import short_reason

    try:
        name = name or FAMILIES.get(family).default_name
        return backbone_identity(family, name, **options)
    except Exception as exc:  # any family's loader: missing files, unknown name...
        raise CommandError(
            f"cannot check {what}: {family}:{name} cannot be loaded here "
            f"({short_reason(exc)}). Fix: register on a machine where that backbone is "
            "installed (the server needs it too)"
        ) from None


def _declared_backbone(args: argparse.Namespace):
    """The identity of the backbone the domain's domain.yaml declares, as installed here
    (None if the domain folder is not here: a registry-only machine)."""
    from flows.domains import discover
    from flows.settings import load_settings

    domain = discover(load_settings().domains_dir, [args.domain]).domains.get(args.domain)
    if domain is None:
        return None
    spec = domain.config.backbone
    return _resolve(
        spec.family, spec.name, dict(spec.options), f"the backbone domain {args.domain!r} declares"
    )


def _metrics_file(path: str) -> dict[str, Any]:
    try:
        metrics = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CommandError(f"--metrics {path}: file not found") from None
    except (OSError, ValueError, RecursionError) as exc:  # JSON, UTF-8, nesting, digits
        raise CommandError(
            f"--metrics {path}: not a JSON file ({str(exc).split(';')[0]}); write "
            '{"test": {"accuracy": 0.9, ...}}'
        ) from None
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
        raise CommandError(
            f'--metrics {path}: expected {{"test": {{"accuracy": 0.9, ...}}}} (split -> metrics)'
        )
    return metrics


# ------------------------------------------------------------------ promote
def _request_row(r) -> dict[str, Any]:
    return {
        "id": r.id,
        "domain": r.domain,
        "version": f"v{r.version}",
        "alias": r.alias,
        "base": f"v{r.base_version}" if r.base_version else "-",
        "status": r.status,
        "policy": "passed" if r.policy_passed else "FAILED",
        "requested_by": r.requested_by,
        "reviewer": r.reviewer or "-",
    }


def cmd_request(args: argparse.Namespace) -> int:
    policy = _domain_policy(args.domain)
    reg = _registry()
    who = acting_user(args, reg)
    _evaluate_baseline(reg, args.domain, args.version, args.alias, who)
    r = reg.request_promotion(
        args.domain,
        args.version,
        requested_by=who,
        policy=policy,
        alias=args.alias,
        address=cli_address(),
    )
    emit(args, r.to_dict() if args.json else _request_row(r))
    if not args.json:
        for reason in r.policy_report.get("reasons", []):
            print(f"policy: {reason}")
    return 0


def _evaluate_baseline(reg: PromptRegistry, domain: str, number: int, alias: str, who: str):
    """Before a request is opened: when the alias's version has no metrics on the test split
    of the candidate's data version (production moved to a version tuned on other data),
    evaluate it there, so the policy compares like with like. If that cannot be done here,
    say why; the request's policy report then names the command to run."""
    candidate = reg.get_version(domain, number)
    current = reg.resolve(domain, alias)
    if current is None or current == number:
        return
    md5 = candidate.data_version
    if reg.get_version(domain, current).metrics("test", md5) is not None:
        return
    print(
        f"{domain}:{alias} v{current} has no metrics on the test split of data version "
        f"{md5[:12]} (v{number}'s); evaluating it there first",
        file=sys.stderr,
    )
    try:
        _print_evaluated(_evaluate(reg, domain, current, md5, who), file=sys.stderr)
    except (MptError, RegistryError) as exc:
        print(f"could not evaluate {domain} v{current} here: {exc}", file=sys.stderr)


def _domain_policy(name: str) -> Policy:
    """The policy in the domain's domain.yaml: the one source of promotion rules."""
    from flows.domains import get_domain
    from flows.settings import load_settings

    try:
        return get_domain(load_settings().domains_dir, name).config.promotion_policy()
    except MptError as exc:
        raise CommandError(
            f"{exc}\nThe promotion policy comes from the domain's domain.yaml (promotion:); "
            "run from the repository holding domains/, or set MPT_DOMAINS_DIR"
        ) from None


def cmd_requests(args: argparse.Namespace) -> None:
    status = None if args.status == "all" else args.status
    rows = _registry().requests(args.domain, status)
    emit(args, [r.to_dict() for r in rows] if args.json else [_request_row(r) for r in rows])


def cmd_approve(args: argparse.Namespace) -> None:
    reg = _registry()
    r = reg.approve(
        args.request,
        reviewer=acting_user(args, reg),
        comment=args.comment or "",
        override_reason=args.override,
        address=cli_address(),
    )
    print(  # an override only where the policy failed: else the reason is the comment
        f"approved #{r.id}: {r.domain}:{r.alias} -> v{r.version}"
        + (" (override)" if args.override and not r.policy_passed else "")
    )


def cmd_reject(args: argparse.Namespace) -> None:
    reg = _registry()
    r = reg.reject(
        args.request, reviewer=acting_user(args, reg), comment=args.comment, address=cli_address()
    )
    print(f"rejected #{r.id} ({r.domain} v{r.version})")


def cmd_rollback(args: argparse.Namespace) -> None:
    reg = _registry()
    e = reg.rollback(
        args.domain,
        args.version,
        actor=acting_user(args, reg),
        reason=args.reason,
        alias=args.alias,
        address=cli_address(),
    )
    print(f"rolled back {e.domain}:{e.alias} v{e.from_version} -> v{e.to_version}")


def cmd_protect(args: argparse.Namespace) -> None:
    reg = _registry()
    protected = reg.protect_alias(
        args.domain,
        args.alias,
        actor=acting_user(args, reg),
        protect=not args.off,
        address=cli_address(),
    )
    print(f"{args.domain}: protected aliases {', '.join(protected)}")


def cmd_await(args: argparse.Namespace) -> None:
    """Run the promotion flow: it pauses until a reviewer answers in the Prefect UI."""
    if not os.environ.get("PREFECT_API_URL"):
        raise CommandError(
            "`mpt promote await` waits for a decision typed into the Prefect UI, so it needs "
            "a Prefect server: start one (`prefect server start --host 127.0.0.1`) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    _registry().get_request(args.request)  # an unknown request fails here, not in the flow
    from flows.promotion import promotion_flow

    result = promotion_flow(args.request, timeout_seconds=args.timeout)
    print(
        f"request #{args.request}: {result['status']}"
        + (f" ({result['error']})" if "error" in result else "")
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument(
        "--user",
        help="who acts (default: $MPT_USER or the login name); with authentication on, the "
        "user of $MPT_TOKEN",
    )

    group = sub.add_parser("registry", help="prompt versions, lineage, history").add_subparsers(
        dest="registry_command", required=True
    )
    p = group.add_parser(
        "upgrade", help="create/upgrade the registry schema (Alembic)", parents=[common]
    )
    p.set_defaults(func=cmd_upgrade)
    p = group.add_parser("list", help="list prompt versions", parents=[common])
    p.add_argument("domain", nargs="?")
    p.set_defaults(func=cmd_list)
    p = group.add_parser("show", help="a version with lineage and metrics", parents=[common])
    p.add_argument("domain")
    p.add_argument("version", type=int)
    p.set_defaults(func=cmd_show)
    p = group.add_parser(
        "diff", help="compare two versions metric by metric and per class", parents=[common]
    )
    p.add_argument("domain")
    p.add_argument("a", type=int)
    p.add_argument("b", type=int)
    p.add_argument("--split", default="test")
    p.set_defaults(func=cmd_diff)
    p = group.add_parser(
        "history", help="alias moves; --at T: what an alias pointed at, at T", parents=[common]
    )
    p.add_argument("domain")
    p.add_argument("--alias")
    p.add_argument("--at", help="ISO time, e.g. 2026-11-27T10:00 (UTC unless it says otherwise)")
    p.set_defaults(func=cmd_history)
    p = group.add_parser("gc", help="delete artifact blobs no version references", parents=[common])
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_gc)
    p = group.add_parser(
        "register", help="register a prompt artifact directory by hand", parents=[common, who]
    )
    p.add_argument("domain")
    p.add_argument("artifact", help="directory written by mpt_core.save_prompts")
    p.add_argument(
        "--data-version",
        help="DVC md5 of the data it is judged on (default: the one domains/DOMAIN/data.dvc "
        "records)",
    )
    p.add_argument("--metrics", help='JSON file: {"test": {"accuracy": 0.9, ...}}')
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="instead of --metrics: evaluate it here on the test split of its data version",
    )
    p.set_defaults(func=cmd_register)
    p = group.add_parser(
        "evaluate",
        help="evaluate a version on a data version and record it (what a policy compares)",
        parents=[common, who],
    )
    p.add_argument("domain")
    p.add_argument("version", type=int)
    p.add_argument(
        "--data-version", help="DVC md5 (default: the one domains/DOMAIN/data.dvc records)"
    )
    p.set_defaults(func=cmd_evaluate)
    p = group.add_parser(
        "pull",
        help="write a version (VERSION or @ALIAS) into a folder, verified like serving does",
        parents=[common],
    )
    p.add_argument("domain")
    p.add_argument("ref", metavar="VERSION|@ALIAS", help="e.g. 3 or @production")
    p.add_argument("dir", help="a new or empty folder")
    p.add_argument(
        "--format",
        choices=["mpt", "peft"],
        default="mpt",
        help="mpt: prompts.safetensors + prompt_config.json (mpt_core.load_prompts); peft: "
        "adapter_config.json + adapter_model.safetensors, PEFT's save_pretrained layout",
    )
    p.set_defaults(func=cmd_pull)
    p = group.add_parser(
        "protect",
        help="protect an alias: only reviewers and admins move it (admin)",
        parents=[common, who],
    )
    p.add_argument("domain")
    p.add_argument("alias")
    p.add_argument("--off", action="store_true", help="unprotect it")
    p.set_defaults(func=cmd_protect)

    group = sub.add_parser("promote", help="request, approve, reject, roll back").add_subparsers(
        dest="promote_command", required=True
    )
    p = group.add_parser("request", help="ask to move an alias to a version", parents=[common, who])
    p.add_argument("domain")
    p.add_argument("version", type=int)
    p.add_argument("--alias", default="production")
    p.set_defaults(func=cmd_request)
    p = group.add_parser("list", help="promotion requests", parents=[common])
    p.add_argument("domain", nargs="?")
    p.add_argument(
        "--status",
        choices=[*REQUEST_STATUSES, "all"],
        default="all",
        help="which requests (default: all)",
    )
    p.set_defaults(func=cmd_requests)
    p = group.add_parser("approve", help="approve a request (not your own)", parents=[common, who])
    p.add_argument("request", type=int)
    p.add_argument("--comment")
    p.add_argument("--override", metavar="REASON", help="promote although the policy failed")
    p.set_defaults(func=cmd_approve)
    p = group.add_parser("reject", help="reject a request (not your own)", parents=[common, who])
    p.add_argument("request", type=int)
    p.add_argument("--comment", required=True)
    p.set_defaults(func=cmd_reject)
    p = group.add_parser(
        "rollback", help="move production back to an earlier version", parents=[common, who]
    )
    p.add_argument("domain")
    p.add_argument("version", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--alias", default="production")
    p.set_defaults(func=cmd_rollback)
    p = group.add_parser(
        "await",
        help="run the promotion flow: wait for a reviewer's decision in the Prefect UI",
        parents=[common],
    )
    p.add_argument("request", type=int)
    p.add_argument("--timeout", type=int, default=3600, help="seconds to wait (default 3600)")
    p.set_defaults(func=cmd_await)
