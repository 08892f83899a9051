"""Per-channel pixel normalisation shared by the backbones whose processors use it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PixelNormalizer(nn.Module):
    """Sized RGB images -> (B, 3, H, W) float pixels, (x / 255 - mean) / std per channel.

    Its statistics are non-persistent buffers: they follow the backbone's device and stay
    out of its state dict (and so out of its weights' sha256)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Sequence[Image.Image]) -> torch.Tensor:
        batch = [torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0) for im in images]
        pixels = torch.stack(batch).permute(0, 3, 1, 2).to(self.mean.device)
        return (pixels - self.mean) / self.std
