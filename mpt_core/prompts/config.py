"""Prompt configuration: one dataclass, validated against the backbone's prompt slots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..backbones.base import PromptSlots
from ..errors import ConfigError
from .coupling import COUPLINGS


@dataclass
class PromptConfig:
    """How many prompt tokens go where, how the static prompts are coupled, and which
    image-conditioned parts (generator, residual, PFM) and text-side parts exist."""

    text_tokens: int = 4
    """Learnable text context tokens per layer (TPG); 0 = no text prompts."""
    text_depth: int = 1
    """Layers of the text tower that get (replaced) prompt tokens; 1 = input only."""
    vision_tokens: int = 4
    """Static visual prompt tokens (ViT) or pooling queries (CNN) per layer (VPG); 0 = none."""
    vision_depth: int = 1
    """Layers of the image tower that get prompt tokens (a CNN tower has one slot)."""
    coupling: str = "none"
    """How the static text and visual prompts interact: one of `COUPLINGS` (none, linear)."""
    vision_learnable: bool = True
    """False: static visual prompts have no parameters of their own, only the coupling's."""
    image_tokens: int = 0
    """Image-conditioned visual prompt tokens (the VPG's generator): learned queries attend
    over the image's own frozen per-position features (CNN map positions, ViT patch
    tokens) and are projected into the embedding space, one set per image; 0 = none."""
    generator_rank: int = 64
    """Bottleneck width of the generator's projection from feature width to embedding width."""
    image_residual: float = 0.0
    """Weight of the image-conditioned residual on the image embedding:
    z' = z + image_residual * tanh(g) * mean(image tokens), g starting at 0 (CLIP-Adapter's
    residual ratio, fed by the generator); 0 = no residual."""
    fusion: bool = False
    """Per-input prompt fusion (PFM): every candidate text embedding (class, answer,
    caption) attends to this image's prompt tokens, fed back through a gate that starts at
    0. Acts after the text tower, so text embeddings stay a function of the texts alone."""
    fusion_width: int = 64
    """Shared width the PFM projects text embeddings and image tokens into."""
    fusion_heads: int = 4
    """Attention heads of the PFM; must divide fusion_width."""
    fusion_gate: bool = True
    """Feed the fusion back through a learnable gate that starts at 0 (False: gate fixed at 1)."""
    text_residual: float = 0.0
    """Weight of a residual bottleneck adapter on the text embeddings after the text tower
    (image-independent, so cacheable per text): t' = t + text_residual * tanh(g) * A(t)."""
    text_anchor: float = 0.0
    """Weight of a loss pulling prompted text embeddings toward the frozen tower's
    (KgCoOp): text_anchor * mean ||t - t_frozen||^2; 0 = off."""
    init_std: float = 0.02
    """Standard deviation of the initial prompt tokens and generator queries (CNN pooling
    queries start at 0)."""

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
    def has_generator(self) -> bool:
        return self.image_tokens > 0

    @property
    def image_conditioned(self) -> bool:
        """Some prompt depends on the input image (not only on learned parameters)."""
        return self.has_generator and (self.image_residual > 0 or self.fusion)

    @property
    def shared_depth(self) -> int:
        """Layers where both towers have prompts: where a coupling acts."""
        return min(
            self.text_depth if self.has_text else 0, self.vision_depth if self.has_vision else 0
        )

    def validate(self, slots: PromptSlots) -> PromptConfig:
        COUPLINGS.get(self.coupling)
        for field, value in (
            ("text_tokens", self.text_tokens),
            ("vision_tokens", self.vision_tokens),
            ("text_depth", self.text_depth),
            ("vision_depth", self.vision_depth),
            ("image_tokens", self.image_tokens),
            ("image_residual", self.image_residual),
            ("text_residual", self.text_residual),
            ("text_anchor", self.text_anchor),
        ):
            if value < 0:
                raise ConfigError(f"prompt config {field}={value}: must be >= 0")
        if not (self.has_text or self.has_vision or self.image_conditioned or self.text_residual):
            raise ConfigError(
                "prompt config has no prompts: set text_tokens, vision_tokens or image_tokens "
                "(with image_residual or fusion) above 0"
            )
        self._validate_generator(slots)
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
        if self.text_anchor and not self.has_text:
            raise ConfigError(
                "text_anchor pulls prompted text embeddings toward the frozen ones: it needs "
                "text prompts (text_tokens > 0)"
            )
        if not self.vision_learnable and self.coupling == "none" and self.has_vision:
            raise ConfigError(
                "vision_learnable=False leaves visual prompts with nothing to learn from; "
                "use a coupling or set vision_tokens=0"
            )
        return self

    def _validate_generator(self, slots: PromptSlots) -> None:
        if self.has_generator and not (self.image_residual > 0 or self.fusion):
            raise ConfigError(
                f"image_tokens={self.image_tokens} feed nothing: set image_residual > 0 or "
                "fusion=True, or image_tokens=0"
            )
        if self.image_residual > 0 and not self.has_generator:
            raise ConfigError(
                "image_residual acts on the image's own prompt tokens: set image_tokens > 0"
            )
        if self.fusion and not self.has_generator and slots.feature_width:
            # a backbone with per-position features fuses with the generator's tokens; one
            # without (a generative backbone) fuses where its modalities meet (Q-Former)
            raise ConfigError(
                "fusion acts on the image's own prompt tokens on this backbone: set "
                "image_tokens > 0"
            )
        if self.has_generator and not slots.feature_width:
            raise ConfigError(
                "this backbone exposes no per-position image features for the generator; "
                "use image_tokens=0"
            )
        if self.has_generator and self.generator_rank < 1:
            raise ConfigError(f"generator_rank={self.generator_rank}: must be >= 1")
        if self.fusion and (self.fusion_width < 1 or self.fusion_width % self.fusion_heads):
            raise ConfigError(
                f"fusion_width={self.fusion_width} is not divisible by "
                f"fusion_heads={self.fusion_heads}"
            )
