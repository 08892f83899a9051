"""TPG, VPG and the module that joins them through a coupling: `MultimodalPrompts`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.base import PromptSlots, TowerSlot
from .config import PromptConfig
from .coupling import COUPLINGS


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
    """Everything that trains for one domain: TPG + VPG (+ linear coupling or PFM)."""

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
                config, slots.text.width, slots.vision.width
            )

    def forward(self) -> PromptSet:
        text = self.text() if self.text is not None else []
        vision = self.vision() if self.vision is not None else []
        if self.coupling is not None:
            for layer in range(self.config.shared_depth):
                text[layer], vision[layer] = self.coupling(text[layer], vision[layer], layer)
        return PromptSet(text, vision)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
