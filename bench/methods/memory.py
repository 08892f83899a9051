"""Training memory measured the same way for every method: tensors autograd saves for one
backward (frozen weights and cached inputs excluded) + gradients and AdamW state."""

from __future__ import annotations

from collections.abc import Callable

import torch


class SavedTensorBytes:
    """Counts distinct storages autograd saves for backward, except `exclude`d ones."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.seen: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.exclude:
            self.seen[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def training_memory_mb(
    loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], frozen: list[torch.Tensor]
) -> float:
    """Activations saved for one backward of `loss_fn` + grads + AdamW state of `params`, in
    MB (as bench/step_cost.py counts them on CPU); the grads it leaves are cleared."""
    excluded = {t.untyped_storage().data_ptr() for t in frozen} - {
        p.untyped_storage().data_ptr() for p in params
    }
    counter = SavedTensorBytes(excluded)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        loss_fn().backward()
    for p in params:
        p.grad = None
    return (counter.total + 12 * sum(p.numel() for p in params)) / 2**20
