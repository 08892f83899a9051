"""Backbone families: one adapter module each, registered in `FAMILIES`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock
from typing import Any

from .._registry import Registry
from . import hf_blip2, hf_clip, shipped
from .base import Backbone, BackboneIdentity, PromptSlots, TowerSlot, state_dict_sha256
from .generative import GenerativeBackbone


@dataclass(frozen=True)
class BackboneFamily:
    """load(name, **options) builds a frozen backbone; tiny(seed) a random one for tests.

    kind: the tasks it runs (`Task.backbone_kind`); presets: the preset names it supports
    (None: every registered preset). `mpt_core.support` answers from these.
    """

    name: str
    load: Callable[..., Backbone | GenerativeBackbone]
    tiny: Callable[..., Backbone | GenerativeBackbone]
    default_name: str
    help: str
    kind: str = "dual-encoder"
    presets: tuple[str, ...] | None = None


FAMILIES: Registry[BackboneFamily] = Registry("backbone family")
FAMILIES.register(
    "hf-clip",
    BackboneFamily(
        "hf-clip",
        hf_clip.load,
        hf_clip.tiny,
        "openai/clip-vit-base-patch32",
        "transformers CLIPModel by hub id (local cache) or local path",
    ),
)
FAMILIES.register(
    "shipped",
    BackboneFamily(
        "shipped",
        shipped.load,
        shipped.tiny,
        "default",
        "offline default: MiniLM-L6 text tower + EfficientNet-Lite0 image tower + frozen bridge",
    ),
)

FAMILIES.register(
    "hf-blip2",
    BackboneFamily(
        "hf-blip2",
        hf_blip2.load,
        hf_blip2.tiny,
        "Salesforce/blip2-opt-2.7b",
        "transformers Blip2ForConditionalGeneration (captioning, open VQA) by cached hub id "
        "or local path",
        kind="generative",
        presets=("coop", "maple", "mpt", "vpt"),
    ),
)

_cache: dict[tuple, Backbone | GenerativeBackbone] = {}
_lock = Lock()


def load_backbone(
    family: str = "shipped", name: str | None = None, **options: Any
) -> Backbone | GenerativeBackbone:
    """Load (once per process) a frozen backbone. `name="tiny"` gives the tiny random config.

    >>> backbone = load_backbone("shipped")            # offline default
    >>> clip = load_backbone("hf-clip", "/models/clip-vit-b32")
    >>> blip2 = load_backbone("hf-blip2", "/models/blip2-opt-2.7b", dtype="bfloat16")
    """
    spec = FAMILIES.get(family)
    name = name or spec.default_name
    key = (family, name, tuple(sorted(options.items())))
    with _lock:
        if key not in _cache:
            _cache[key] = spec.load(name, **options)
        return _cache[key]


def tiny_backbone(family: str, seed: int = 0) -> Backbone | GenerativeBackbone:
    """A fresh tiny random backbone of `family` (not cached), for tests."""
    return FAMILIES.get(family).tiny(seed)


__all__ = [
    "FAMILIES",
    "Backbone",
    "BackboneFamily",
    "BackboneIdentity",
    "GenerativeBackbone",
    "PromptSlots",
    "TowerSlot",
    "load_backbone",
    "state_dict_sha256",
    "tiny_backbone",
]
