"""The protocol of a frozen *generative* vision-language backbone (image -> text).

A dual encoder (`base.Backbone`) scores texts against images in one embedding space; a
generative backbone writes text: a vision tower, a bridge that turns image tokens into a
few "query" embeddings in the language model's input space (BLIP-2's Q-Former), and a
frozen language model that continues `[queries] [start] [text prompt tokens] [prompt]`.

Same rules as the dual encoders: nothing in it trains, it never leaves eval mode, and its
identity is family + checkpoint name + sha256 of its weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from PIL import Image
from tokenizers import Tokenizer

from .base import FrozenBackbone, PromptSlots

#: (cross-attention layer index, query states (B, Q, d_q)) -> new query states (B, Q, d_q)
QueryFusion = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FusionSlot:
    """Where a prompt fusion module meets the image: the bridge's cross-attention layers.

    layers: how many cross-attention layers the queries pass through.
    width: width of one query state.
    """

    layers: int
    width: int


@dataclass(frozen=True)
class VisionOutput:
    """The vision tower's output: every token's last state (B, N + n_v, d_v), which the
    bridge reads, and the states at the n_v visual prompt positions (B, n_v, d_v) (None
    without visual prompts)."""

    tokens: torch.Tensor
    prompt_states: torch.Tensor | None


class GenerativeTokenizer:
    """Text <-> token ids for the language model, without any special token added.

    bos_id: the start token a decoder-only model continues from (None: encoder-decoder).
    eos_id: the token a target ends with; stop_ids: every id that ends generation.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        bos_id: int | None,
        eos_id: int,
        pad_id: int,
        stop_ids: Sequence[int] | None = None,
    ) -> None:
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.stop_ids = tuple(stop_ids) if stop_ids else (eos_id,)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encoded]

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Token ids (as `GenerativeBackbone.generate` returns them: already ending before
        the first stop token) -> text, special tokens dropped, stripped."""
        return [self.tokenizer.decode(list(row), skip_special_tokens=True).strip() for row in ids]


class GenerativeBackbone(FrozenBackbone, ABC):
    """A frozen image-to-text model. Subclasses wrap real models; nothing in them trains.

    Image path: `preprocess` (PIL -> pixels) -> `encode_image(pixels, vision prompts)` ->
    `query_embeds(tokens, fusion)` (B, Q, d_lm). Text path: `lm_loss` (teacher forcing)
    and `generate`, both given the query embeddings, the text prompt tokens and token ids.
    """

    family: ClassVar[str]
    kind: ClassVar[str] = "generative"
    centers_images: ClassVar[bool] = False  # no shared embedding space to centre

    def __init__(self, name: str, tokenizer: GenerativeTokenizer) -> None:
        super().__init__(name)
        self.tokenizer = tokenizer

    # --- description -------------------------------------------------------------
    @property
    @abstractmethod
    def slots(self) -> PromptSlots:
        """vision: the ViT's token slots; text: the language model's input (depth 1)."""

    @property
    @abstractmethod
    def fusion_slot(self) -> FusionSlot: ...

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Width of the query embeddings handed to the language model (its hidden size)."""

    @property
    @abstractmethod
    def num_queries(self) -> int: ...

    @property
    @abstractmethod
    def is_encoder_decoder(self) -> bool: ...

    # --- encoding ------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> (B, 3, H, W) float pixels as the vision tower expects them."""

    @abstractmethod
    def encode_image(
        self, pixels: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> VisionOutput:
        """Pixels and per-layer visual prompts [(n_v, d_v)] -> image tokens + prompt states."""

    @abstractmethod
    def query_embeds(
        self, image_tokens: torch.Tensor, fusion: QueryFusion | None = None
    ) -> torch.Tensor:
        """(B, N, d_v) image tokens -> (B, Q, d_lm) query embeddings for the language model;
        `fusion` is applied to the query states after each cross-attention layer."""

    @abstractmethod
    def lm_loss(
        self,
        queries: torch.Tensor,
        text_prompt: torch.Tensor | None,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]],
    ) -> torch.Tensor:
        """Teacher-forced cross-entropy of each target (+ end token) after its prompt,
        averaged over target tokens. queries (B, Q, d_lm), text_prompt (n_t, d_lm)."""

    @abstractmethod
    def generate(
        self,
        queries: torch.Tensor,
        text_prompt: torch.Tensor | None,
        prompt_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        num_beams: int = 1,
    ) -> list[list[int]]:
        """Greedy (num_beams=1) or beam-search continuation ids of each prompt, each row
        ending before its first stop token (`tokenizer.stop_ids`), which it does not hold."""

    def check_prompts(self, prompts: Sequence[torch.Tensor] | None) -> None:
        if not prompts:
            return
        slot = self.slots.vision
        if len(prompts) > slot.depth:
            raise ValueError(
                f"{len(prompts)} vision prompt layers given; {self.family} accepts {slot.depth}"
            )
        for layer, p in enumerate(prompts):
            if p.shape[-1] != slot.width:
                raise ValueError(
                    f"vision prompt of layer {layer} has width {p.shape[-1]}; "
                    f"{self.family} expects {slot.width}"
                )
