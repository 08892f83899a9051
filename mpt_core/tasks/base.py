"""The task protocol: how image embeddings and text candidates become a loss and metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..data import Example

if TYPE_CHECKING:
    from ..model import ImageFeatures, PromptedModel

Metrics = dict[str, Any]  # metric name -> float, or -> {class/question: float}


class Task(ABC):
    """A task scores encoded images (`ImageFeatures`, B of them) against text candidates it
    builds itself, through `model.score(images, model.embed_texts(candidates))`.

    Candidate texts (class prompts, captions, question+answer pairs) are embedded once per
    call for the whole candidate set, never once per example, and never per image.
    """

    name: ClassVar[str]
    primary_metric: ClassVar[str]

    @abstractmethod
    def check(self, examples: Sequence[Example]) -> None:
        """Raise DataError naming the first example this task cannot use."""

    @abstractmethod
    def loss(
        self, model: PromptedModel, image_emb: ImageFeatures, examples: Sequence[Example]
    ) -> torch.Tensor: ...

    @abstractmethod
    def evaluate(
        self, model: PromptedModel, image_emb: ImageFeatures, examples: Sequence[Example]
    ) -> Metrics: ...

    @abstractmethod
    def predict(
        self, model: PromptedModel, image_emb: ImageFeatures, examples: Sequence[Example]
    ) -> list[str]: ...

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-able spec; `TASKS.get(name).from_dict(spec)` rebuilds the task."""

    @classmethod
    @abstractmethod
    def from_dict(cls, spec: dict[str, Any]) -> Task: ...
