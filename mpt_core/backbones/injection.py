"""Deep token prompts for transformer towers, through forward hooks.

Hooks leave the wrapped model's code untouched, so the same mechanism serves CLIP,
BERT and any other transformers encoder, and with no prompts active the model computes
exactly what it computes without us (the CLIP parity test relies on that).

Layer 0 prompts enter through `entry` (they replace placeholder token embeddings, or are
appended to the patch sequence); layer l >= 1 prompts replace the same positions in the
input of encoder layer l, so the sequence length stays fixed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

Mode = Literal["replace_after_start", "append"]


def _expand(prompt: torch.Tensor, batch: int) -> torch.Tensor:
    """(n, d) or (B, n, d) -> (B, n, d)."""
    return prompt.unsqueeze(0).expand(batch, -1, -1) if prompt.dim() == 2 else prompt


class DeepPromptInjector:
    """Installs hooks on an entry module and on encoder layers; active only inside `use()`."""

    def __init__(self, entry: nn.Module, layers: Sequence[nn.Module], mode: Mode) -> None:
        self.mode = mode
        self._prompts: Sequence[torch.Tensor] | None = None
        entry.register_forward_hook(self._entry_hook)
        for index, layer in enumerate(layers):
            if index > 0:
                layer.register_forward_pre_hook(self._make_layer_hook(index), with_kwargs=True)

    @contextmanager
    def use(self, prompts: Sequence[torch.Tensor] | None) -> Iterator[None]:
        previous, self._prompts = self._prompts, (list(prompts) if prompts else None)
        try:
            yield
        finally:
            self._prompts = previous

    def _place(self, hidden: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        prompt = _expand(prompt.to(hidden.dtype), hidden.shape[0])
        n = prompt.shape[1]
        if self.mode == "replace_after_start":
            return torch.cat([hidden[:, :1], prompt, hidden[:, 1 + n :]], dim=1)
        return torch.cat([hidden[:, :-n], prompt], dim=1)

    def _entry_hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if not self._prompts:
            return output
        prompt = self._prompts[0]
        if self.mode == "append":
            prompt = _expand(prompt.to(output.dtype), output.shape[0])
            return torch.cat([output, prompt], dim=1)
        return self._place(output, prompt)

    def _make_layer_hook(self, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            if not self._prompts or index >= len(self._prompts):
                return None
            if args:
                return (self._place(args[0], self._prompts[index]), *args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = self._place(kwargs["hidden_states"], self._prompts[index])
            return args, kwargs

        return hook
