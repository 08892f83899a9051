"""The task protocol: how image embeddings and text candidates become a loss and metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch

from ..data import FIELDS, Example, ExampleField, ImageSource, declare_field, require
from ..features import ImageFeatures

Metrics = dict[str, Any]  # metric name -> float, or -> {class/question: float}


@dataclass(frozen=True)
class ValueSet:
    """A closed set of values a domain declares for one Example field.

    field: the Example field whose values are declared ("label", "answer").
    key: the domain.yaml key holding them ("labels", "answers").
    per: None = one list for every row; else the field whose value selects the list
         ({question: [answers]} has per="question").
    """

    field: str
    key: str
    per: str | None = None


@dataclass(frozen=True)
class TextField:
    """A free-text Example field and the length (characters, stripped) a value may have.
    For `caption`, a domain's `validation.caption_length` overrides these bounds."""

    field: str
    min_chars: int
    max_chars: int


@dataclass(frozen=True)
class TaskContract:
    """What a task needs from a domain's data and declaration, and what it reports.

    The platform validates, reads and reports through this, never by naming tasks.
    """

    fields: tuple[str, ...]
    """Example fields every row needs (besides the image)."""
    metrics: tuple[str, ...]
    """Scalar metrics the task reports; a promotion policy may compare any of them."""
    primary_metric: str
    value_set: ValueSet | None = None
    """Declared closed value set (labels, answers per question); None = free values."""
    group_metric: str | None = None
    """Metrics key of the per-group dict ({class: accuracy}) a policy checks for regressions."""
    group_field: str | None = None
    """The Example field whose values key `group_metric` (label, question)."""
    text_fields: tuple[TextField, ...] = ()
    """Free-text fields whose length validation bounds (captions, open answers)."""
    row_key: tuple[str, ...] | None = ("image",)
    """Fields that identify a row: no two rows may share them. None: identical rows are
    meaningful (several annotators giving the same answer) and allowed."""
    optional_fields: tuple[str, ...] = ()
    """Example fields read when present, never required."""
    declaration_help: str = ""
    """A commented domain.yaml snippet declaring what the task needs (for scaffolding)."""
    target: str | None = None
    """The Example field a prediction is compared with (label, caption, answer); default:
    the declared value set's field, else the last of `fields`."""
    inputs: tuple[str, ...] = ()
    """Example fields a prediction needs besides the image (vqa: the question); a
    prediction request must send them."""
    optional_inputs: tuple[str, ...] = ()
    """Example fields a prediction may use (retrieval: candidate captions to rank)."""
    declares: tuple[ExampleField, ...] = ()
    """The example fields this task defines (name, help, shape). Fields it names that
    another task declares need not be declared again."""
    example_metric: str | None = None
    """The metric one example's prediction gets on its own (`Task.example_scores`), for a
    task whose predictions are not simply right or wrong (generated text: a caption's
    CIDEr-D): reviewers see which examples a new version got worse at. None: a prediction
    is right when it equals its target."""

    def __post_init__(self) -> None:
        for field in self.declares:
            declare_field(field)
        known = {"image", *FIELDS}
        named = [*self.fields, *self.optional_fields, *(t.field for t in self.text_fields)]
        named += [*self.inputs, *self.optional_inputs, *(self.row_key or ())]
        if self.target is None:
            default = self.value_set.field if self.value_set else self.fields[-1]
            object.__setattr__(self, "target", default)  # frozen: set once, here
        if self.target not in self.fields:
            raise ValueError(f"target {self.target!r} is not one of the fields {self.fields}")
        if self.value_set is not None:
            named += [self.value_set.field] + ([self.value_set.per] if self.value_set.per else [])
        if self.group_field:
            named.append(self.group_field)
        unknown = sorted(set(named) - known)
        if unknown:
            raise ValueError(
                f"task contract names {unknown}, which no task declares as example fields; "
                "declare them in the contract (declares=(ExampleField(name, help), ...))"
            )
        if not set(self.inputs) <= set(self.fields):
            raise ValueError(f"inputs {self.inputs} must be among the fields {self.fields}")
        if self.target in (*self.inputs, *self.optional_inputs):
            raise ValueError(f"target {self.target!r} is what is predicted, not an input")
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary metric {self.primary_metric!r} is not in {self.metrics}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every example field a domain's table may hold for this task, required first."""
        return tuple(dict.fromkeys([*self.fields, *self.optional_fields]))

    @property
    def closed(self) -> bool:
        """Predictions are one of a declared set (labels, answers): a confusion matrix and
        per-class accuracy mean something."""
        return self.value_set is not None

    @property
    def declaration_keys(self) -> tuple[str, ...]:
        """domain.yaml keys this task reads besides `template` (e.g. ("labels",))."""
        return (self.value_set.key,) if self.value_set else ()


@dataclass(frozen=True)
class Toy:
    """A small learnable instance of a task, for the generated test matrix, test domains and
    examples: the task over some class names, and how one image of a class becomes its
    examples (rows). Each task provides its own (`Task.toy`), so a new task is tested
    without anyone writing its fixtures."""

    task: Task
    rows: Callable[[str, ImageSource], list[Example]]
    """(class name, image) -> the examples of that image."""


class ScoringModel(Protocol):
    """What a task that scores candidate texts needs from a prompted model
    (`model.PromptedModel` is one)."""

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) normalised embeddings of candidate texts under the prompts."""

    def score(self, images: ImageFeatures, text: torch.Tensor) -> torch.Tensor:
        """(B, N) logits of B encoded images against N text embeddings."""


class Task(ABC):
    """A task scores encoded images (`ImageFeatures`, B of them) against text candidates it
    builds itself, through `model.score(images, model.embed_texts(candidates))`.

    Candidate texts (class prompts, captions, question+answer pairs) are embedded once per
    call for the whole candidate set, never once per example, and never per image.
    """

    name: ClassVar[str]
    contract: ClassVar[TaskContract]
    primary_metric: ClassVar[str]
    """Set from the contract."""
    #: The kind of backbone the task runs on (`Backbone.kind`): "dual-encoder" scores texts
    #: against images, "generative" writes text (see `tasks/generation.py`).
    backbone_kind: ClassVar[str] = "dual-encoder"
    #: The recommended hyper-parameter search (`mpt_core.training.search`) when a domain
    #: asks for one without a space: 6 trials (the base config + 5 draws), small enough for
    #: `make demo` on two cores. The knobs are the ones a 1-seed screening on validation
    #: showed to matter per demo domain: text prompts (help manufacturing and medical, not
    #: retail), the PFM (helps retail and medical a little), the epoch budget (matters for
    #: the 48-image manufacturing split), the residual ratio.
    default_search: ClassVar[dict[str, Any]] = {
        "trials": 6,
        "space": {
            "lr": {"loguniform": [1e-3, 1e-2]},
            "epochs": {"choice": [15, 30]},
            "text_tokens": {"choice": [0, 4]},
            "fusion": {"choice": [True, False]},
            "image_residual": {"choice": [0.5, 1.0, 2.0]},
        },
    }
    #: Example fields a prediction needs besides the image, and those it may use: set from
    #: the contract's `inputs` and `optional_inputs`.
    inputs: ClassVar[tuple[str, ...]] = ()
    optional_inputs: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "contract" in cls.__dict__:
            cls.primary_metric = cls.contract.primary_metric
            cls.inputs = cls.contract.inputs
            cls.optional_inputs = cls.contract.optional_inputs

    @classmethod
    @abstractmethod
    def from_declaration(cls, declared: Mapping[str, Any]) -> Task:
        """Build the task from a domain's declaration: the contract's `declaration_keys`
        (e.g. labels), `template` and task options; raise ConfigError naming the key."""

    def declared_values(self) -> dict[str | None, list[str]]:
        """The declared value set as {per-value or None: [values]} ({} when open)."""
        return {}

    @abstractmethod
    def declaration(self) -> dict[str, Any]:
        """What a domain.yaml declares for this task, as `from_declaration` reads it back
        (value-set key, `template`, task options): `from_declaration(t.declaration())`
        builds the same task."""

    @classmethod
    @abstractmethod
    def toy(cls, classes: Sequence[str]) -> Toy:
        """A small learnable instance over `classes` (at least two), whose rows tell the
        classes apart from the images (see `Toy`)."""

    @abstractmethod
    def check(self, examples: Sequence[Example]) -> None:
        """Raise DataError naming the first example this task cannot use."""

    def check_inputs(self, examples: Sequence[Example]) -> None:
        """Raise DataError (with `.index` and `.field`) for the first example this task
        cannot predict for: a missing input, or a value outside what the task declares."""
        for field in self.inputs:
            require(examples, field, self.name)

    @abstractmethod
    def loss(
        self, model: ScoringModel, image_emb: ImageFeatures, examples: Sequence[Example]
    ) -> torch.Tensor: ...

    @abstractmethod
    def evaluate(
        self, model: ScoringModel, image_emb: ImageFeatures, examples: Sequence[Example]
    ) -> Metrics: ...

    @abstractmethod
    def predict(
        self, model: ScoringModel, image_emb: ImageFeatures, examples: Sequence[Example]
    ) -> list[str]: ...

    def scores(
        self, model: ScoringModel, image_emb: ImageFeatures, examples: Sequence[Example]
    ) -> list[dict[str, float]]:
        """Per example: each of its candidates (class, answer, caption) -> probability
        (softmax over that example's candidates); the argmax is `predict`'s answer. Empty
        for an example that has no candidates (retrieval without captions). Every task
        that scores candidates defines it; a task that generates text has none."""
        raise NotImplementedError(f"task {self.name!r} generates text; it scores no candidates")

    def predict_scored(
        self, model: ScoringModel, image_emb: torch.Tensor, examples: Sequence[Example]
    ) -> list[tuple[str, float | None]]:
        """`predict`, with each prediction's probability among its candidates (None where
        there is no cheap one, as for generated text).

        A ranking task ranks exactly what `evaluate` ranks, so the share of correct
        predictions equals its top-1 metric on the same examples. By default: the best of
        each example's `scores` (every example must have candidates) and its probability;
        a task whose `scores` rank other candidates than `evaluate` overrides this."""
        out: list[tuple[str, float | None]] = []
        for row in self.scores(model, image_emb, examples):
            value = best_candidate(row)
            if value is None:
                raise ValueError(f"task {self.name!r}: an example has no candidates to rank")
            out.append((value, row[value]))
        return out

    def example_scores(
        self, predictions: Sequence[str], examples: Sequence[Example]
    ) -> list[float]:
        """Per example, the contract's `example_metric` of its prediction (`predictions[i]`
        is the prediction for `examples[i]`, as `predict` returns them): how good each one
        is on its own, where the mean over the distinct inputs is the task's metric. Only a
        task that names an `example_metric` has them."""
        raise NotImplementedError(
            f"task {self.name!r} names no example_metric: its predictions are right or wrong"
        )

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-able spec; `TASKS.get(name).from_dict(spec)` rebuilds the task."""

    @classmethod
    @abstractmethod
    def from_dict(cls, spec: dict[str, Any]) -> Task: ...


def best_candidate(scores: Mapping[str, float]) -> str | None:
    """The highest-scoring candidate of one example's `Task.scores` (the first of equal
    ones, as `argmax`); None when it has no candidates."""
    return max(scores, key=scores.__getitem__) if scores else None


def take_declaration(
    task: type[Task],
    declared: Mapping[str, Any],
    *,
    template: bool = True,
    options: tuple[str, ...] = (),
    hint: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The declared keys a task reads, checked: its value-set key is present, nothing else
    is (an unused `labels` on a retrieval domain, a misspelt option, are mistakes worth
    saying). `options`: the task options it accepts (domain.yaml `task_options`); `hint`:
    key -> why the task does not use it, said when that key is given."""
    from ..errors import ConfigError

    wanted = set(task.contract.declaration_keys) | ({"template"} if template else set())
    wanted |= set(options)
    given = {k: v for k, v in declared.items() if v is not None}
    for key in task.contract.declaration_keys:
        if not given.get(key):
            raise ConfigError(f"task {task.name!r} needs {key!r}")
    extra = sorted(set(given) - wanted)
    if extra:
        why = "; ".join(dict.fromkeys(hint[k] for k in extra if k in hint)) if hint else ""
        raise ConfigError(
            f"{', '.join(repr(k) for k in extra)} {'is' if len(extra) == 1 else 'are'} not used "
            f"by task {task.name!r}{': ' + why if why else ''}; "
            f"remove {'it' if len(extra) == 1 else 'them'}"
        )
    return given
