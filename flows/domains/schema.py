"""`domains/<name>/domain.yaml`: the pydantic schema and its loader.

Errors name the file, the field path, what was given and what is allowed. Defaults keep a
new domain's file short: task, labels (or answers) and little else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mpt_core import FAMILIES, PRESETS, TASKS
from mpt_core.data import FIELDS, known_field
from mpt_core.errors import ConfigError
from mpt_core.spec import BackboneChoice, TuneSpec
from mpt_core.support import check_supported
from mpt_core.tasks import Task, TaskContract, task_from_declaration
from mpt_core.training import TrainConfig
from mpt_core.training.config import Final
from mpt_core.training.search import SearchSpec
from registry.constants import PRODUCTION
from registry.policy import Policy, ShadowRule
from registry.records import WINDOW_RANGE, MonitoringSettings

from ..yaml_files import safe_load, yaml_problem

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_NEAR_DUPLICATE_DISTANCE = 12
"""Beyond 12 of 64 bits, unrelated images match (and the search's buckets grow large)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataLayout(_Strict):
    """Where the metadata table is and which columns hold what (paths relative to data/).

    The image and split columns are the platform's; every other column holds an example
    field its task declares (`mpt_core` task contracts), named by the field itself unless
    `columns` (or `<field>_column: name`) says otherwise."""

    metadata: str = "metadata.csv"
    image_column: str = "image"
    split_column: str = "split"
    group_column: str | None = None
    """A column whose value groups rows that must share one split (a patient, a source
    image, a production batch): validation fails a group found in two splits, and
    `mpt domain import --group-by` keeps each group whole. None: no groups."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Column of an example field whose column has another name: {field: column}."""

    @model_validator(mode="before")
    @classmethod
    def _field_columns(cls, data: Any) -> Any:
        """`label_column: kind` is `columns: {label: kind}`, for any declared field."""
        if not isinstance(data, dict):
            return data
        data, columns = dict(data), dict(data.get("columns") or {})
        for key in [k for k in data if k.endswith("_column")]:
            field = key.removesuffix("_column")
            if field in ("image", "split", "group") or not known_field(field):
                continue  # the platform's own columns; an unknown key is reported as such
            if field in columns and columns[field] != data[key]:
                raise ValueError(f"{key} and columns.{field} name different columns")
            columns[field] = data.pop(key)
        return {**data, "columns": columns} if columns else data

    @field_validator("columns")
    @classmethod
    def _declared_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(f for f in v if not known_field(f))
        if unknown:
            raise ValueError(
                f"{unknown} are not example fields of any task; fields: {', '.join(FIELDS)}"
            )
        return v

    def column(self, field: str) -> str:
        """The table column holding `field` (`image`, `split` or an example field)."""
        if field in ("image", "split"):
            return getattr(self, f"{field}_column")
        return self.columns.get(field, field)

    @field_validator("metadata")
    @classmethod
    def _relative(cls, v: str) -> str:
        if Path(v).is_absolute() or ".." in Path(v).parts:
            raise ValueError(f"must be a path inside the domain's data/ folder, got {v!r}")
        return v


class BackboneSpec(_Strict):
    family: str = "shipped"
    name: str | None = None
    """Checkpoint name or path; None = the family's default."""
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        if v not in FAMILIES:
            raise ValueError(
                f"unknown backbone family {v!r}; allowed: {', '.join(FAMILIES.names())}"
            )
        return v


class PromptSpec(_Strict):
    preset: str = "mpt"
    overrides: dict[str, Any] = Field(default_factory=dict)
    """PromptConfig fields to change, e.g. {text_tokens: 8, fusion_width: 128}."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; allowed: {', '.join(PRESETS.names())}")
        return v

    @field_validator("overrides")
    @classmethod
    def _known_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import fields

        from mpt_core.prompts import PromptConfig

        known = sorted(f.name for f in fields(PromptConfig))
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown prompt config field(s) {unknown}; allowed: {known}")
        return v


class TuningSpec(_Strict):
    epochs: Annotated[int, Field(ge=1, le=1000)] = 15
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16
    lr: Annotated[float, Field(gt=0, le=1)] = 2e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    patience: Annotated[int, Field(ge=0)] = 5
    seed: int = 0
    final: Final = "best"
    """Prompts a fit keeps: the best validation epoch; "swa", the average of the last half
    of the epochs; or "refit", the epoch count chosen on `folds` folds of train + val, then
    one fit on all of them (see TrainConfig.final)."""
    folds: Annotated[int, Field(ge=2, le=20)] = 3
    """k for `final: refit` (k fold fits and the refit: k + 1 times the training time)."""
    search: dict[str, Any] | None = None
    """Hyper-parameter search on Ray Tune: {trials, folds, seed, space}; see the README."""


class ImageBounds(_Strict):
    min_side: Annotated[int, Field(ge=1)] = 8
    max_side: Annotated[int, Field(ge=1)] = 8192
    max_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    """Refuse larger images before decoding them (decompression bombs)."""


class ValidationSpec(_Strict):
    min_per_class: dict[Literal["train", "val", "test"], Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"train": 2, "val": 1, "test": 1}
    )
    """Minimum examples of each label (classification) or answer (vqa) in each split."""
    min_per_split: Annotated[int, Field(ge=1)] = 1
    """Every split (train, val, test) needs at least this many rows."""
    caption_length: tuple[int, int] = (3, 500)
    """Allowed caption length in characters (retrieval)."""
    images: ImageBounds = Field(default_factory=ImageBounds)
    near_duplicate_distance: Annotated[int, Field(ge=0, le=MAX_NEAR_DUPLICATE_DISTANCE)] | None = 4
    """Images of two splits whose 64-bit perceptual hashes (pHash) differ in at most this
    many bits are reported as near-duplicates (a warning listing the pairs); None: off."""
    extra_expectations: str | None = None
    """Optional YAML file in the domain folder with more Great Expectations."""


class ShadowPolicy(_Strict):
    """`promotion.shadow`: live evidence the candidate must show before an approval."""

    min_requests: Annotated[int, Field(ge=0)] = 0
    """Items of production's traffic the candidate must have answered as a shadow."""
    min_agreement: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of them (0 to 1) on which it must agree with production's top-1 answer."""


class PromotionPolicy(_Strict):
    metric: str | None = None
    """Metric the candidate is compared on; None = the task's primary metric."""
    min_improvement: float = 0.0
    """Candidate must beat production by at least this much (absolute)."""
    max_class_regression: Annotated[float, Field(ge=0)] = 0.05
    """No class (or question) may lose more than this much accuracy (absolute)."""
    shadow: ShadowPolicy | None = None
    """Shadow requests and agreement required at approval; None: none (see monitoring)."""


WINDOW_LOW, WINDOW_HIGH = WINDOW_RANGE


class Monitoring(_Strict):
    """`monitoring:`: shadow traffic for the domain's candidates and drift of production,
    stored in the registry by `mpt run`, read by every `mpt serve` replica."""

    shadow_fraction: float = 0.0
    """Share (0 to 1) of production's items the candidate also answers; 0: no shadow."""
    shadow_alias: Annotated[str, Field(min_length=1)] | None = None
    """The alias whose version shadows production (e.g. staging); None: the version of
    the domain's open promotion request."""
    keep_images: bool = False
    """Disagreements keep a small thumbnail of the image; otherwise only its sha256."""
    window: Annotated[int, Field(ge=WINDOW_LOW, le=WINDOW_HIGH)] = 1000
    """Production predictions the drift is measured over (a sliding window)."""
    drift_threshold: Annotated[float, Field(gt=0)] | None = None
    """Drift (population stability index) above which a retrain is due; None: never."""
    cooldown_hours: Annotated[float, Field(ge=0)] = 24.0
    """At most one drift-triggered retrain of the domain in this many hours."""

    @field_validator("shadow_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0 <= v <= 1:
            raise ValueError(
                "must be a share from 0 to 1 (0.1 shadows one item in ten, 0 turns the "
                "shadow off); a percentage like 10 is written 0.1"
            )
        return v

    @field_validator("shadow_alias")
    @classmethod
    def _alias(cls, v: str | None) -> str | None:
        if v == PRODUCTION:
            raise ValueError(
                "production cannot shadow itself; name another alias (e.g. staging) or drop "
                "shadow_alias to shadow the version of the open promotion request"
            )
        return v

    def settings(self) -> MonitoringSettings:
        """The registry's record of these settings."""
        return MonitoringSettings(**self.model_dump())


class Schedule(_Strict):
    cron: str = "0 3 * * 1"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != 5:
            raise ValueError(
                f"cron {v!r} must have 5 fields: minute hour day month weekday; e.g. "
                f"{CRON_EXAMPLE!r} (02:00 every Monday)"
            )
        bad = _bad_cron_fields(fields)
        if bad:
            named = ", ".join(f"{name} {value!r}" for name, value, _ in bad)
            verb = "is" if len(bad) == 1 else "are"
            allowed = ", ".join(f"{name} as {allowed}" for name, _, allowed in bad)
            raise ValueError(
                f"cron {v!r}: {named} {verb} not valid. Fix: write {allowed}; each also as a "
                f"list (1,15), a range (1-5) or a step (*/15). E.g. {CRON_EXAMPLE!r} is 02:00 "
                "every Monday"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name like 'Europe/Berlin'"
            ) from None
        return v


CRON_FIELDS = {
    "minute": "0-59",
    "hour": "0-23",
    "day": "1-31",
    "month": "1-12 or jan-dec",
    "weekday": "0-6 or sun-sat (0 and 7 are Sunday)",
}
CRON_EXAMPLE = "0 2 * * 1"


def _bad_cron_fields(fields: list[str]) -> list[tuple[str, str, str]]:
    """(field name, value, what to write) of each field cronsim refuses, tried one at a
    time with the others `*`, so every bad field is named, not only the first."""
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    bad = []
    for i, (name, allowed) in enumerate(CRON_FIELDS.items()):
        probe = ["*"] * 5
        probe[i] = fields[i]
        try:
            CronSim(" ".join(probe), datetime(2026, 1, 1))
        except CronSimError:
            bad.append((name, fields[i], allowed))
    if not bad:  # each field alone is fine, together they are not (30 February)
        try:
            CronSim(" ".join(fields), datetime(2026, 1, 1))
        except CronSimError:
            bad.append(("day", fields[2], f"a day that month {fields[3]!r} has"))
    return bad


class DomainConfig(_Strict):
    name: str
    task: str
    """One of mpt_core's TASKS (classification, retrieval, vqa, ...)."""
    description: str = ""
    data: DataLayout = Field(default_factory=DataLayout)
    labels: list[str] | None = None
    """Class names (classification)."""
    answers: dict[str, list[str]] | None = None
    """Question -> candidate answers (vqa)."""
    template: str | None = None
    """Prompt template: '{}' for the class name, or '{question}'/'{answer}' for vqa."""
    task_options: dict[str, Any] = Field(default_factory=dict)
    """Further options of the task (see its `from_declaration`)."""
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    prompts: PromptSpec = Field(default_factory=PromptSpec)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    schedule: Schedule = Field(default_factory=Schedule)
    monitoring: Monitoring = Field(default_factory=Monitoring)

    @field_validator("labels", "answers", mode="before")
    @classmethod
    def _no_yaml_scalars(cls, v: Any) -> Any:
        groups = v.values() if isinstance(v, dict) else [v]
        keys = list(v) if isinstance(v, dict) else []
        items = keys + [i for g in groups for i in (g if isinstance(g, list) else [g])]
        if any(isinstance(i, bool) for i in items):
            raise ValueError(
                "YAML reads unquoted yes/no/on/off/true/false as booleans; "
                'quote them, e.g. ["yes", "no"]'
            )
        numbers = [i for i in items if isinstance(i, int | float)]
        if numbers:
            shown = ", ".join(f'"{n}"' for n in numbers[:3])
            raise ValueError(
                f"YAML reads unquoted numbers as numbers ({numbers[0]!r}); labels and answers "
                f"are text: quote them, e.g. [{shown}]"
            )
        return v

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; allowed: {', '.join(TASKS.names())}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a domain name: use lower case letters, digits, '-', '_'"
            )
        return v

    @model_validator(mode="after")
    def _task_fields(self) -> DomainConfig:
        try:
            self.build_task()
            family = FAMILIES.get(self.backbone.family)
            check_supported(
                family.name,
                family.kind,
                self.prompts.preset,
                self.task,
                TASKS.get(self.task).backbone_kind,
            )
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if self.tuning.search is not None:
            try:
                self.search_spec()
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        metrics = self.contract.metrics
        metric = self.promotion.metric
        if metric and metric not in metrics:
            raise ValueError(
                f"promotion.metric {metric!r} is not reported by task {self.task!r}; "
                f"allowed: {', '.join(metrics)}"
            )
        return self

    @property
    def contract(self) -> TaskContract:
        """What the task needs from the data and reports (mpt_core's task contract)."""
        return TASKS.get(self.task).contract

    def declaration(self) -> dict[str, Any]:
        """What the domain declares for its task: labels / answers / template / options."""
        declared = {"labels": self.labels, "answers": self.answers, "template": self.template}
        return {**declared, **self.task_options}

    def build_task(self) -> Task:
        """The mpt_core task this domain trains."""
        return task_from_declaration(self.task, self.declaration())

    @property
    def primary_metric(self) -> str:
        return self.promotion.metric or self.contract.primary_metric

    def train_config(self) -> dict[str, Any]:
        """The TrainConfig fields of `tuning:` (everything but the search)."""
        return self.tuning.model_dump(exclude={"search"})

    def tune_spec(self) -> TuneSpec:
        """The tuning job this domain asks for, typed: built once on the driver and carried
        as is to the workers, the search, the skip key and the registry."""
        return TuneSpec(
            task=self.task,
            task_options=self.build_task().to_dict(),
            preset=self.prompts.preset,
            overrides=dict(self.prompts.overrides),
            train=TrainConfig(**self.train_config(), progress=False),
            search=self.search_spec(),
            primary_metric=self.primary_metric,
            backbone=BackboneChoice(
                self.backbone.family, self.backbone.name, dict(self.backbone.options)
            ),
        )

    def search_spec(self) -> SearchSpec | None:
        """The validated `tuning.search`, or None when it asks for no trial."""
        if not self.tuning.search:
            return None
        spec = SearchSpec.from_dict(self.tuning.search, self.task)
        return spec if spec.trials > 0 else None

    def promotion_policy(self) -> Policy:
        """The registry policy of this domain: its `promotion:` block is the only source,
        whoever opens the request (the retrain flow, `mpt promote request`)."""
        shadow = self.promotion.shadow
        return Policy(
            self.primary_metric,
            self.promotion.min_improvement,
            self.promotion.max_class_regression,
            self.contract.group_metric,
            None if shadow is None else ShadowRule(shadow.min_requests, shadow.min_agreement),
        )


class DomainConfigError(ConfigError):
    """A domain.yaml that cannot be used; the message names the file and the fields."""


def _format(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        shown = "" if isinstance(given, dict) or err["type"] == "missing" else f" (got {given!r})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field; check the spelling (see `mpt domain new` for a commented example)"
        lines.append(f"  - {where}: {msg}{shown}")
    return "\n".join(lines)


def load_domain_config(path: str | Path) -> DomainConfig:
    """Read and validate a domain.yaml; `name` defaults to the folder's name."""
    path = Path(path)
    try:
        raw = safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DomainConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise DomainConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise DomainConfigError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from None
    if not isinstance(raw, dict):
        raise DomainConfigError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    raw.setdefault("name", path.parent.name)
    try:
        return DomainConfig.model_validate(raw)
    except ValidationError as exc:
        raise DomainConfigError(_format(path, exc)) from None
