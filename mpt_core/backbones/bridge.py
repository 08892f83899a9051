"""The frozen image->text bridge of the `shipped` backbone, derived from shipped weights only.

The image tower's ImageNet classifier gives logits `A f + b` for pooled CNN features f;
the text tower embeds the 1000 ImageNet class names as rows of T. We look for the text
space point z(f) whose similarities to the class-name embeddings reproduce the logits:

    z(f) = argmin_z ||T z - (A f + b)||^2 + lam ||z||^2  =  M f + c
    M = (T^T T + lam I)^-1 T^T A,   c = (T^T T + lam I)^-1 T^T b

lam is chosen by k-fold cross-validation over class names: fit on some classes, then for
each held-out class check that its predicted classifier row (t_c M) is closer, by cosine,
to its own true row a_c than to any other held-out class's row (identification accuracy).
No image and no domain data enter the bridge.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LAMBDAS = (1e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0)


@dataclass(frozen=True)
class Bridge:
    weight: torch.Tensor  # (D_text, C_image)
    bias: torch.Tensor  # (D_text,)
    lam: float
    heldout_identification: float
    """Share of held-out class names whose predicted classifier row is nearest its own."""


def _solve(t: torch.Tensor, a: torch.Tensor, lam: float) -> torch.Tensor:
    gram = t.T @ t + lam * torch.eye(t.shape[1], dtype=t.dtype)
    return torch.linalg.solve(gram, t.T @ a)


def derive_bridge(
    class_text: torch.Tensor, cls_weight: torch.Tensor, cls_bias: torch.Tensor, folds: int = 5
) -> Bridge:
    """class_text (K, D) normalised text embeddings; cls_weight (K, C); cls_bias (K,)."""
    t = class_text.double()
    a = torch.cat([cls_weight, cls_bias[:, None]], dim=1).double()  # (K, C + 1)
    order = torch.randperm(t.shape[0], generator=torch.Generator().manual_seed(0))
    chunks = order.chunk(folds)
    scores = {}
    for lam in LAMBDAS:
        hits = 0
        for k, held in enumerate(chunks):
            fit = torch.cat([c for j, c in enumerate(chunks) if j != k])
            predicted = F.normalize(t[held] @ _solve(t[fit], a[fit], lam), dim=-1)
            sims = predicted @ F.normalize(a[held], dim=-1).T  # (H, H)
            hits += int((sims.argmax(1) == torch.arange(len(held))).sum())
        scores[lam] = hits / t.shape[0]
    best = max(scores, key=scores.__getitem__)
    m = _solve(t, a, best).float()  # (D, C + 1)
    return Bridge(m[:, :-1].contiguous(), m[:, -1].contiguous(), best, scores[best])
