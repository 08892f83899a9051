"""Full fine-tuning: both towers of a copy of the backbone train."""

from __future__ import annotations

import copy

import torch

from flows.domains import Domain
from mpt_core import TrainConfig
from mpt_core.backbones.base import Backbone

from .base import Run, Splits
from .towers import train_towers

FULL_FT_LR = 1e-5


def full_finetune(
    backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
) -> Run:
    """Both towers train (same loss, epochs, schedule, early choice on val), lr 1e-5."""
    torch.manual_seed(seed)
    net = copy.deepcopy(backbone)
    for p in net.parameters():
        p.requires_grad_(True)
    return train_towers(
        net,
        domain.config.build_task(),
        data,
        cfg,
        seed,
        FULL_FT_LR,
        lambda examples: net.preprocess([e.image for e in examples]),
        lambda pixels: net.encode_image(net.image_stem(pixels)),
        list(net.parameters()),
    )
