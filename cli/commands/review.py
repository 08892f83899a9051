"""`mpt review`: the reviewers' web pages (the `review` app) on uvicorn, against the
registry and artifact store the settings name."""

from __future__ import annotations

import argparse
import socket

from registry import RegistrySettings  # light: no SQLAlchemy at start-up

from .output import CommandError


def _check_free(host: str, port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"cannot serve on {host}:{port} ({exc.strerror}); pick another with --port"
            ) from None


def cmd_review(args: argparse.Namespace) -> None:
    import uvicorn
    from sqlalchemy.engine import make_url

    from registry import open_registry
    from review import create_app

    settings = RegistrySettings()
    registry = open_registry(settings)
    app = create_app(registry)
    _check_free(args.host, args.port)
    where = make_url(settings.database).render_as_string(hide_password=True)
    print(f"review pages on http://{args.host}:{args.port}/ (registry {where}); Ctrl+C stops")
    if not registry.auth_enabled():
        print("no users yet: `mpt user add NAME --role reviewer` prints a token to log in with")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("review", help="serve the reviewers' web pages (default 127.0.0.1:8001)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_review)
