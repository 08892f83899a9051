"""`mpt run [DOMAIN...]`: the retrain flow on the embedded defaults (the main job)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..settings import load_settings
from .output import emit, table


def _embedded_prefect(home) -> None:
    """Prefect's ephemeral mode with its home under the platform home, unless the user
    points at a server (PREFECT_API_URL) or a home of their own. Set before importing it."""
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(domains_dir=args.domains_dir)
    _embedded_prefect(settings.home)
    os.environ.setdefault("MPT_DOMAINS_DIR", str(settings.domains_dir))
    from ..pipeline import DomainResult
    from ..retrain import retrain_flow, summary_row  # Prefect imports slowly

    started = time.perf_counter()
    print(
        f"retraining {', '.join(args.domains) if args.domains else 'all domains'} "
        f"in {settings.domains_dir} (MPT_HOME={settings.home})",
        flush=True,
    )
    results = retrain_flow(
        domains=args.domains or None,
        force=args.force,
        ray_address=args.ray_address,
        domains_dir=str(settings.domains_dir),
    )
    if args.json:
        emit(args, results)
    else:
        rows = [summary_row(DomainResult(**r)) for r in results]
        print()
        print(table(rows))
        print(
            f"\n{len(results)} domain(s) in {time.perf_counter() - started:.1f}s; "
            "review with `mpt promote list --status pending`"
        )
    return 0 if all(r["status"] in ("registered", "skipped") for r in results) else 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        help="retrain domains: version, validate, tune, register, request review",
        parents=[common],
    )
    p.add_argument("domains", nargs="*", help="domain names (default: all)")
    p.add_argument("--force", action="store_true", help="tune even if nothing changed")
    p.add_argument(
        "--ray-address", help="existing Ray cluster (default: $MPT_RAY_ADDRESS or a local Ray)"
    )
    p.add_argument("--domains-dir", help="default: $MPT_DOMAINS_DIR or ./domains")
    p.set_defaults(func=cmd_run)
