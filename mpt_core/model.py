"""`PromptedModel`: a shared frozen backbone + one domain's prompts + its task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .backbones.base import Backbone
from .backbones.generative import GenerativeBackbone
from .data import Example, ImageSource, load_image
from .prompts import MultimodalPrompts, PromptConfig, preset_config

if TYPE_CHECKING:
    from .generative.model import GenerativeModel
    from .tasks.base import Task


class PromptedModel(nn.Module):
    """Only `prompts` (and the image centre buffer) belong to this module.

    The backbone is held, not registered: `parameters()`, `state_dict()` and the
    optimizer see the prompts alone, and one backbone object serves many domains.
    """

    def __init__(
        self,
        backbone: Backbone,
        prompts: MultimodalPrompts,
        task: Task,
        preset: str | None = None,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)
        self.prompts = prompts
        self.task = task
        self.preset = preset
        self.register_buffer("image_center", torch.zeros(backbone.embed_dim))
        self.centered = False
        self._text_cache: dict[str, torch.Tensor] = {}
        self.to(backbone.device)

    # --- what trains ---------------------------------------------------------------
    @property
    def config(self) -> PromptConfig:
        return self.prompts.config

    def num_trainable(self) -> int:
        return self.prompts.num_trainable()

    def trainable_fraction(self) -> float:
        """Trainable prompt parameters / backbone parameters."""
        return self.num_trainable() / self.backbone.num_parameters()

    @property
    def text_frozen(self) -> bool:
        return not self.config.has_text

    @property
    def vision_frozen(self) -> bool:
        return not self.config.has_vision

    # --- images ---------------------------------------------------------------------
    @torch.no_grad()
    def prepare_images(self, images: Sequence[ImageSource], batch_size: int = 64) -> torch.Tensor:
        """What a training step starts from, computed once: the stem output, or, when no
        visual prompt exists, the finished (uncentred) image embeddings."""
        out = []
        for start in range(0, len(images), batch_size):
            chunk = [load_image(x) for x in images[start : start + batch_size]]
            stem = self.backbone.image_stem(self.backbone.preprocess(chunk))
            out.append(self.backbone.encode_image(stem) if self.vision_frozen else stem)
        return torch.cat(out)

    def embed_prepared(
        self, prepared: torch.Tensor, vision: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Prepared images -> (B, D) centred, L2-normalised embeddings."""
        if not self.vision_frozen:
            if vision is None:
                vision = self.prompts().vision
            prepared = self.backbone.encode_image(prepared, vision)
        return F.normalize(prepared - self.image_center, dim=-1)

    def encode_images(self, images: Sequence[ImageSource]) -> torch.Tensor:
        return self.embed_prepared(self.prepare_images(images))

    @torch.no_grad()
    def calibrate_center(self, prepared: torch.Tensor) -> None:
        """Set the image centre to the mean embedding of the domain's (unlabelled) images.

        Used where the backbone asks for it (`centers_images`): the shipped bridge maps
        all images near one point, and removing the domain's mean is what separates them.
        """
        self.image_center.zero_()
        raw = []
        for start in range(0, len(prepared), 256):
            chunk = prepared[start : start + 256]
            raw.append(
                chunk
                if self.vision_frozen
                else self.backbone.encode_image(chunk, self.prompts().vision)
            )
        self.image_center.copy_(torch.cat(raw).mean(0))
        self.centered = True

    # --- texts ----------------------------------------------------------------------
    def embed_texts(
        self, texts: Sequence[str], text: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(N, D) L2-normalised text embeddings; cached per text when no text prompt exists."""
        if self.text_frozen:
            missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
            if missing:
                with torch.no_grad():
                    emb = self.backbone.encode_text(self.backbone.tokenize(missing))
                self._text_cache.update(zip(missing, F.normalize(emb, dim=-1), strict=True))
            return torch.stack([self._text_cache[t] for t in texts])
        if text is None:
            text = self.prompts().text
        inputs = self.backbone.tokenize(texts, self.config.text_tokens).to(self.backbone.device)
        return F.normalize(self.backbone.encode_text(inputs, text), dim=-1)

    @property
    def logit_scale(self) -> float:
        return self.backbone.logit_scale

    # --- task-level -----------------------------------------------------------------
    def predict(self, examples: Sequence[Example]) -> list[str]:
        """Task predictions (class name, caption or answer) for each example."""
        with torch.no_grad():
            emb = self.encode_images([e.image for e in examples])
            return self.task.predict(self, emb, examples)

    def extra_repr(self) -> str:
        return f"preset={self.preset}, backbone={self.backbone.identity}, task={self.task.name}"


def build_prompts(
    backbone: Backbone | GenerativeBackbone,
    preset: str,
    task: Task,
    *,
    seed: int = 0,
    **overrides: object,
) -> PromptedModel | GenerativeModel:
    """Prompts of `preset` (with config field overrides) for `task` on `backbone`.

    >>> model = build_prompts(load_backbone("shipped"), "mpt", ClassificationTask(["cat", "dog"]))
    >>> captioner = build_prompts(load_backbone("hf-blip2", path), "mpt", CaptioningTask())
    """
    from .support import check_supported  # late: it imports the task registry

    check_supported(backbone.family, backbone.kind, preset, task.name, task.backbone_kind)
    config = preset_config(preset, backbone.slots, **overrides)
    if isinstance(backbone, GenerativeBackbone):  # prompts around a language model
        from .generative.model import build_generative

        return build_generative(backbone, config, task, preset, seed)
    return PromptedModel(backbone, MultimodalPrompts(config, backbone.slots, seed), task, preset)
