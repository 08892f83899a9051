"""A backbone family written outside mpt_core: the worked example of docs/architecture.md.

A family is one adapter module with `load(name, **options)` (a frozen backbone) and
`tiny(seed)` (a small random one for tests), registered once:

    FAMILIES.register("mean-pool", BackboneFamily("mean-pool", "tests.extending_family",
                                                   "tiny", "a CNN stem and mean-pooled tokens"))

The backbone says where prompts go (`slots`) and implements the dual-encoder protocol
(`mpt_core.backbones.base.Backbone`); presets, tasks, training, artifacts and serving then
work on it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from mpt_core.backbones.base import Backbone, PromptSlots, TowerSlot
from mpt_core.text import TextInputs, TextTokenizer, char_tokenizer

SIDE, WIDTH, EMBED = 32, 16, 24
SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")


class MeanPoolBackbone(Backbone):
    """Image: a frozen 4x4 convolution (the stem: 8x8 positions of WIDTH features), pooled
    by the visual prompts as attention queries (no prompt: the mean). Text: frozen token
    embeddings, text prompts in the placeholder positions, mean-pooled."""

    family = "mean-pool"

    def __init__(self, name: str, seed: int = 0) -> None:
        super().__init__(name)
        torch.manual_seed(seed)
        backend = char_tokenizer(SPECIALS)
        self.tokenizer = TextTokenizer(
            backend,
            start_token="[CLS]",
            end_token="[SEP]",
            pad_token="[PAD]",
            placeholder_token="[MASK]",
            max_length=48,
        )
        self.conv = nn.Conv2d(3, WIDTH, kernel_size=4, stride=4)
        self.image_out = nn.Linear(WIDTH, EMBED)
        self.words = nn.Embedding(backend.get_vocab_size(), WIDTH)
        self.text_out = nn.Linear(WIDTH, EMBED)
        self.freeze()

    @property
    def slots(self) -> PromptSlots:
        return PromptSlots(
            vision=TowerSlot(depth=1, width=WIDTH, kind="query"),
            text=TowerSlot(depth=1, width=WIDTH, kind="token"),
            feature_width=WIDTH,
            embed_dim=EMBED,
        )

    @property
    def embed_dim(self) -> int:
        return EMBED

    @property
    def logit_scale(self) -> float:
        return 10.0

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = [np.asarray(im.resize((SIDE, SIDE)), dtype=np.float32) / 255.0 for im in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(self.device)  # (B,3,H,W)

    def image_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.conv(pixels).flatten(2).transpose(1, 2)  # (B, P, WIDTH), no prompt here

    def encode_image_tokens(self, stem, prompts=None) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_prompts("vision", prompts)
        if prompts:
            attention = torch.softmax(stem @ prompts[0].T, dim=1)  # (B, P, n)
            pooled = (attention.transpose(1, 2) @ stem).mean(1)  # (B, WIDTH)
        else:
            pooled = stem.mean(1)
        return self.image_out(pooled), stem

    def encode_image(self, stem: torch.Tensor, prompts=None) -> torch.Tensor:
        return self.encode_image_tokens(stem, prompts)[0]

    def tokenize(self, texts: Sequence[str], n_prompt_tokens: int = 0) -> TextInputs:
        return self.tokenizer(texts, n_prompt_tokens)

    def encode_text(self, inputs: TextInputs, prompts=None) -> torch.Tensor:
        self.check_prompts("text", prompts)
        inputs = inputs.to(self.device)
        x = self.words(inputs.input_ids)  # (N, L, WIDTH)
        if prompts:
            n = inputs.n_prompt_tokens
            prompt = prompts[0].unsqueeze(0).expand(len(x), -1, -1)  # (N, n, WIDTH)
            x = torch.cat([x[:, :1], prompt, x[:, 1 + n :]], dim=1)
        mask = inputs.attention_mask.unsqueeze(-1).to(x.dtype)
        return self.text_out((x * mask).sum(1) / mask.sum(1))


def load(name: str = "tiny", **options: object) -> MeanPoolBackbone:
    if name != "tiny" or options:
        raise ValueError(f"mean-pool has one backbone, 'tiny', without options; got {name!r}")
    return tiny()


def tiny(seed: int = 0) -> MeanPoolBackbone:
    return MeanPoolBackbone("tiny", seed)
