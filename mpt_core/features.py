"""What encoders and predictors hand around, for either backbone kind: a batch of encoded
images (`ImageFeatures`, dual encoders) and one item's answer (`Prediction`).

No model lives here, so tasks, the trainer and both backbone kinds can import it without
importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageFeatures:
    """A batch of encoded images.

    embedding: (B, D) centred, L2-normalised image embeddings (after the residual path).
    tokens: (B, n, D) the image-conditioned prompt tokens the PFM attends to, or None.
    """

    embedding: torch.Tensor
    tokens: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.embedding)

    def __getitem__(self, index) -> ImageFeatures:
        return ImageFeatures(
            self.embedding[index], None if self.tokens is None else self.tokens[index]
        )

    @property
    def device(self) -> torch.device:
        return self.embedding.device

    def float(self) -> ImageFeatures:
        return ImageFeatures(
            self.embedding.float(), None if self.tokens is None else self.tokens.float()
        )

    @staticmethod
    def cat(parts: Sequence[ImageFeatures | torch.Tensor]) -> ImageFeatures | torch.Tensor:
        """Batches joined; plain tensors (a generative model's query embeddings) too."""
        if parts and isinstance(parts[0], torch.Tensor):
            return torch.cat(parts)  # type: ignore[arg-type]
        tokens = [p.tokens for p in parts]
        return ImageFeatures(
            torch.cat([p.embedding for p in parts]),
            None if any(t is None for t in tokens) else torch.cat(tokens),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Prediction:
    """One image's answer under one domain's prompts."""

    value: str | None
    """The label, answer, best caption or generated text; None when there was nothing
    to rank (a retrieval example without candidates)."""
    scores: dict[str, float]
    """Each candidate -> probability (softmax over this example's candidates); empty for
    generated text."""
    embedding: torch.Tensor | None
    """(D,) the centred, L2-normalised image embedding the scores came from (dual
    encoders; None on a generative backbone)."""
