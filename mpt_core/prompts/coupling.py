"""Couplings between the static (learned, input-independent) text and visual prompts.

`linear` (MaPLe-style): vision_l += W_l text_l, W_l starting at zero.

A coupling between tokens that never see the input is a reparameterisation of independent
prompts; the fusion that adapts per input is the PFM in `fusion.py`. (The cross-attention
coupling between static token sets that was here measured no better than independent
prompts, see docs/results-notes.md.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._registry import Registry

Coupler = nn.Module  # forward(text (n_t, d_t), vision (n_v, d_v), layer) -> (text, vision)
CouplingFactory = Callable[[int, int, int], Coupler | None]
"""(layers where both towers have prompts, text width, vision width) -> the coupler."""
COUPLINGS: Registry[CouplingFactory] = Registry("coupling")


@COUPLINGS.decorator("none")
def _no_coupling(depth: int, text_width: int, vision_width: int) -> None:
    return None


class LinearCoupling(nn.Module):
    def __init__(self, depth: int, text_width: int, vision_width: int) -> None:
        super().__init__()
        self.maps = nn.ModuleList(
            nn.Linear(text_width, vision_width, bias=False) for _ in range(depth)
        )
        for m in self.maps:
            nn.init.zeros_(m.weight)

    def forward(
        self, text: torch.Tensor, vision: torch.Tensor, layer: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return text, vision + self.maps[layer](text)


@COUPLINGS.decorator("linear")
def _linear(depth: int, text_width: int, vision_width: int) -> LinearCoupling:
    return LinearCoupling(depth, text_width, vision_width)
