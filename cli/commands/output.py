"""Tables for people, JSON for scripts."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mpt_core.errors import MptError


class CommandError(MptError):
    """Bad command-line input; the message names the option, the value and the fix."""


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols), "  ".join("-" * width[c] for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def emit(args: argparse.Namespace, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(table(rows if isinstance(rows, list) else [rows]))
