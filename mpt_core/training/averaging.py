"""Stochastic weight averaging of the prompts over the late epochs of a fit.

Why: the epoch with the best validation metric is chosen on a validation split that is
often a few dozen images, so which epoch wins is partly luck, and a retrain that changes
one image can land several points away. The uniform average of the late epochs' prompts
depends on no such choice (bench/stability.py measures both)."""

from __future__ import annotations

import torch
from torch import nn


class LateAverage:
    """Running uniform average of `model`'s trainable parameters over the epochs after the
    first half of an `epochs` budget (epochs `epochs // 2 + 1` to `epochs`). Sums in float64
    in a fixed order, so the same run gives the same average bit for bit."""

    def __init__(self, model: nn.Module, epochs: int) -> None:
        self.first = epochs // 2 + 1
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.count = 0
        self._sums: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, epoch: int, model: nn.Module) -> None:
        """Count `model`'s parameters as they are at the end of `epoch` (1-based), if that
        epoch is in the averaged half."""
        if epoch < self.first:
            return
        params = dict(model.named_parameters())
        for name in self.names:
            value = params[name].detach().to(torch.float64)
            if name in self._sums:
                self._sums[name] += value
            else:
                self._sums[name] = value.clone()
        self.count += 1

    @torch.no_grad()
    def load_into(self, model: nn.Module) -> None:
        """Set `model`'s trainable parameters to the average (the other state is left as
        it is)."""
        if not self.count:
            raise RuntimeError(
                f"no epoch averaged yet: averaging starts at epoch {self.first}; "
                "call add() for the epochs of the second half first"
            )
        params = dict(model.named_parameters())
        for name in self.names:
            params[name].copy_((self._sums[name] / self.count).to(params[name].dtype))
