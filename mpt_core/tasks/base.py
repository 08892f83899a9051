"""The task protocol: how image embeddings and text candidates become a loss and metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..data import Example

if TYPE_CHECKING:
    from ..model import PromptedModel

Metrics = dict[str, Any]  # metric name -> float, or -> {class/question: float}


class Task(ABC):
    """A task scores (B, D) image embeddings against text candidates it builds itself.

    Candidate texts (class prompts, captions, question+answer pairs) are embedded once per
    call for the whole candidate set, never once per example.
    """

    name: ClassVar[str]
    primary_metric: ClassVar[str]
    target_field: ClassVar[str]
    """The `Example` field a prediction is compared with (label, caption, answer)."""

    @abstractmethod
    def check(self, examples: Sequence[Example]) -> None:
        """Raise DataError naming the first example this task cannot use."""

    @abstractmethod
    def loss(
        self, model: PromptedModel, image_emb: torch.Tensor, examples: Sequence[Example]
    ) -> torch.Tensor: ...

    @abstractmethod
    def evaluate(
        self, model: PromptedModel, image_emb: torch.Tensor, examples: Sequence[Example]
    ) -> Metrics: ...

    @abstractmethod
    def predict(
        self, model: PromptedModel, image_emb: torch.Tensor, examples: Sequence[Example]
    ) -> list[str]: ...

    @abstractmethod
    def predict_scored(
        self, model: PromptedModel, image_emb: torch.Tensor, examples: Sequence[Example]
    ) -> list[tuple[str, float]]:
        """`predict`, with each prediction's softmax probability among its candidates.

        Ranks exactly what `evaluate` ranks, so the share of correct predictions equals the
        task's top-1 metric on the same examples."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-able spec; `TASKS.get(name).from_dict(spec)` rebuilds the task."""

    @classmethod
    @abstractmethod
    def from_dict(cls, spec: dict[str, Any]) -> Task: ...
