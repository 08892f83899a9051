"""The `mpt` command line (`python -m cli` runs the same). `main(argv)` is callable from
tests with a list of arguments.

The CLI sits above every package of the platform: it may import the apps (`flows`,
`review`, `serving`) and the layers below them; nothing imports it. Each command group
lives in `cli/commands/<group>.py` and adds its sub-commands with
`register(subparsers, common)`; a command is a function taking the parsed arguments.
Command modules import their heavy dependencies (torch, Prefect, Ray, GX) inside the
commands, so `mpt version` or `mpt registry list` start in well under a second.

Every error reaches the user as one `mpt: error: ...` line with the fix; a traceback only
with `--debug`.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .commands import core, domain, registry, review, run, schedule, serve, users

GROUPS = (core, domain, registry, run, schedule, users, review, serve)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser = argparse.ArgumentParser(prog="mpt", description="mpt-platform command line")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("mpt: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"mpt: error: {_message(exc)}", file=sys.stderr)
        return 2


def _message(exc: Exception) -> str:
    from cluster.ray import ClusterUnreachable
    from mpt_core.errors import MptError
    from registry.errors import RegistryError

    if isinstance(exc, MptError | RegistryError | ClusterUnreachable):
        return str(exc)
    text = " ".join(str(exc).split()) or "(no message)"
    return f"unexpected {type(exc).__name__}: {text[:500]} (run with --debug for the traceback)"
