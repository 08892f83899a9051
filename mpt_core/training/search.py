"""Per-domain hyper-parameter search: the plain parts (no Ray here).

A trial is a dict of knobs -> values. This module:

- applies one trial to a (preset, prompt overrides, TrainConfig) triple, validated
  (`apply_trial`; unknown knobs and bad values fail with the knob, the value and the fix);
- gives k-fold splits of train + val when the validation split is small (`kfold_splits`,
  deterministic by seed) and the selection rule: the mean validation metric over folds,
  ties to the earlier trial (`select_best`);
- holds the recommended default search of each task (`default_search`) and the validated
  `tuning.search` block of a domain.yaml (`SearchSpec`);
- runs one trial (`run_trial`) and a whole sequential random search (`search`). An
  orchestrator (Ray Tune in `flows`) runs `run_trial` per sampled trial in parallel and
  applies `select_best` to the results; the bench runs `search` sequentially.

Selection is on validation only: the test split never enters this module.

The `tuning.search` block (domain.yaml), as `SearchSpec.from_dict` reads it:

    tuning:
      search:
        trials: 8          # trial budget, 1..256 (0 or a missing block: no search)
        folds: auto        # auto: 3-fold over train+val when val has < 100 examples,
                           # else the val split; or an int: 1 = the val split, >= 2 = k folds
        seed: 0            # sampling and fold assignment
        early_stopping: true  # stop trials clearly behind (Ray Tune's ASHA; false: all run)
        space:             # knob: {choice: [...]} | {loguniform: [lo, hi]}
                           #       | {uniform: [lo, hi]} | {int: [lo, hi]}
          lr: {loguniform: [1.0e-3, 1.0e-2]}
          epochs: {choice: [15, 30]}
          text_tokens: {choice: [0, 4]}
          fusion: {choice: [true, false]}
          image_residual: {choice: [0.5, 1.0, 2.0]}

Missing `space` means the task's default space (`Task.default_search`). The knobs are in `KNOBS`.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from ..data import Example
from ..errors import ConfigError
from ..prompts import PromptConfig, preset_config
from .config import TrainConfig
from .folds import DEFAULT_FOLDS, kfold_splits

if TYPE_CHECKING:
    from ..backbones.base import Backbone, PromptSlots
    from ..featurestore import FeatureStore
    from ..tasks.base import Task

SMALL_VALIDATION = 100
"""Below this many validation examples one example moves a metric by more than 1 point:
selection then averages over k folds of train + val."""


# --- knobs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knob:
    """One searchable setting: where it goes and which values it takes."""

    kind: type
    help: str
    low: float | None = None
    high: float | None = None


_TRAIN_KNOBS = {
    "lr": Knob(float, "peak AdamW learning rate", 1e-6, 1.0),
    "epochs": Knob(int, "epoch budget (early stopping on validation still applies)", 1, 1000),
    "batch_size": Knob(int, "examples per step", 1, 4096),
    "weight_decay": Knob(float, "AdamW weight decay", 0.0, 1.0),
    "warmup_ratio": Knob(float, "share of steps spent warming up", 0.0, 0.99),
    "patience": Knob(int, "epochs without improvement before stopping; 0 = never", 0, 1000),
}
_ALIAS_KNOBS = {
    "depth": Knob(int, "prompt depth of every tower that has prompts (capped at its slots)", 1),
    "tokens": Knob(int, "tokens of every prompt kind present (text, visual, image-conditioned)", 1),
    "residual_ratio": Knob(float, "alias of image_residual", 0.0, 100.0),
}
_PROMPT_KNOBS = {
    f.name: Knob(
        {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)],
        f"PromptConfig.{f.name}",
        *((0, None) if str(f.type) in ("int", "float") else (None, None)),
    )
    for f in fields(PromptConfig)
}
KNOBS: dict[str, Knob] = {**_TRAIN_KNOBS, **_ALIAS_KNOBS, **_PROMPT_KNOBS}
"""Every knob a trial may set: TrainConfig fields, PromptConfig fields, and aliases."""


def _check_value(name: str, value: Any) -> Any:
    knob = KNOBS[name]
    if knob.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"search knob {name}={value!r}: must be true or false")
        return value
    if knob.kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"search knob {name}={value!r}: must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"search knob {name}={value!r}: must be a number")
    if knob.kind is int:
        if float(value) != int(value):
            raise ConfigError(f"search knob {name}={value!r}: must be a whole number")
        value = int(value)
    else:
        value = float(value)
    if (knob.low is not None and value < knob.low) or (knob.high is not None and value > knob.high):
        bounds = f"{knob.low}..{knob.high if knob.high is not None else 'inf'}"
        raise ConfigError(f"search knob {name}={value!r}: allowed range {bounds} ({knob.help})")
    return value


def _unknown(name: str) -> ConfigError:
    return ConfigError(
        f"unknown search knob {name!r}; known: {', '.join(sorted(KNOBS))}. HINT: a "
        "PromptConfig field, a TrainConfig field (lr, epochs, ...), or depth / tokens / "
        "residual_ratio"
    )


def apply_trial(
    preset: str,
    overrides: Mapping[str, Any],
    train_config: TrainConfig,
    params: Mapping[str, Any],
    slots: PromptSlots,
) -> tuple[str, dict[str, Any], TrainConfig]:
    """One trial's `params` applied to (preset, prompt overrides, train config).

    Returns the new triple; the prompt config it gives is validated against `slots` (the
    backbone's), so a trial that cannot be built fails here, naming the field.

    >>> apply_trial("mpt", {}, TrainConfig(), {"lr": 5e-3, "depth": 1}, backbone.slots)
    ('mpt', {'text_depth': 1, 'vision_depth': 1}, TrainConfig(lr=0.005, ...))
    """
    for name in params:
        if name not in KNOBS:
            raise _unknown(name)
    values = {name: _check_value(name, value) for name, value in params.items()}
    train_updates = {k: v for k, v in values.items() if k in _TRAIN_KNOBS}
    prompt = dict(overrides)
    base = preset_config(preset, slots, **prompt)
    for name, value in values.items():
        if name == "depth":
            for tower, tokens in (("text", base.text_tokens), ("vision", base.vision_tokens)):
                if tokens:
                    prompt[f"{tower}_depth"] = min(value, getattr(slots, tower).depth)
        elif name == "tokens":
            for key in ("text_tokens", "vision_tokens", "image_tokens"):
                if getattr(base, key):
                    prompt[key] = value
        elif name == "residual_ratio":
            prompt["image_residual"] = value
        elif name in _PROMPT_KNOBS:
            prompt[name] = value
    try:
        preset_config(preset, slots, **prompt)
    except ConfigError as exc:
        raise ConfigError(f"trial {dict(params)} gives an invalid prompt config: {exc}") from None
    try:
        config = replace(train_config, **train_updates)
    except ConfigError as exc:
        raise ConfigError(f"trial {dict(params)} gives an invalid train config: {exc}") from None
    return preset, prompt, config


# --- search spaces ------------------------------------------------------------------------
_DISTRIBUTIONS = ("choice", "loguniform", "uniform", "int")


def _check_space(space: Mapping[str, Any]) -> dict[str, dict[str, list[Any]]]:
    out = {}
    for name, dist in space.items():
        if name not in KNOBS:
            raise _unknown(name)
        if (
            not isinstance(dist, Mapping)
            or len(dist) != 1
            or next(iter(dist)) not in _DISTRIBUTIONS
        ):
            raise ConfigError(
                f"search space {name}: {dist!r} is not a distribution; use one of "
                "{choice: [a, b, ...]}, {loguniform: [lo, hi]}, {uniform: [lo, hi]}, "
                "{int: [lo, hi]}"
            )
        kind, args = next(iter(dist.items()))
        args = list(args) if isinstance(args, list | tuple) else [args]
        if kind == "choice":
            if not args:
                raise ConfigError(f"search space {name}: choice needs at least one value")
            args = [_check_value(name, a) for a in args]
        else:
            if len(args) != 2:
                raise ConfigError(f"search space {name}: {kind} needs [low, high], got {args}")
            low, high = (_check_value(name, a) for a in args)
            if low > high or (kind == "loguniform" and low <= 0):
                raise ConfigError(
                    f"search space {name}: {kind} [{low}, {high}] needs 0 < low <= high"
                    if kind == "loguniform"
                    else f"search space {name}: {kind} [{low}, {high}] needs low <= high"
                )
            args = [low, high]
        out[name] = {kind: args}
    return out


def sample(space: Mapping[str, Mapping[str, list[Any]]], rng: random.Random) -> dict[str, Any]:
    """One trial's params drawn from a validated space."""
    params = {}
    for name, dist in space.items():
        kind, args = next(iter(dist.items()))
        if kind == "choice":
            params[name] = rng.choice(args)
        elif kind == "loguniform":
            params[name] = math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))
        elif kind == "uniform":
            params[name] = rng.uniform(args[0], args[1])
        else:
            params[name] = rng.randint(int(args[0]), int(args[1]))
    return params


def default_search(task: str) -> dict[str, Any]:
    """The recommended search of a task ({"trials", "space"}): its class's `default_search`
    (tasks carry it, so a new task brings its own knobs). Small enough for `make demo` on
    two cores; trials run on the shared backbone's cached stems, so one costs one `fit`."""
    from ..tasks import TASKS

    return TASKS.get(task).default_search


@dataclass(frozen=True)
class SearchSpec:
    """The `tuning.search` block of a domain.yaml, validated (see the module docstring)."""

    trials: int = 0
    folds: int | str = "auto"
    seed: int = 0
    space: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    early_stopping: bool = True
    """An orchestrator may stop trials that are clearly behind (Ray Tune's ASHA in
    `flows`); the sequential `search` here runs every trial to its end."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, task: str) -> SearchSpec:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"tuning.search: unknown fields {unknown}; known: {sorted(known)}")
        default = default_search(task)
        trials = data.get("trials", default["trials"])
        if isinstance(trials, bool) or not isinstance(trials, int) or not 0 <= trials <= 256:
            raise ConfigError(f"tuning.search.trials={trials!r}: a whole number in 0..256")
        folds = data.get("folds", "auto")
        if folds != "auto" and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 1):
            raise ConfigError(
                f"tuning.search.folds={folds!r}: 'auto', 1 (the val split) or k >= 2 folds"
            )
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"tuning.search.seed={seed!r}: a whole number")
        space = _check_space(data.get("space") or default["space"])
        early = data.get("early_stopping", True)
        if not isinstance(early, bool):
            raise ConfigError(f"tuning.search.early_stopping={early!r}: true or false")
        return cls(trials, folds, seed, space, early)

    def fold_count(self, n_val: int) -> int:
        """How many folds selection uses for a validation split of `n_val` examples."""
        if self.folds == "auto":
            return DEFAULT_FOLDS if n_val < SMALL_VALIDATION else 1
        return int(self.folds)

    def trial_params(self) -> list[dict[str, Any]]:
        """The `trials` trial params, drawn deterministically from `space` by `seed`.
        The first trial is always the untouched base config ({}), so a search never
        selects something worse on validation than not searching."""
        rng = random.Random(self.seed)
        return [{}] + [sample(self.space, rng) for _ in range(max(self.trials - 1, 0))]


# --- folds and selection ------------------------------------------------------------------
@dataclass
class TrialResult:
    """One trial: its params, the validation metric per fold, and their mean. A trial an
    early-stopping scheduler stopped has the running value it was stopped at, as its only
    fold value, and `stopped` set: it is never selected."""

    params: dict[str, Any]
    fold_values: list[float]
    stopped: bool = False

    @property
    def value(self) -> float:
        return statistics.mean(self.fold_values)

    def to_dict(self) -> dict[str, Any]:
        out = {"params": self.params, "fold_values": self.fold_values, "value": self.value}
        return out | ({"stopped": True} if self.stopped else {})


def select_best(results: Sequence[TrialResult]) -> TrialResult:
    """The selection rule: highest mean validation metric over folds among the trials that
    ran to their end; ties go to the earlier trial (the base config is trial 0)."""
    finished = [(i, r) for i, r in enumerate(results) if not r.stopped]
    if not finished:
        raise ConfigError("no finished trial to select from")
    return max(finished, key=lambda item: (item[1].value, -item[0]))[1]


# --- running ------------------------------------------------------------------------------
def run_trial(
    backbone: Backbone,
    task: Task,
    preset: str,
    overrides: Mapping[str, Any],
    train_config: TrainConfig,
    params: Mapping[str, Any],
    folds: Sequence[tuple[Sequence[Example], Sequence[Example]]],
    prepare: Callable[[Any, Sequence[Example]], Any] | None = None,
    *,
    store: FeatureStore | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    on_fitted: Callable[[int, Any, Any], None] | None = None,
) -> TrialResult:
    """Fit one trial on each (train, val) fold; its validation metric per fold.

    The frozen part of the images comes from `store` (a `FeatureStore`: whatever output
    the trial's model starts from, computed once for every trial), or from
    `prepare(model, examples)`: cached `model.prepare_images` outputs taken to be prepared
    under the untried config (`preset`, `overrides`), so they serve only trials whose model
    has the same `vision_frozen` (a trial setting the visual tokens to 0 needs embeddings,
    not stems); any other trial prepares its own images, once for all its folds.
    `on_epoch(fold, row)` sees every epoch of every fold (an early-stopping scheduler);
    `on_fitted(fold, model, train_result)` each fitted model (to keep what was learned).
    """
    from ..kinds import build_prompts
    from .trainer import fit

    if prepare is None and store is not None:

        def prepare(model: Any, subset: Sequence[Example]) -> Any:
            return model.prepare_images([e.image for e in subset], store=store)

    elif prepare is not None:
        prepared_frozen = build_prompts(backbone, preset, task, **overrides).vision_frozen
    preset, prompt, config = apply_trial(preset, overrides, train_config, params, backbone.slots)
    if config.final == "refit":  # a refit trains on its val fold: nothing left to score
        config = replace(config, final="best")
    values = []
    for fold, (fold_train, fold_val) in enumerate(folds):
        model = build_prompts(backbone, preset, task, seed=config.seed, **prompt)
        if store is None and prepare is not None and model.vision_frozen != prepared_frozen:
            prepare, prepared_frozen = _prepared_once(model, folds), model.vision_frozen
        cached = None if prepare is None else (prepare(model, fold_train), prepare(model, fold_val))
        report = None if on_epoch is None else (lambda row, f=fold: on_epoch(f, row))
        result = fit(model, fold_train, fold_val, config, on_epoch=report, prepared=cached)
        values.append(float(result.best_value if result.best_value is not None else 0.0))
        if on_fitted is not None:
            on_fitted(fold, model, result)
    return TrialResult(dict(params), values)


def _prepared_once(
    model: Any, folds: Sequence[tuple[Sequence[Example], Sequence[Example]]]
) -> Callable[[Any, Sequence[Example]], Any]:
    """A `prepare` over `model.prepare_images` of every example of `folds`, computed once
    (what it prepares depends only on the backbone and the model's `vision_frozen`)."""
    examples = {id(e): e for pair in folds for split in pair for e in split}
    row = {key: i for i, key in enumerate(examples)}
    prepared = model.prepare_images([e.image for e in examples.values()])
    return lambda _model, subset: prepared[[row[id(e)] for e in subset]]


def search(
    backbone: Backbone,
    task: Task,
    preset: str,
    overrides: Mapping[str, Any],
    train_config: TrainConfig,
    spec: SearchSpec,
    train: Sequence[Example],
    val: Sequence[Example],
    prepare: Callable[[Any, Sequence[Example]], Any] | None = None,
    *,
    store: FeatureStore | None = None,
) -> tuple[TrialResult, list[TrialResult]]:
    """Sequential random search: every trial of `spec` on the same folds (the val split,
    or k folds of train + val when it is small); returns (best, all) by `select_best`."""
    k = spec.fold_count(len(val))
    folds = (
        [(list(train), list(val))]
        if k == 1
        else kfold_splits(train, val, k, spec.seed, contract=task.contract)
    )
    results = [
        run_trial(
            backbone, task, preset, overrides, train_config, params, folds, prepare, store=store
        )
        for params in spec.trial_params()
    ]
    return select_best(results), results
