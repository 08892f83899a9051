"""Registries where candidates shadow production: for each domain, v1 (production) and v2
(the version of a pending promotion request), real tiny versions tuned from different
seeds, and the domain's monitoring settings; and what the server's shadow must have
counted for a given stream of items, computed with the library outside the server."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mpt_core import Example
from registry import MonitoringSettings, PromptRegistry

from . import factory
from .helpers import b64, local_model


@dataclass(frozen=True)
class Shadowed:
    """A domain, its production and candidate specs (a preset may differ), and how the
    candidate shadows it."""

    production: factory.Spec
    candidate_preset: str
    fraction: float
    keep_images: bool = False

    @property
    def domain(self) -> str:
        return self.production.domain


RETAIL = Shadowed(factory.Spec("retail", "classification", "mpt"), "mpt", 0.5, keep_images=True)
"""Same preset: the shadow scores from production's image stems."""
FACTORY = Shadowed(factory.Spec("manufacturing", "vqa", "coop"), "mpt", 1.0)
"""coop (a finished image embedding) shadowed by mpt (the stem): it encodes on its own."""
CAPTIONS = Shadowed(factory.Spec("captions", "captioning", "coop", "hf-blip2"), "coop", 1.0)
"""Generated text: exact match and a text similarity."""


def build(
    root: Path, domains: tuple[Shadowed, ...], url: str | None = None, *, monitored: bool = True
) -> PromptRegistry:
    """`monitored=False`: no monitoring settings stored (a domain.yaml will bring them)."""
    reg = factory.new_registry(root, url)
    for d in domains:
        spec = d.production
        factory.register(reg, d.domain, factory.tune(root / f"{d.domain}-1", spec, 0))
        factory.promote(reg, d.domain, 1)
        candidate = factory.Spec(spec.domain, spec.task, d.candidate_preset, spec.family)
        factory.register(reg, d.domain, factory.tune(root / f"{d.domain}-2", candidate, 1))
        reg.request_promotion(d.domain, 2, requested_by="ana", policy=factory.POLICY)
        if monitored:
            settings = MonitoringSettings(shadow_fraction=d.fraction, keep_images=d.keep_images)
            reg.set_monitoring(d.domain, settings, actor="ana")
    return reg


def stream(d: Shadowed, n: int, seed: int = 21) -> list[Example]:
    """`n` examples of the domain's task (images and the task's inputs)."""
    return factory.examples(d.production.task, n, seed)[:n]


def item(domain: str, example: Example) -> dict:
    out = {"domain": domain, "image": b64(example.image)}
    for field in ("question",):
        if example.get(field) is not None:
            out[field] = example.get(field)
    return out


def picked(fraction: float, n: int) -> list[int]:
    """Which of `n` items in a row the server picks: each time the running share of
    `fraction` per item reaches one."""
    due, out = 0.0, []
    for i in range(n):
        due += fraction
        if due >= 1.0 - 1e-9:
            due -= 1.0
            out.append(i)
    return out


@dataclass(frozen=True)
class Expected:
    requests: int
    agreed: int
    production: list[str | None]
    disagreeing: list[int]
    """Indexes (into the stream) of the picked items where the two versions disagree."""


def expected(reg: PromptRegistry, d: Shadowed, examples: list[Example]) -> Expected:
    prod = local_model(reg, d.domain, 1).predict(examples)
    cand = local_model(reg, d.domain, 2).predict(examples)
    chosen = picked(d.fraction, len(examples))
    agreed = sum(prod[i] == cand[i] for i in chosen)
    return Expected(len(chosen), agreed, prod, [i for i in chosen if prod[i] != cand[i]])


def sha256_of(item: dict) -> str:
    return hashlib.sha256(base64.b64decode(item["image"])).hexdigest()


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)
