"""Registries with real (tiny) prompt versions for the serving tests, built with the
registry API: artifacts tuned for one epoch on tiny backbones, registered with lineage,
promoted through requests that a second user approves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mpt_core import Example, TrainConfig, build_prompts, fit, load_backbone, save_prompts
from mpt_core.backbones.base import Backbone
from registry import Policy, PromptRegistry, upgrade
from registry.store import LocalStore

from ..mpt_core.synthetic import examples, make_task

POLICY = Policy("accuracy", min_improvement=-1.0, max_class_regression=1.0)
DATA_VERSION = "d" * 32


@dataclass(frozen=True)
class Spec:
    domain: str
    task: str
    preset: str
    family: str = "shipped"


# Three tasks on one backbone, and a domain on a second backbone family.
DOMAINS = (
    Spec("retail", "classification", "mpt"),
    Spec("manufacturing", "vqa", "coop"),
    Spec("medical", "retrieval", "maple"),
    Spec("clip-shop", "classification", "vpt", "hf-clip"),
)


def tiny(family: str) -> Backbone:
    """The tiny backbone a served version's lineage names: load_backbone(family, "tiny")."""
    return load_backbone(family, "tiny")


def new_registry(root: Path, url: str | None = None) -> PromptRegistry:
    """A migrated registry: a SQLite file in `root`, or the database at `url`; its
    artifacts in `root`."""
    url = url or f"sqlite:///{root / 'registry.db'}"
    upgrade(url)
    return PromptRegistry(url, LocalStore(root / "artifacts"))


def tune(out: Path, spec: Spec, seed: int, backbone: Backbone | None = None) -> Path:
    """A prompt artifact for `spec`, tuned one epoch from initial prompts of `seed`."""
    backbone = backbone or tiny(spec.family)
    model = build_prompts(backbone, spec.preset, make_task(spec.task), seed=seed)
    fit(model, examples(spec.task, 2, seed), config=TrainConfig(epochs=1, progress=False))
    return save_prompts(model, out)


def register(reg: PromptRegistry, domain: str, artifact: Path, accuracy: float = 0.5) -> int:
    config = json.loads((artifact / "prompt_config.json").read_text())
    reg.record_data_version(
        domain, DATA_VERSION, rows=12, row_counts={"test": 12}, validation_passed=True
    )
    version = reg.register_version(
        domain,
        artifact,
        method=config["method"],
        config=config["prompt_config"],
        data_version=DATA_VERSION,
        backbone=config["backbone"],
        metrics={"test": {"accuracy": accuracy, "r1_mean": accuracy}},
        created_by="trainer",
    )
    return version.number


def promote(reg: PromptRegistry, domain: str, number: int) -> None:
    request = reg.request_promotion(domain, number, requested_by="ana", policy=POLICY)
    reg.approve(request.id, reviewer="ben", comment="test promotion")


def build(root: Path, specs=DOMAINS, seeds=(0,), url: str | None = None) -> PromptRegistry:
    """Every spec with one version per seed; the first version is production."""
    reg = new_registry(root, url)
    for spec in specs:
        for seed in seeds:
            number = register(reg, spec.domain, tune(root / f"{spec.domain}-{seed}", spec, seed))
            if number == 1:
                promote(reg, spec.domain, 1)
    return reg


def sample(task: str, n: int = 3, seed: int = 11) -> list[Example]:
    """Images (and the task's inputs) to predict for."""
    return examples(task, 1, seed)[:n]
