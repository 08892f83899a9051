"""Prompt configuration: one dataclass, validated against the backbone's prompt slots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..backbones.base import PromptSlots
from ..errors import ConfigError


@dataclass
class PromptConfig:
    """How many prompt tokens go where, and how the two towers' prompts are coupled."""

    text_tokens: int = 4
    """Learnable text context tokens per layer (TPG); 0 = no text prompts."""
    text_depth: int = 1
    """Layers of the text tower that get (replaced) prompt tokens; 1 = input only."""
    vision_tokens: int = 4
    """Visual prompt tokens (ViT) or pooling queries (CNN) per layer (VPG); 0 = none."""
    vision_depth: int = 1
    """Layers of the image tower that get prompt tokens (a CNN tower has one slot)."""
    coupling: str = "none"
    """How text and visual prompts interact: one of `COUPLINGS` (none, linear, cross-attention)."""
    fusion_width: int = 64
    """Shared width the PFM projects both prompt sets into (cross-attention coupling)."""
    fusion_heads: int = 4
    """Attention heads of the PFM; must divide fusion_width."""
    fusion_gate: bool = True
    """Feed the coupling back through a learnable gate that starts at 0 (False: gate fixed at 1)."""
    vision_learnable: bool = True
    """False: visual prompts have no parameters of their own and come only from the coupling."""
    init_std: float = 0.02
    """Standard deviation of the initial prompt tokens (CNN pooling queries start at 0)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown prompt config fields {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**data)

    @property
    def has_text(self) -> bool:
        return self.text_tokens > 0

    @property
    def has_vision(self) -> bool:
        return self.vision_tokens > 0

    @property
    def shared_depth(self) -> int:
        """Layers where both towers have prompts: where a coupling acts."""
        return min(
            self.text_depth if self.has_text else 0, self.vision_depth if self.has_vision else 0
        )

    def validate(self, slots: PromptSlots) -> PromptConfig:
        from .coupling import COUPLINGS  # late: coupling imports this module

        COUPLINGS.get(self.coupling)
        for field, value in (
            ("text_tokens", self.text_tokens),
            ("vision_tokens", self.vision_tokens),
            ("text_depth", self.text_depth),
            ("vision_depth", self.vision_depth),
        ):
            if value < 0:
                raise ConfigError(f"prompt config {field}={value}: must be >= 0")
        if not (self.has_text or self.has_vision):
            raise ConfigError(
                "prompt config has no prompts: set text_tokens or vision_tokens above 0"
            )
        for tower, tokens, depth in (
            ("text", self.text_tokens, self.text_depth),
            ("vision", self.vision_tokens, self.vision_depth),
        ):
            slot = getattr(slots, tower)
            if tokens and not 1 <= depth <= slot.depth:
                raise ConfigError(
                    f"prompt config {tower}_depth={depth}: this backbone's {tower} tower takes "
                    f"prompts in 1..{slot.depth} layers"
                )
        if self.coupling != "none" and self.shared_depth == 0:
            raise ConfigError(
                f"coupling {self.coupling!r} needs prompts in both towers; "
                "set text_tokens and vision_tokens above 0 or use coupling='none'"
            )
        if self.coupling == "linear" and self.text_tokens != self.vision_tokens:
            raise ConfigError(
                f"linear coupling maps each text token to a visual token: text_tokens "
                f"({self.text_tokens}) must equal vision_tokens ({self.vision_tokens})"
            )
        if self.coupling == "cross-attention" and self.fusion_width % self.fusion_heads:
            raise ConfigError(
                f"fusion_width={self.fusion_width} is not divisible by "
                f"fusion_heads={self.fusion_heads}"
            )
        if not self.vision_learnable and self.coupling == "none" and self.has_vision:
            raise ConfigError(
                "vision_learnable=False leaves visual prompts with nothing to learn from; "
                "use a coupling or set vision_tokens=0"
            )
        return self
