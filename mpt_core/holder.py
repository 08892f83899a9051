"""`PromptsHolder`: what a prompted model of either backbone kind holds and says about
what trains. The kinds' own models (`model.PromptedModel` for dual encoders,
`generative.model.GenerativeModel`) derive from it; the trainer, the artifacts and the
servers see only this much of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .data import Example, ImageSource

if TYPE_CHECKING:
    from .prompts.config import PromptConfig
    from .tasks.base import Task


class PromptsHolder(nn.Module):
    """One domain's `prompts` (registered), its task, and the shared backbone (held, not
    registered: `parameters()`, `state_dict()` and the optimizer see the prompts alone, and
    one backbone object serves many domains).

    A kind's model defines `encode_images`, `prepare_images`, `embed_prepared`,
    `vision_frozen` and `pop_auxiliary_loss`, which the trainer and `predict` use."""

    prompts: nn.Module
    backbone: nn.Module
    centered: bool

    def __init__(self, backbone: nn.Module, prompts: nn.Module, task: Task, preset: str | None):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)
        self.prompts = prompts
        self.task = task
        self.preset = preset

    def encode_images(self, images: Sequence[ImageSource]) -> Any:
        raise NotImplementedError

    def predict(self, examples: Sequence[Example]) -> list[str]:
        """Task predictions (class name, caption or answer) for each example."""
        with torch.no_grad():
            emb = self.encode_images([e.image for e in examples])
            return self.task.predict(self, emb, examples)

    def extra_repr(self) -> str:
        return f"preset={self.preset}, backbone={self.backbone.identity}, task={self.task.name}"

    @property
    def config(self) -> PromptConfig:
        return self.prompts.config

    def num_trainable(self) -> int:
        return self.prompts.num_trainable()

    def trainable_fraction(self) -> float:
        """Trainable prompt parameters / backbone parameters."""
        return self.num_trainable() / self.backbone.num_parameters()
