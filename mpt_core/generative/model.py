"""`GenerativeModel`: a shared frozen generative backbone + one domain's prompts + its task.

It offers the trainer and the artifacts what `PromptedModel` offers them (prepare the
images once, embed a prepared batch, `prompts()`, `predict`, `state_dict`), so `fit`,
`evaluate`, `save_prompts`, `load_prompts` and `PromptServer` serve both. What a
prepared batch embeds into is the language model's input: (B, Q, d_lm) query embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..backbones.generative import GenerativeBackbone
from ..data import Example, ImageSource, group_rows
from ..features import Prediction
from ..holder import PromptsHolder
from ..prompts.config import PromptConfig
from .prompts import GenerativePrompts, GenerativePromptSet

if TYPE_CHECKING:
    from ..tasks.base import Task

GENERATION_BATCH = 32


class GenerativeModel(PromptsHolder):
    """Only `prompts` belong to this module; the backbone is held, not registered, so
    `parameters()`, `state_dict()` and the optimizer see the prompts alone."""

    centered = False  # no shared embedding space, nothing to centre

    def __init__(
        self,
        backbone: GenerativeBackbone,
        prompts: GenerativePrompts,
        task: Task,
        preset: str | None = None,
    ) -> None:
        super().__init__(backbone, prompts, task, preset)
        self.to(backbone.device)

    # --- what trains ---------------------------------------------------------------
    @property
    def text_frozen(self) -> bool:
        return not self.config.has_text

    @property
    def vision_frozen(self) -> bool:
        """No visual prompt (and so no fusion): the whole image side is frozen."""
        return not self.config.has_vision

    # --- images ---------------------------------------------------------------------
    @property
    def prepared_output(self) -> str:
        """`pixels` (the ViT runs under the visual prompts every step), or `queries`: the
        finished query embeddings (B, Q, d_lm), when no visual prompt exists."""
        return "queries" if self.vision_frozen else "pixels"

    def prepare_chunk(self, images: list[Any]) -> torch.Tensor:
        pixels = self.backbone.preprocess(images)
        if self.vision_frozen:
            return self.backbone.query_embeds(self.backbone.encode_image(pixels).tokens)
        return pixels

    def embed_prepared(
        self, prepared: torch.Tensor, prompts: GenerativePromptSet | None = None
    ) -> torch.Tensor:
        """Prepared images -> (B, Q, d_lm) query embeddings for the language model.
        `prompts`: this domain's prompts, when the caller computed them already."""
        if self.vision_frozen:
            return prepared
        prompts = prompts if prompts is not None else self.prompts()
        image = self.backbone.encode_image(prepared, prompts.vision)
        fusion = self.prompts.query_fusion(prompts, image.prompt_states)
        return self.backbone.query_embeds(image.tokens, fusion)

    def pop_auxiliary_loss(self) -> float:
        """No regularising terms on a generative backbone (the trainer asks every model)."""
        return 0.0

    def encode_images(self, images: Sequence[ImageSource]) -> torch.Tensor:
        return self.embed_prepared(self.prepare_images(images))

    # --- text -----------------------------------------------------------------------
    def _prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        return self.backbone.tokenizer.encode(prompts)

    def _target_ids(self, prompts: Sequence[str], targets: Sequence[str]) -> list[list[int]]:
        # A decoder-only LM reads the target right after the prompt text: its tokenizer
        # (byte-level BPE) marks a new word by a leading space, as in "Answer: yes".
        sep = "" if self.backbone.is_encoder_decoder else " "
        return self.backbone.tokenizer.encode(
            [(sep if p else "") + t for p, t in zip(prompts, targets, strict=True)]
        )

    def lm_loss(
        self, queries: torch.Tensor, prompts: Sequence[str], targets: Sequence[str]
    ) -> torch.Tensor:
        """Teacher-forced cross-entropy of `targets` given the images and text prompts."""
        return self.backbone.lm_loss(
            queries,
            self.prompts().text,
            self._prompt_ids(prompts),
            self._target_ids(prompts, targets),
        )

    @torch.no_grad()
    def generate(
        self,
        queries: torch.Tensor,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        num_beams: int = 1,
        batch_size: int = GENERATION_BATCH,
    ) -> list[str]:
        """Generated text for each (query embeddings, prompt) pair, greedy or beam search."""
        text = self.prompts().text
        out: list[str] = []
        for start in range(0, len(prompts), batch_size):
            ids = self.backbone.generate(
                queries[start : start + batch_size],
                text,
                self._prompt_ids(prompts[start : start + batch_size]),
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
            )
            out += self.backbone.tokenizer.decode(ids)
        return out


class GenerativeKind:
    """The generative kind (`kinds.KINDS["generative"]`): `GenerativeModel` over
    `GenerativePrompts`; each domain generates for its own rows."""

    def build(
        self,
        backbone: GenerativeBackbone,
        config: PromptConfig,
        task: Task,
        preset: str | None,
        seed: int,
    ) -> GenerativeModel:
        return GenerativeModel(backbone, self.prompt_module(backbone, config, seed), task, preset)

    def prompt_module(
        self, backbone: GenerativeBackbone, config: PromptConfig, seed: int = 0
    ) -> GenerativePrompts:
        return GenerativePrompts(config, backbone, seed)

    def predict(
        self,
        items: Sequence[tuple[GenerativeModel, Example]],
        rows: list[int],
        out: list[Prediction | None],
        prepared: Sequence[torch.Tensor] | None = None,
        features: list[torch.Tensor | None] | None = None,
    ) -> None:
        for model_rows in group_rows([id(items[i][0]) for i in rows], rows).values():
            model = items[model_rows[0]][0]
            examples = [items[i][1] for i in model_rows]
            if prepared is None:
                batch = model.prepare_images([e.image for e in examples])
            else:
                batch = torch.stack([prepared[i] for i in model_rows])
            batch = batch.to(model.backbone.device)
            texts = model.task.predict(model, model.embed_prepared(batch), examples)
            for k, (i, text) in enumerate(zip(model_rows, texts, strict=True)):
                out[i] = Prediction(text, {}, None)
                if features is not None:
                    features[i] = batch[k]


KIND = GenerativeKind()
