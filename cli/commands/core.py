"""`mpt version | backbones | backbone | presets`: the library's registries from the CLI."""

from __future__ import annotations

import argparse

from mpt_core import __version__

from .output import emit


def _backbone(spec: str):
    from mpt_core import load_backbone

    family, _, name = spec.partition(":")
    return load_backbone(family, name or None)


def cmd_version(args: argparse.Namespace) -> None:
    print(f"mpt-platform {__version__}")


def cmd_backbones(args: argparse.Namespace) -> None:
    from mpt_core import FAMILIES

    rows = [
        {
            "family": name,
            "default": FAMILIES.get(name).default_label,
            "about": FAMILIES.get(name).help,
        }
        for name in FAMILIES
    ]
    emit(args, rows)


def cmd_backbone_show(args: argparse.Namespace) -> None:
    backbone = _backbone(args.backbone)
    slots = backbone.slots
    emit(
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
    from mpt_core import PRESETS
    from mpt_core.kinds import trainable_parameters
    from mpt_core.prompts.presets import describe, preset_config
    from mpt_core.support import family_presets

    backbone = _backbone(args.backbone)
    total = backbone.num_parameters()
    rows = []
    for name in family_presets(backbone.family):
        trainable = trainable_parameters(backbone, name)
        rows.append(
            {
                "preset": name,
                "trainable": trainable,
                "fraction": f"{trainable / total:.4%}",
                "about": f"{PRESETS.get(name).help}: "
                + describe(preset_config(name, backbone.slots), backbone.slots),
            }
        )
    emit(args, rows)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for name, func, help_text in (
        ("version", cmd_version, "print the platform version"),
        ("backbones", cmd_backbones, "list backbone families"),
        ("backbone", cmd_backbone_show, "show a backbone: identity, prompt slots, size"),
        ("presets", cmd_presets, "list prompt presets with trainable parameters on a backbone"),
    ):
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.set_defaults(func=func)
        if name in ("backbone", "presets"):
            p.add_argument(
                "backbone",
                nargs="?",
                default="shipped",
                help="FAMILY[:NAME]: shipped (default), shipped:tiny, hf-clip:/models/clip",
            )
