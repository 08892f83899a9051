"""What travels between the flow and the tuning workers: small, plain, picklable data.

No image and no backbone module travels: a job names its backbone (family, name, options
and the sha256 its weights must have) and its data version (the DVC remote and the md5);
the worker loads the one and materialises the other itself. Only prompt tensors (bytes),
metrics and per-example predictions come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpt_core.artifacts import PromptArtifact
from mpt_core.spec import TuneSpec

from .datacache import RemoteLocation
from .dataset import TableLayout

if TYPE_CHECKING:
    from .predictions import Evidence


@dataclass(frozen=True)
class BackboneRef:
    """A backbone by name, with the weights sha256 the worker must find when loading it."""

    family: str
    name: str | None
    options: tuple[tuple[str, Any], ...] = ()
    sha256: str | None = None

    @property
    def key(self) -> tuple:
        return (self.family, self.name, self.options)

    def describe(self) -> str:
        return f"{self.family}:{self.name or 'default'}"


@dataclass(frozen=True)
class DataRef:
    """A data version a worker materialises from the DVC remote: md5 of DVC's listing, how
    to read its table, and the sha256 of the rows the driver validated (the worker checks
    it reads the same)."""

    location: RemoteLocation
    md5: str
    rows_sha256: str
    layout: TableLayout
    rows: int = 0
    """How many rows the data version has (a size hint: how to share its embedding)."""


@dataclass(frozen=True)
class TuneJob:
    domain: str
    spec: TuneSpec
    """What to tune and how: built once from the domain's config on the driver."""
    backbone: BackboneRef
    data: DataRef
    production: PromptArtifact | None = None
    """The current production prompts, evaluated on the same test split."""
    production_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Written into the candidate artifact's config (data version, flow run...)."""


@dataclass(frozen=True)
class TuneOutcome:
    domain: str
    artifact: PromptArtifact
    metrics: dict[str, dict[str, Any]]
    """Candidate metrics per split (val, test)."""
    production_metrics: dict[str, Any] | None
    """Production's test metrics on the same data, or None without production."""
    history: list[dict[str, Any]]
    seconds: float
    """Wall time of the tuning itself (fit), in the worker."""
    worker: str
    trainable_parameters: int
    backbone: dict[str, str]
    """The identity (family, name, weights sha256) of the backbone the worker tuned on."""
    evidence: Evidence | None = None
    """Per-example test predictions of both versions and thumbnails, for reviewers."""
    features: dict[str, int] = field(default_factory=dict)
    """{images: distinct images the job read, embedded: those whose frozen features were
    computed for it (the rest came from the node's feature store)}."""


@dataclass(frozen=True)
class Failure:
    """Why one domain stopped, and where: the one failure type of a run. Steps return it
    (workers, searches) or raise it inside `StepFailed`; the flow turns it into the
    domain's row of the run table (`pipeline.DomainResult.of_failure`)."""

    domain: str
    stage: str
    """monitoring, validate, version, plan, job, search, tune, register, preflight, config."""
    message: str
    """The full reason, with its fix; the run table keeps its first line."""
    invalid: bool = False
    """The domain's data or config was refused (status invalid), not a step that broke."""
    data_version: str | None = None
    """The data version, where one was recorded before the failure."""
    validation: str | None = None
    """What the run table shows as the validation (FAILED, broken domain.yaml...)."""
    attempts: int = 1


class StepFailed(Exception):
    """Raised by a step that knows exactly why its domain cannot go on."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure
