"""Backbone families: one adapter module each, registered in `FAMILIES`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

from .._registry import Registry
from ..cache import file_stamp, read_json, update_json
from . import hf_clip, shipped
from .base import Backbone, BackboneIdentity, PromptSlots, TowerSlot, state_dict_sha256


def _no_files(name: str, **options: Any) -> list[Path] | None:
    return None


@dataclass(frozen=True)
class BackboneFamily:
    """load(name, **options) builds a frozen backbone; tiny(seed) a random one for tests;
    weight_files(name, **options) lists the files its weights come from (None: unknown),
    which keys the cached sha256 of those weights."""

    name: str
    load: Callable[..., Backbone]
    tiny: Callable[..., Backbone]
    default_name: str
    help: str
    weight_files: Callable[..., list[Path] | None] = _no_files


FAMILIES: Registry[BackboneFamily] = Registry("backbone family")
FAMILIES.register(
    "hf-clip",
    BackboneFamily(
        "hf-clip",
        hf_clip.load,
        hf_clip.tiny,
        "openai/clip-vit-base-patch32",
        "transformers CLIPModel by hub id (local cache) or local path",
        hf_clip.weight_files,
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
        shipped.weight_files,
    ),
)

_cache: dict[tuple, Backbone] = {}
_lock = Lock()


def load_backbone(family: str = "shipped", name: str | None = None, **options: Any) -> Backbone:
    """Load (once per process) a frozen backbone. `name="tiny"` gives the tiny random config.

    >>> backbone = load_backbone("shipped")            # offline default
    >>> clip = load_backbone("hf-clip", "/models/clip-vit-b32")
    """
    spec = FAMILIES.get(family)
    name = name or spec.default_name
    key = (family, name, tuple(sorted(options.items())))
    with _lock:
        if key not in _cache:
            backbone = spec.load(name, **options)
            _remember_sha256(family, name, options, backbone.identity.weights_sha256)
            _cache[key] = backbone
        return _cache[key]


SHA_CACHE = "backbone-sha256.json"


def _sha_key(family: str, name: str, options: dict[str, Any]) -> str | None:
    files = FAMILIES.get(family).weight_files(name, **options)
    if not files:
        return None
    try:
        stamp = file_stamp(files)
    except OSError:
        return None
    return json.dumps([family, name, sorted(options.items()), stamp], default=str)


def _remember_sha256(family: str, name: str, options: dict[str, Any], sha256: str) -> None:
    key = _sha_key(family, name, options)
    if key is not None and read_json(SHA_CACHE).get(key) != sha256:
        update_json(SHA_CACHE, key, sha256)  # first load, or stale entry (weights changed)


def backbone_sha256(family: str = "shipped", name: str | None = None, **options: Any) -> str:
    """The weights sha256 of a backbone, without loading it when its weight files are
    unchanged since it was last loaded (cached by their paths, sizes and mtimes; the
    value is checked again each time the backbone is really loaded)."""
    name = name or FAMILIES.get(family).default_name
    key = _sha_key(family, name, options)
    cached = read_json(SHA_CACHE).get(key) if key is not None else None
    if isinstance(cached, str):
        return cached
    return load_backbone(family, name, **options).identity.weights_sha256


def tiny_backbone(family: str, seed: int = 0) -> Backbone:
    """A fresh tiny random backbone of `family` (not cached), for tests."""
    return FAMILIES.get(family).tiny(seed)


__all__ = [
    "FAMILIES",
    "Backbone",
    "BackboneFamily",
    "BackboneIdentity",
    "PromptSlots",
    "TowerSlot",
    "backbone_sha256",
    "load_backbone",
    "state_dict_sha256",
    "tiny_backbone",
]
