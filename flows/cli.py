"""The `mpt` command line. `main(argv)` is callable from tests with a list of arguments.

Each command group lives in `flows/commands/<group>.py` and adds its sub-commands with
`register(subparsers, common)`; a command is a function taking the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mpt_core.errors import MptError
from registry.errors import RegistryError

from .commands import core, domain, registry, review, run, schedule, users

GROUPS = (core, domain, registry, run, schedule, users, review)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="mpt", description="mpt-platform command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (MptError, RegistryError) as exc:
        print(f"mpt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
