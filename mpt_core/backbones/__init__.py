"""Backbone families: one adapter module each, registered in `FAMILIES`.

A family's adapter module is imported on first use (transformers imports take seconds), so
looking up a family, or the cached sha256 of its weights, loads nothing.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from types import ModuleType
from typing import Any

from .._registry import Registry
from ..cache import file_stamp, read_json, update_json
from .base import Backbone, BackboneIdentity, PromptSlots, TowerSlot, state_dict_sha256
from .generative import GenerativeBackbone


@dataclass(frozen=True)
class BackboneFamily:
    """A family of backbones and the adapter module that builds them.

    The adapter has `load(name, **options)` (a frozen backbone), `tiny(seed)` (a random
    one for tests) and optionally `weight_files(name, **options)` (the files its weights
    come from, which key the cached sha256 of those weights; None: unknown).
    kind: the tasks it runs (`Task.backbone_kind`); presets: the preset names it supports
    (None: every registered preset). `mpt_core.support` answers from these.
    """

    name: str
    module: str
    default_name: str
    help: str
    kind: str = "dual-encoder"
    presets: tuple[str, ...] | None = None
    default_identity: str | None = None
    """The name the default backbone records in its identity, where it is not
    `default_name` (what `mpt backbones` shows, as `mpt backbone FAMILY` would)."""

    @property
    def default_label(self) -> str:
        """The default backbone's name as identities and lineage show it."""
        return self.default_identity or self.default_name

    @property
    def adapter(self) -> ModuleType:
        """The adapter module: `module` in this package (`hf_clip`), or any importable
        module by its full dotted path (a family that lives outside mpt_core)."""
        return importlib.import_module(
            self.module if "." in self.module else f"{__name__}.{self.module}"
        )

    def load(self, name: str, **options: Any) -> Backbone | GenerativeBackbone:
        return self.adapter.load(name, **options)

    def tiny(self, seed: int = 0) -> Backbone | GenerativeBackbone:
        return self.adapter.tiny(seed)

    def weight_files(self, name: str, **options: Any) -> list[Path] | None:
        files = getattr(self.adapter, "weight_files", None)
        return None if files is None else files(name, **options)


FAMILIES: Registry[BackboneFamily] = Registry("backbone family")
FAMILIES.register(
    "hf-clip",
    BackboneFamily(
        "hf-clip",
        "hf_clip",
        "openai/clip-vit-base-patch32",
        "transformers CLIPModel by hub id (local cache) or local path",
    ),
)
FAMILIES.register(
    "shipped",
    BackboneFamily(
        "shipped",
        "shipped",
        "default",
        "offline default: MiniLM-L6 text tower + EfficientNet-Lite0 image tower + frozen bridge",
        default_identity="minilm-l6-v2+efficientnet-lite0@160px/bridge-v1",
    ),
)
FAMILIES.register(
    "hf-blip2",
    BackboneFamily(
        "hf-blip2",
        "hf_blip2",
        "Salesforce/blip2-opt-2.7b",
        "transformers Blip2ForConditionalGeneration (captioning, open VQA) by cached hub id "
        "or local path",
        kind="generative",
        presets=("coop", "maple", "mpt", "vpt"),
    ),
)

log = logging.getLogger(__name__)
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
            backbone = spec.load(name, **options)
            _remember_identity(family, name, options, backbone.identity)
            _cache[key] = backbone
        return _cache[key]


def forget_loaded_backbones() -> None:
    """Drop the backbones this process has loaded (their memory goes once no model holds
    them): the next `load_backbone` reads the weights again, as a new process would."""
    with _lock:
        _cache.clear()


IDENTITY_CACHE = "backbone-identity.json"


def _cache_key(family: str, name: str, options: dict[str, Any]) -> str | None:
    files = FAMILIES.get(family).weight_files(name, **options)
    if not files:
        return None
    try:
        stamp = file_stamp(files)
    except OSError:
        return None
    return json.dumps([family, name, sorted(options.items()), stamp], default=str)


def _remember_identity(
    family: str, name: str, options: dict[str, Any], identity: BackboneIdentity
) -> None:
    key = _cache_key(family, name, options)
    if key is None or read_json(IDENTITY_CACHE).get(key) == identity.to_dict():
        return
    try:  # first load, or stale entry (weights changed)
        update_json(IDENTITY_CACHE, key, identity.to_dict())
    except OSError as exc:  # an unwritable cache costs a load in backbone_identity later
        log.debug("not remembering the identity of backbone %s/%s: %s", family, name, exc)


def backbone_identity(
    family: str = "shipped", name: str | None = None, **options: Any
) -> BackboneIdentity:
    """The identity (family, the name it records, weights sha256) of the backbone that
    `family`, `name` and `options` resolve to here: what an artifact tuned on it records.
    Not loaded when its weight files are unchanged since it was last loaded (cached by
    their paths, sizes and mtimes; checked again each time the backbone really loads);
    otherwise loaded and hashed, never assumed."""
    name = name or FAMILIES.get(family).default_name
    key = _cache_key(family, name, options)
    cached = read_json(IDENTITY_CACHE).get(key) if key is not None else None
    if isinstance(cached, dict):
        try:
            return BackboneIdentity(**cached)
        except TypeError:
            pass  # an entry of another shape: load, and the load rewrites it
    return load_backbone(family, name, **options).identity


def backbone_sha256(family: str = "shipped", name: str | None = None, **options: Any) -> str:
    """The weights sha256 of a backbone (`backbone_identity`'s, same cache)."""
    return backbone_identity(family, name, **options).weights_sha256


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
    "backbone_identity",
    "backbone_sha256",
    "forget_loaded_backbones",
    "load_backbone",
    "state_dict_sha256",
    "tiny_backbone",
]
