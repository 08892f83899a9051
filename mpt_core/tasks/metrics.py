"""Metrics shared by tasks. Inputs are plain tensors; outputs plain floats."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred == target).float().mean()) if len(target) else 0.0


def per_class_accuracy(
    pred: torch.Tensor, target: torch.Tensor, names: Sequence[str]
) -> dict[str, float]:
    """Accuracy over the examples of each class present in `target`."""
    out = {}
    for index, name in enumerate(names):
        mask = target == index
        if mask.any():
            out[name] = float((pred[mask] == index).float().mean())
    return out


def macro_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean F1 over classes that occur in the targets or predictions."""
    scores = []
    for c in range(num_classes):
        tp = int(((pred == c) & (target == c)).sum())
        fp = int(((pred == c) & (target != c)).sum())
        fn = int(((pred != c) & (target == c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def recall_at_k(
    scores: torch.Tensor, positives: torch.Tensor, ks: Sequence[int]
) -> dict[int, float]:
    """scores (Q, G); positives (Q, G) bool. Share of queries with a positive in the top k."""
    order = scores.argsort(dim=1, descending=True)
    hits = positives.gather(1, order)  # (Q, G) positives in rank order
    first = torch.where(
        hits.any(1), hits.float().argmax(1), torch.full_like(hits[:, 0], 10**9, dtype=torch.long)
    )
    return {k: float((first < k).float().mean()) for k in ks}
