"""What trains for one domain on a generative backbone: TPG, VPG and the Q-Former PFM.

The settings come from the shared `PromptConfig` (so every preset means the same thing on
every family); on a generative backbone they read:

- `text_tokens` (TPG): learned tokens in the language model's input (p-tuning); the
  language model takes them at its input only, so `text_depth` is 1.
- `vision_tokens`, `vision_depth` (VPG): deep visual prompt tokens in the ViT.
- `coupling`: `linear` adds W * text tokens to the first layer's visual tokens (MaPLe,
  W starts at 0; needs as many text as visual tokens).
- `fusion` (the PFM, as on the dual encoders, where it acts after the text tower): here it
  lives where the modalities meet, the Q-Former: after each Q-Former cross-attention layer
  the learned queries attend to the visual prompt tokens (their last ViT states, so per
  image) and the text prompt tokens, projected to `fusion_width`, with `fusion_heads`
  heads, and the result is added back through a tanh gate per layer that starts at 0
  (`fusion_gate=False`: fixed at 1). With the gates shut the queries are exactly the
  frozen Q-Former's. It reads the image through the visual prompt states, so it needs no
  image-conditioned generator (`image_tokens`, a dual-encoder setting, stays 0).
- `vision_learnable=False`: visual tokens are zeros plus what the linear coupling adds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from ..backbones.generative import FusionSlot, GenerativeBackbone, QueryFusion
from ..errors import ConfigError
from ..prompts.config import PromptConfig

#: The PromptConfig fields this module interprets; any other field must keep its default,
#: so a setting added for the dual encoders is refused here instead of silently ignored.
USED_FIELDS = frozenset(
    {
        "text_tokens",
        "text_depth",
        "vision_tokens",
        "vision_depth",
        "coupling",
        "fusion",
        "fusion_width",
        "fusion_heads",
        "fusion_gate",
        "vision_learnable",
        "init_std",
    }
)
COUPLINGS = ("none", "linear")


def check_config(config: PromptConfig, backbone: GenerativeBackbone) -> PromptConfig:
    """The shared checks (`PromptConfig.validate`) plus what a generative backbone needs."""
    config.validate(backbone.slots)
    for f in fields(config):
        if f.name not in USED_FIELDS and getattr(config, f.name) != f.default:
            raise ConfigError(
                f"prompt config {f.name}={getattr(config, f.name)!r} has no meaning on "
                f"{backbone.family}; leave it at {f.default!r}"
            )
    if config.coupling not in COUPLINGS:
        raise ConfigError(
            f"coupling {config.coupling!r} is not available on {backbone.family}; "
            f"it supports: {', '.join(COUPLINGS)}"
        )
    if not config.vision_learnable and config.coupling != "linear" and config.has_vision:
        raise ConfigError(
            f"vision_learnable=False on {backbone.family} needs coupling='linear' (the only "
            "coupling that writes visual prompts); set vision_tokens=0 otherwise"
        )
    return config


@dataclass
class GenerativePromptSet:
    """text: (n_t, d_lm) tokens or None; vision: per-layer (n_v, d_v) tokens (may be [])."""

    text: torch.Tensor | None
    vision: list[torch.Tensor]


class QFormerFusion(nn.Module):
    """The PFM at the Q-Former's cross-attention: queries attend to the prompt tokens.

    `tokens(text, vision_states)` builds the fusion keys once per batch:
    text (n_t, d_t) and vision_states (B, n_v, d_v) -> (B, n_t + n_v, width).
    `hook(keys)` is the `QueryFusion` the backbone applies after cross-attention layer l:
    h (B, Q, d_q) -> h + tanh(gate_l) * out_l(attn_l(query_l(h), keys)).
    """

    def __init__(
        self, config: PromptConfig, text_width: int, vision_width: int, slot: FusionSlot
    ) -> None:
        super().__init__()
        width = config.fusion_width
        self.text_in = nn.Linear(text_width, width)
        self.vision_in = nn.Linear(vision_width, width)
        self.norm = nn.LayerNorm(width)
        self.query_in = nn.ModuleList(nn.Linear(slot.width, width) for _ in range(slot.layers))
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(width, config.fusion_heads, batch_first=True)
            for _ in range(slot.layers)
        )
        self.out = nn.ModuleList(nn.Linear(width, slot.width) for _ in range(slot.layers))
        # tanh(0) = 0: the queries start as the frozen Q-Former's own
        self.gate = nn.Parameter(torch.zeros(slot.layers)) if config.fusion_gate else None

    def tokens(self, text: torch.Tensor, vision_states: torch.Tensor) -> torch.Tensor:
        dtype = self.text_in.weight.dtype
        batch = vision_states.shape[0]
        t = self.text_in(text.to(dtype)).unsqueeze(0).expand(batch, -1, -1)
        v = self.vision_in(vision_states.to(dtype))
        return self.norm(torch.cat([t, v], dim=1))

    def hook(self, keys: torch.Tensor) -> QueryFusion:
        def apply(layer: int, hidden: torch.Tensor) -> torch.Tensor:
            q = self.norm(self.query_in[layer](hidden.to(keys.dtype)))
            mixed, _ = self.attn[layer](q, keys, keys, need_weights=False)
            gate = torch.tanh(self.gate[layer]) if self.gate is not None else 1.0
            return hidden + (gate * self.out[layer](mixed)).to(hidden.dtype)

        return apply


class GenerativePrompts(nn.Module):
    """TPG + VPG (+ linear coupling or the Q-Former PFM) for one domain."""

    def __init__(self, config: PromptConfig, backbone: GenerativeBackbone, seed: int = 0) -> None:
        super().__init__()
        self.config = check_config(config, backbone)
        slots = backbone.slots
        with torch.random.fork_rng():  # initialisation depends on `seed` only
            torch.manual_seed(seed)
            self.text_tokens = (
                nn.Parameter(torch.randn(config.text_tokens, slots.text.width) * config.init_std)
                if config.has_text
                else None
            )
            vision = torch.randn(config.vision_depth, config.vision_tokens, slots.vision.width)
            if not config.has_vision:
                self.vision_tokens = None
            elif config.vision_learnable:
                self.vision_tokens = nn.Parameter(vision * config.init_std)
            else:
                self.register_buffer("vision_tokens", torch.zeros_like(vision))
            self.coupling = None
            if config.coupling == "linear":
                self.coupling = nn.Linear(slots.text.width, slots.vision.width, bias=False)
                nn.init.zeros_(self.coupling.weight)
            self.fusion = (
                QFormerFusion(config, slots.text.width, slots.vision.width, backbone.fusion_slot)
                if config.fusion
                else None
            )

    def forward(self) -> GenerativePromptSet:
        vision = list(self.vision_tokens.unbind(0)) if self.vision_tokens is not None else []
        if self.coupling is not None:  # the shared depth is 1: the LM takes text at its input
            vision[0] = vision[0] + self.coupling(self.text_tokens)
        return GenerativePromptSet(self.text_tokens, vision)

    def query_fusion(
        self, prompts: GenerativePromptSet, vision_states: torch.Tensor | None
    ) -> QueryFusion | None:
        """The PFM for this batch of images, or None where there is no PFM."""
        if self.fusion is None or vision_states is None or prompts.text is None:
            return None
        return self.fusion.hook(self.fusion.tokens(prompts.text, vision_states))

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
