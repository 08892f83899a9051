"""The image-conditioned parts: the VPG's generator, the PFM and the residual adapters.

Everything here acts inside or after the towers, never by running the text tower per
image: text embeddings stay a function of (texts, prompts), computed once per step in
training and once per (domain, version) at inference.

- `ImagePromptGenerator` (VPG): n learned queries attend over the image's own frozen
  per-position features (CNN feature-map positions, ViT patch tokens); each query's
  pooled feature goes through a low-rank projection into the embedding space. One set of
  n prompt tokens per image.
- `PromptFusion` (PFM): every candidate text embedding (class, answer, caption) attends
  to one image's prompt tokens; the result is added back through a tanh gate that
  starts at 0, giving per-image candidate embeddings (B, N, D).
- `GatedResidual`: z' = z + ratio * tanh(g) * delta, g starting at 0 (CLIP-Adapter's
  residual ratio, started from the frozen embedding).
- `TextAdapter`: a bottleneck MLP on text embeddings, input-independent (cacheable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ImagePromptGenerator(nn.Module):
    """(B, P, C) frozen per-position features -> (B, n, D) image-conditioned prompt tokens."""

    def __init__(self, tokens: int, feature_width: int, embed_dim: int, rank: int, std: float):
        super().__init__()
        # Random, not zero: identical queries would stay identical (same gradient each).
        self.queries = nn.Parameter(torch.randn(tokens, feature_width) * std)
        self.down = nn.Linear(feature_width, rank)
        self.norm = nn.LayerNorm(rank)
        self.up = nn.Linear(rank, embed_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # No 1/sqrt(C) scaling, as in the CNN pooling queries (bench/pooling.py): with it
        # the queries hardly move off average pooling in a few-shot budget.
        scores = features @ self.queries.to(features.dtype).T  # (B, P, n)
        pooled = scores.softmax(dim=1).transpose(1, 2) @ features  # (B, n, C)
        pooled = F.layer_norm(pooled, pooled.shape[-1:])  # feature scale differs per family
        return self.up(self.norm(self.down(pooled)))  # (B, n, D)


def _gate(gate: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.tanh(gate) if gate is not None else like.new_ones(1)


class GatedResidual(nn.Module):
    """z (..., D) + ratio * tanh(g) * delta (..., D), then L2-normalised; g starts at 0."""

    def __init__(self, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return F.normalize(z + self.ratio * torch.tanh(self.gate) * delta, dim=-1)


class TextAdapter(nn.Module):
    """(N, D) text embeddings -> (N, D): t + ratio * tanh(g) * up(relu(down(t))), normalised."""

    def __init__(self, embed_dim: int, rank: int, ratio: float) -> None:
        super().__init__()
        self.down = nn.Linear(embed_dim, rank)
        self.up = nn.Linear(rank, embed_dim)
        self.residual = GatedResidual(ratio)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.residual(text, self.up(F.relu(self.down(text))))


class PromptFusion(nn.Module):
    """The PFM: candidates (N, D) attend to each image's prompt tokens (B, n, D).

    Returns (B, N, D) L2-normalised per-image candidate embeddings. The attention is
    (B, heads, N, n): for 10 classes and 4 tokens, a few thousand products per image.
    """

    def __init__(self, embed_dim: int, width: int, heads: int, gated: bool) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(embed_dim, width)
        self.key_value = nn.Linear(embed_dim, 2 * width)
        self.norm = nn.LayerNorm(embed_dim)
        self.out = nn.Linear(width, embed_dim)
        # tanh(0) = 0: fusion starts switched off (the candidates' own embeddings)
        self.gate = nn.Parameter(torch.zeros(1)) if gated else None

    def forward(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h = self.heads
        q = self.query(text).unflatten(-1, (h, -1))  # (N, h, w/h)
        k, v = (
            self.key_value(self.norm(tokens)).unflatten(-1, (2, h, -1)).unbind(2)
        )  # (B, n, h, w/h)
        att = torch.einsum("nhd,bmhd->bhnm", q, k) / q.shape[-1] ** 0.5
        mixed = torch.einsum("bhnm,bmhd->bnhd", att.softmax(-1), v).flatten(2)  # (B, N, w)
        return F.normalize(text + _gate(self.gate, text) * self.out(mixed), dim=-1)
