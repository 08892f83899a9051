"""TPG, VPG and the module that joins them through a coupling: `MultimodalPrompts`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.base import PromptSlots, TowerSlot
from .config import PromptConfig
from .coupling import COUPLINGS
from .fusion import GatedResidual, ImagePromptGenerator, PromptFusion, TextAdapter


class TokenPromptGenerator(nn.Module):
    """depth x (tokens, width) learnable tokens: the TPG for text, the VPG for images.

    A VPG on a CNN's "query" slot starts at zero (uniform attention = average pooling);
    token prompts start as small random vectors. `learnable=False` keeps them at zero.
    """

    def __init__(self, slot: TowerSlot, tokens: int, depth: int, std: float, learnable: bool):
        super().__init__()
        init = torch.zeros(depth, tokens, slot.width)
        if slot.kind == "token":
            init.normal_(std=std)
        if learnable:
            self.tokens = nn.Parameter(init)
        else:
            self.register_buffer("tokens", torch.zeros_like(init))

    def forward(self) -> list[torch.Tensor]:
        return list(self.tokens.unbind(0))


@dataclass
class PromptSet:
    """Per-layer prompts for each tower: lists of (n, width) tensors (empty = no prompts)."""

    text: list[torch.Tensor]
    vision: list[torch.Tensor]


class MultimodalPrompts(nn.Module):
    """Everything that trains for one domain.

    Static prompts: TPG + VPG tokens (+ linear coupling), `forward()`. Image-conditioned:
    the VPG's generator (`image_prompts`), the residual on the image embedding
    (`condition_image`) and the PFM (`fuse`). After the text tower: `adapt_text`.
    """

    def __init__(self, config: PromptConfig, slots: PromptSlots, seed: int = 0) -> None:
        super().__init__()
        self.config = config.validate(slots)
        self.slots = slots
        with torch.random.fork_rng():  # initialisation depends on `seed` only
            torch.manual_seed(seed)
            self.text = (
                TokenPromptGenerator(
                    slots.text, config.text_tokens, config.text_depth, config.init_std, True
                )
                if config.has_text
                else None
            )
            self.vision = (
                TokenPromptGenerator(
                    slots.vision,
                    config.vision_tokens,
                    config.vision_depth,
                    config.init_std,
                    config.vision_learnable,
                )
                if config.has_vision
                else None
            )
            self.coupling = COUPLINGS.get(config.coupling)(
                config.shared_depth, slots.text.width, slots.vision.width
            )
            dim = slots.embed_dim
            self.generator = (
                ImagePromptGenerator(
                    config.image_tokens,
                    slots.feature_width,
                    dim,
                    config.generator_rank,
                    config.init_std,
                )
                if config.has_generator
                else None
            )
            self.image_residual = (
                GatedResidual(config.image_residual) if config.image_residual > 0 else None
            )
            self.fusion = (
                PromptFusion(dim, config.fusion_width, config.fusion_heads, config.fusion_gate)
                if config.fusion
                else None
            )
            self.text_adapter = (
                TextAdapter(dim, config.generator_rank, config.text_residual)
                if config.text_residual > 0
                else None
            )

    def forward(self) -> PromptSet:
        text = self.text() if self.text is not None else []
        vision = self.vision() if self.vision is not None else []
        if self.coupling is not None:
            for layer in range(self.config.shared_depth):
                text[layer], vision[layer] = self.coupling(text[layer], vision[layer], layer)
        return PromptSet(text, vision)

    def image_prompts(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, C) per-position image features -> (B, n, D) prompt tokens of each image."""
        assert self.generator is not None
        return self.generator(features)

    def condition_image(self, embedding: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        """(B, D) normalised image embeddings -> (B, D), moved by the image's own tokens."""
        if self.image_residual is None or tokens is None:
            return embedding
        return self.image_residual(embedding, tokens.mean(dim=1))

    def fuse(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(N, D) candidate embeddings, (B, n, D) image tokens -> (B, N, D) per image."""
        assert self.fusion is not None
        return self.fusion(text, tokens)

    def adapt_text(self, text: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised text embeddings -> (N, D); image-independent."""
        return text if self.text_adapter is None else self.text_adapter(text)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
