"""The `mpt` command line. `main(argv)` is callable from tests with a list of arguments."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mpt_core import FAMILIES, PRESETS, __version__, load_backbone
from mpt_core.errors import MptError
from mpt_core.prompts import MultimodalPrompts, preset_config


def _backbone(spec: str):
    family, _, name = spec.partition(":")
    return load_backbone(family, name or None)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols), "  ".join("-" * width[c] for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows if isinstance(rows, list) else [rows]))


def cmd_version(args: argparse.Namespace) -> None:
    print(f"mpt-platform {__version__}")


def cmd_backbones(args: argparse.Namespace) -> None:
    rows = [
        {
            "family": name,
            "default": FAMILIES.get(name).default_name,
            "about": FAMILIES.get(name).help,
        }
        for name in FAMILIES
    ]
    _emit(args, rows)


def cmd_backbone_show(args: argparse.Namespace) -> None:
    backbone = _backbone(args.backbone)
    slots = backbone.slots
    _emit(
        args,
        {
            "family": backbone.identity.family,
            "name": backbone.identity.name,
            "weights_sha256": backbone.identity.weights_sha256,
            "parameters": backbone.num_parameters(),
            "embed_dim": backbone.embed_dim,
            "vision_slot": _slot(slots.vision),
            "text_slot": _slot(slots.text),
        },
    )


def _slot(slot) -> str:
    return f"{slot.kind} depth={slot.depth} width={slot.width}"


def cmd_presets(args: argparse.Namespace) -> None:
    backbone = _backbone(args.backbone)
    total = backbone.num_parameters()
    rows = []
    for name in PRESETS:
        config = preset_config(name, backbone.slots)
        trainable = MultimodalPrompts(config, backbone.slots).num_trainable()
        rows.append(
            {
                "preset": name,
                "trainable": trainable,
                "fraction": f"{trainable / total:.4%}",
                "about": PRESETS.get(name).help,
            }
        )
    _emit(args, rows)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="mpt", description="mpt-platform command line")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
        "version": (cmd_version, "print the platform version"),
        "backbones": (cmd_backbones, "list backbone families"),
        "backbone": (cmd_backbone_show, "show a backbone: identity, prompt slots, size"),
        "presets": (cmd_presets, "list prompt presets with trainable parameters on a backbone"),
    }
    for name, (func, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.set_defaults(func=func)
        if name in ("backbone", "presets"):
            p.add_argument(
                "backbone",
                nargs="?",
                default="shipped",
                help="FAMILY[:NAME]: shipped (default), shipped:tiny, hf-clip:/models/clip",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MptError as exc:
        print(f"mpt: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
