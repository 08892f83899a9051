"""`mpt serve` (the serving app: embedded uvicorn, or Ray Serve with --ray) and `mpt predict`
(batch prediction over Ray Data). The commands only parse, build settings and start."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from flows.settings import load_settings
from registry import RegistrySettings  # light: no SQLAlchemy at start-up


def _serve_settings(args: argparse.Namespace):
    from serving.errors import ServingError
    from serving.settings import ServeSettings

    flags = {
        "host": args.host,
        "port": args.port,
        "alias": args.alias,
        "max_batch_size": getattr(args, "max_batch_size", None),
        "max_wait_ms": getattr(args, "max_wait_ms", None),
        "threads": getattr(args, "threads", None),
    }
    try:
        return ServeSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ServingError(
            f"serving setting {first['loc'][0]}: {first['msg']} (from the flag or "
            f"MPT_SERVE_{str(first['loc'][0]).upper()})"
        ) from None


def cmd_serve(args: argparse.Namespace) -> None:
    from registry import open_registry

    settings = _serve_settings(args)
    if args.ray:
        from serving.ray_serve import serve_forever

        address = args.address or load_settings().ray_address
        serve_forever(
            settings,
            RegistrySettings(),
            address=address,
            replicas=args.replicas,
            detach=args.detach,
        )
        return
    from serving.embedded import run

    run(settings, open_registry())


def cmd_predict(args: argparse.Namespace) -> int:
    from registry import open_registry
    from serving.batch import predict_to_csv
    from serving.items import limits

    summary = predict_to_csv(
        open_registry(),
        args.domain,
        Path(args.path),
        Path(args.out),
        alias=args.alias,
        batch_size=args.batch_size,
        workers=args.workers,
        address=args.ray_address or load_settings().ray_address,
        limits=limits(_serve_settings(argparse.Namespace(host=None, port=None, alias=None))),
        progress=not args.json,
    )
    if args.json:
        print(json.dumps({**summary.__dict__, "out": str(summary.out)}, indent=2))
        return 1 if summary.errors else 0
    print(
        f"{summary.rows} image(s) of {summary.domain} predicted by v{summary.version} "
        f"({summary.alias}) in {summary.seconds:.1f}s -> {summary.out}"
        + (f"; {summary.errors} row(s) with an error (column 'error')" if summary.errors else "")
    )
    return 1 if summary.errors else 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve", help="serve every domain's production prompts over HTTP (uvicorn, or Ray Serve)"
    )
    p.add_argument("--host", help="default: $MPT_SERVE_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, help="default: $MPT_SERVE_PORT or 8000")
    p.add_argument("--alias", help="the alias served for every domain (default: production)")
    p.add_argument("--max-batch-size", type=int, help="items per backbone batch (default 32)")
    p.add_argument("--max-wait-ms", type=float, help="how long a batch waits to fill (default 5)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--ray", action="store_true", help="deploy on Ray Serve instead of uvicorn")
    p.add_argument(
        "--address", help="--ray: an existing cluster (default: $MPT_RAY_ADDRESS or a local Ray)"
    )
    p.add_argument("--replicas", type=int, help="--ray: replicas (default: one per GPU, else one)")
    p.add_argument("--detach", action="store_true", help="--ray --address: deploy and return")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "predict",
        help="batch prediction: a domain's version over a folder or metadata CSV (Ray Data)",
        parents=[common],
    )
    p.add_argument("domain")
    p.add_argument("path", help="a folder of images, or a CSV with an 'image' column")
    p.add_argument("--out", required=True, help="the CSV to write (e.g. preds.csv)")
    p.add_argument("--alias", default="production", help="default: production")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, help="actors (default: one per GPU, else CPUs - 1)")
    p.add_argument("--ray-address", help="an existing cluster (default: $MPT_RAY_ADDRESS)")
    p.set_defaults(func=cmd_predict)
