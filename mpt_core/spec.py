"""`TuneSpec`: one tuning job, typed and versioned (peft's `PeftConfig`, for a whole job).

A spec says everything that decides a tuning result besides the data and the backbone's
weights: the task and its declaration, the prompt preset and its overrides, the trainer's
settings, the search to run first, the metric the version is judged by, and the backbone
by name. It is built once where a domain is read (`flows`: `DomainConfig.tune_spec()`),
travels as is to the workers (no YAML schema there), comes back from a search as a
modified copy (`with_trial`), keys the no-change skip (`key`), and is written with the
artifact and the registry row (`to_dict`). `from_dict` reads it back, validated.

    spec = TuneSpec("classification", {"class_names": ["cat", "dog"]}, preset="mpt")
    model = spec.build(backbone)
    fit(model, train, val, spec.train)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .kinds import build_prompts
from .prompts import PRESETS, PromptConfig
from .tasks import TASKS
from .training.config import TrainConfig
from .training.search import SearchSpec, apply_trial

if TYPE_CHECKING:
    from .backbones.base import PromptSlots
    from .holder import PromptsHolder
    from .tasks.base import Task

SPEC_VERSION = 1
"""Bumped when the meaning of a field changes; `from_dict` refuses other versions."""
_PROMPT_FIELDS = frozenset(f.name for f in fields(PromptConfig))


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone by family, checkpoint name (None: the family's default) and load options;
    which weights it resolves to is checked where it loads (their sha256)."""

    family: str = "shipped"
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TuneSpec:
    """What to tune and how (see the module docstring). Validated on creation."""

    task: str
    """A registered task (`TASKS`)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """The task's own settings, as `Task.to_dict()` gives them (class names, answers...)."""
    preset: str = "mpt"
    overrides: dict[str, Any] = field(default_factory=dict)
    """PromptConfig fields changed from the preset."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(progress=False))
    search: SearchSpec | None = None
    """The hyper-parameter search to run before tuning; None: tune `train` as it is."""
    primary_metric: str | None = None
    """The metric a version is judged by (policy, registry, review); None: the task's."""
    backbone: BackboneChoice = field(default_factory=BackboneChoice)
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        if self.version != SPEC_VERSION:
            raise ConfigError(
                f"tuning spec version {self.version!r}; this library reads version "
                f"{SPEC_VERSION}. HINT: tune with this version of the platform"
            )
        contract = TASKS.get(self.task).contract
        PRESETS.get(self.preset)
        unknown = sorted(set(self.overrides) - _PROMPT_FIELDS)
        if unknown:
            raise ConfigError(
                f"unknown prompt config field(s) {unknown}; known: {sorted(_PROMPT_FIELDS)}"
            )
        if self.search is not None and self.search.trials < 1:
            object.__setattr__(self, "search", None)  # frozen: normalised once, here
        if self.primary_metric is None:
            object.__setattr__(self, "primary_metric", contract.primary_metric)
        if self.primary_metric not in contract.metrics:
            raise ConfigError(
                f"primary metric {self.primary_metric!r} is not reported by task "
                f"{self.task!r}; allowed: {', '.join(contract.metrics)}"
            )
        self.build_task()  # the task's options are checked by the task itself

    # --- what it builds ---------------------------------------------------------------
    def build_task(self) -> Task:
        try:
            return TASKS.get(self.task).from_dict(dict(self.task_options))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"task {self.task!r}: options {self.task_options!r}: {exc}") from None

    def build(self, backbone: Any) -> PromptsHolder:
        """Fresh prompts of this spec on `backbone`, seeded by the trainer's seed."""
        return build_prompts(
            backbone, self.preset, self.build_task(), seed=self.train.seed, **self.overrides
        )

    def with_trial(self, params: Mapping[str, Any], slots: PromptSlots) -> TuneSpec:
        """This spec with one search trial's knobs applied (validated against `slots`,
        the backbone's) and no search left to run: what the chosen trial tunes."""
        preset, overrides, train = apply_trial(
            self.preset, self.overrides, self.train, params, slots
        )
        return replace(self, preset=preset, overrides=overrides, train=train, search=None)

    # --- as data ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able; `TuneSpec.from_dict` reads it back."""
        return {
            "spec_version": self.version,
            "task": {"name": self.task, **self.task_options},
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "train": self.train.to_dict(),
            "search": None if self.search is None else asdict(self.search),
            "primary_metric": self.primary_metric,
            "backbone": asdict(self.backbone),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuneSpec:
        known = {"spec_version", "task", "preset", "overrides", "train", "search"}
        known |= {"primary_metric", "backbone"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"tuning spec: unknown field(s) {unknown}; known: {sorted(known)}")
        task = dict(data.get("task") or {})
        name = task.pop("name", None)
        if not name:
            raise ConfigError("tuning spec: 'task' needs a 'name'")
        try:
            train = TrainConfig(**(data.get("train") or {}))
            backbone = BackboneChoice(**(data.get("backbone") or {}))
        except TypeError as exc:
            raise ConfigError(f"tuning spec: {exc}") from None
        search = data.get("search")
        return cls(
            task=name,
            task_options=task,
            preset=data.get("preset", "mpt"),
            overrides=dict(data.get("overrides") or {}),
            train=train,
            search=None if search is None else SearchSpec.from_dict(search, name),
            primary_metric=data.get("primary_metric"),
            backbone=backbone,
            version=data.get("spec_version", SPEC_VERSION),
        )

    def key(self) -> str:
        """sha256 of the canonical JSON: equal specs, equal keys (the no-change skip)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()
