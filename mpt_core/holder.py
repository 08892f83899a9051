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
from .featurestore import (
    FeatureKey,
    FeatureStore,
    FeatureView,
    Progress,
    chunk_size,
    frozen_chunks,
)

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

    # --- what training starts from ------------------------------------------------------
    @property
    def prepared_output(self) -> str:
        """Which frozen output `prepare_images` gives (a kind's model says)."""
        raise NotImplementedError

    def prepare_chunk(self, images: list[Any]) -> torch.Tensor:
        """The frozen output of a chunk of decoded images (a kind's model says)."""
        raise NotImplementedError

    @property
    def feature_key(self) -> FeatureKey:
        """What the frozen outputs of this model's images are stored under."""
        backbone = self.backbone
        return FeatureKey(
            backbone.identity.weights_sha256, self.prepared_output, backbone.preprocessing
        )

    @torch.no_grad()
    def prepare_images(
        self,
        images: Sequence[ImageSource],
        batch_size: int | None = None,
        *,
        store: FeatureStore | None = None,
        on_progress: Progress | None = None,
    ) -> torch.Tensor | FeatureView:
        """What a training step starts from, computed once per image: a tensor, or, given a
        feature store, a view of the stored features (the missing ones computed and added),
        read a batch at a time. Each chunk is computed at one batch size (`frozen_chunks`;
        default: `chunk_size` of the backbone's device), so both are bit-identical."""
        chunk = batch_size or chunk_size(self.backbone.device)
        if store is not None:
            return store.features(
                self.feature_key, images, self.prepare_chunk, on_progress=on_progress, chunk=chunk
            )
        return torch.cat(list(frozen_chunks(self.prepare_chunk, images, chunk)))

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
