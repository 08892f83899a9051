"""`mpt run [DOMAIN...]`: the retrain flow on the embedded defaults (the main job).

Before any work: the services are checked (registry, artifact store, DVC remote: seconds,
nothing written) and the run is planned; when no domain changed since its last version,
no flow is started at all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from flows.settings import load_settings
from mpt_core.errors import MptError

from .output import emit, table

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
EMBEDDED_STARTUP_TIMEOUT_S = 180


def _embedded_prefect(home: Path) -> None:
    """Prefect's ephemeral mode with its home under the platform home, unless the user
    points at a server (PREFECT_API_URL) or a home of their own. Set before importing it."""
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Prefect waits 20 s for its ephemeral server; its first start migrates a fresh SQLite
    # database, which takes longer than that on a busy 2-core machine.
    os.environ.setdefault(STARTUP_TIMEOUT_ENV, str(EMBEDDED_STARTUP_TIMEOUT_S))


def _nothing_changed(settings, repo_root: Path, names: list[str] | None) -> list[dict] | None:
    """The skipped results when every domain is unchanged since its last version."""
    from flows.domains import discover
    from flows.pipeline import unchanged_results
    from flows.versioning import DataVersioner, RemoteSpec
    from registry import open_registry

    found = discover(settings.domains_dir, names)
    if found.errors or not found.domains:
        return None
    registry = open_registry()
    versioner = DataVersioner(
        repo_root, RemoteSpec(settings.dvc_remote_url, settings.dvc_s3_endpoint)
    )
    try:
        skipped = unchanged_results(list(found.domains.values()), versioner, registry)
    except Exception:  # let the flow report it, isolated, with its stage
        return None
    if any(result is None for result in skipped.values()):
        return None
    return sorted((r.to_dict() for r in skipped.values()), key=lambda r: r["domain"])


class PrefectUnavailable(MptError):
    """The orchestrator could not be reached or started; raised before any domain ran."""


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(domains_dir=args.domains_dir)
    from flows.preflight import check_services
    from flows.versioning import VersioningError, find_repo_root

    started = time.perf_counter()
    try:
        repo_root = find_repo_root(settings.domains_dir)
    except VersioningError as exc:
        print(f"mpt: error: {exc}", file=sys.stderr)
        return 2
    problems = check_services(settings, repo_root=repo_root)
    if problems:
        print("mpt: error: the services `mpt run` needs are not ready:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print("nothing was written", file=sys.stderr)
        return 2
    results = None if args.force else _nothing_changed(settings, repo_root, args.domains or None)
    if results is None:
        results = _run_flow(args, settings)
    if args.json:
        emit(args, results)
    else:
        _print_table(results, time.perf_counter() - started)
    return 0 if all(r["status"] in ("registered", "skipped") for r in results) else 1


def _run_flow(args: argparse.Namespace, settings) -> list[dict]:
    _embedded_prefect(settings.home)
    os.environ.setdefault("MPT_DOMAINS_DIR", str(settings.domains_dir))
    from flows.progress import LiveTable, LogReporter, reporting
    from flows.retrain import retrain_flow  # Prefect imports slowly

    if not args.json:
        print(
            f"retraining {', '.join(args.domains) if args.domains else 'all domains'} "
            f"in {settings.domains_dir} (MPT_HOME={settings.home})",
            file=sys.stderr,
            flush=True,
        )
    live = LiveTable() if not args.json and sys.stderr.isatty() else None
    reporter = live or LogReporter()
    with reporting(reporter), live or contextlib.nullcontext():
        return _call_flow(args, settings, retrain_flow)


def _call_flow(args, settings, retrain_flow) -> list[dict]:
    try:
        return retrain_flow(
            domains=args.domains or None,
            force=args.force,
            ray_address=args.ray_address,
            domains_dir=str(settings.domains_dir),
            preflight=False,  # checked by cmd_run a moment ago
        )
    except RuntimeError as exc:
        if "ephemeral Prefect API server" not in str(exc):
            raise
        raise PrefectUnavailable(
            f"Prefect's embedded server did not start within "
            f"{os.environ.get(STARTUP_TIMEOUT_ENV)} s (home {os.environ.get('PREFECT_HOME')}); "
            f"nothing was tuned or registered. Raise {STARTUP_TIMEOUT_ENV}, or start a "
            "server (`prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        ) from exc


def _print_table(results: list[dict], seconds: float) -> None:
    from flows.pipeline import DomainResult
    from flows.run_report import summary_row

    rows = [summary_row(DomainResult(**r)) for r in results]
    print()
    print(table(rows))
    registered = [r for r in results if r["status"] == "registered"]
    failed = [r for r in results if r["status"] in ("failed", "invalid")]
    print(f"\n{len(results)} domain(s) in {seconds:.1f}s")
    if registered:
        print(
            f"{len(registered)} candidate(s) registered: review with "
            "`mpt promote list --status pending`"
        )
    if failed:
        print(
            f"{len(failed)} domain(s) failed: see the note column; "
            "`mpt run --json` gives the full reasons"
        )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        help="retrain domains: validate, version, tune, register, request review",
        parents=[common],
    )
    p.add_argument("domains", nargs="*", help="domain names (default: all)")
    p.add_argument("--force", action="store_true", help="tune even if nothing changed")
    p.add_argument(
        "--ray-address", help="existing Ray cluster (default: $MPT_RAY_ADDRESS or a local Ray)"
    )
    p.add_argument("--domains-dir", help="default: $MPT_DOMAINS_DIR or ./domains")
    p.set_defaults(func=cmd_run)
