"""Couplings between text and visual prompts, per shared layer.

`linear` (MaPLe-style): vision_l += W_l text_l, W_l starting at zero.
`cross-attention` (the PFM): both token sets are projected into one fusion width, text
tokens attend to visual tokens and visual to text, and the result is fed back through a
tanh gate per layer and tower that starts at zero, so training starts from independent
prompts and learns how much coupling helps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._registry import Registry
from .config import PromptConfig

Coupler = nn.Module  # forward(text (n_t, d_t), vision (n_v, d_v), layer) -> (text, vision)
COUPLINGS: Registry[Callable[[PromptConfig, int, int], Coupler | None]] = Registry("coupling")


@COUPLINGS.decorator("none")
def _no_coupling(cfg: PromptConfig, text_width: int, vision_width: int) -> None:
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
def _linear(cfg: PromptConfig, text_width: int, vision_width: int) -> LinearCoupling:
    return LinearCoupling(cfg.shared_depth, text_width, vision_width)


class FusionLayer(nn.Module):
    """One layer of the PFM. text (n_t, d_t), vision (n_v, d_v) -> same shapes."""

    def __init__(self, text_width: int, vision_width: int, width: int, heads: int, gated: bool):
        super().__init__()
        self.text_in = nn.Linear(text_width, width)
        self.vision_in = nn.Linear(vision_width, width)
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.text_out = nn.Linear(width, text_width)
        self.vision_out = nn.Linear(width, vision_width)
        # gate[0] text, gate[1] vision; tanh(0) = 0: coupling starts switched off
        self.gate = nn.Parameter(torch.zeros(2)) if gated else None

    def forward(
        self, text: torch.Tensor, vision: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.norm(self.text_in(text)).unsqueeze(0)  # (1, n_t, w)
        v = self.norm(self.vision_in(vision)).unsqueeze(0)  # (1, n_v, w)
        t_mix, _ = self.attn(t, v, v, need_weights=False)  # text queries visual tokens
        v_mix, _ = self.attn(v, t, t, need_weights=False)  # visual queries text tokens
        g = torch.tanh(self.gate) if self.gate is not None else torch.ones(2, device=text.device)
        return (
            text + g[0] * self.text_out(t_mix[0]),
            vision + g[1] * self.vision_out(v_mix[0]),
        )


class CrossAttentionFusion(nn.Module):
    def __init__(self, cfg: PromptConfig, text_width: int, vision_width: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            FusionLayer(
                text_width, vision_width, cfg.fusion_width, cfg.fusion_heads, cfg.fusion_gate
            )
            for _ in range(cfg.shared_depth)
        )

    def forward(
        self, text: torch.Tensor, vision: torch.Tensor, layer: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layers[layer](text, vision)


@COUPLINGS.decorator("cross-attention")
def _cross_attention(cfg: PromptConfig, text_width: int, vision_width: int) -> CrossAttentionFusion:
    return CrossAttentionFusion(cfg, text_width, vision_width)
