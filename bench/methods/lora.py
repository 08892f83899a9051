"""LoRA (HF PEFT) on the frozen towers; `lora_model` is also what bench/step_cost.py times."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from flows.domains import Domain
from mpt_core import Example, TrainConfig
from mpt_core.backbones.base import Backbone

from .base import Run, Splits
from .towers import train_towers

LORA_RANK = 4
LORA_LR = 1e-3


def lora_model(
    backbone: Backbone, seed: int
) -> tuple[
    Backbone,
    list[torch.Tensor],
    Callable[[list[Example]], torch.Tensor],
    Callable[[torch.Tensor], torch.Tensor],
]:
    """A copy of `backbone` with LoRA (HF PEFT, rank 4, alpha 8) on its frozen towers: the
    text tower's attention query and value projections, and on the image side the CLIP
    ViT's query and value projections, or the CNN's last (1x1 head) convolution, so the
    CNN's frozen blocks below it are computed once, as the prompts' stem is.
    Returns (net, LoRA parameters, inputs_fn(examples), image_fn(inputs))."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(seed)
    net = copy.deepcopy(backbone)
    if net.family == "shipped":
        targets = ["query", "value", "_conv_head"]
        cnn = net.image_model

        def inputs_fn(examples):  # frozen blocks below the head, once
            with torch.no_grad():
                x = net.preprocess([e.image for e in examples])
                x = F.relu6(cnn._bn0(cnn._conv_stem(x)))
                for block in cnn._blocks:
                    x = block(x)
                return x

        def image_fn(x):
            pooled = F.relu6(cnn._bn1(cnn._conv_head(x))).mean(dim=(2, 3))
            return pooled @ net.bridge_weight.T + net.bridge_bias

    else:
        targets = ["q_proj", "v_proj"]

        def inputs_fn(examples):
            return net.preprocess([e.image for e in examples])

        def image_fn(pixels):
            return net.encode_image(net.image_stem(pixels))

    inject_adapter_in_model(
        LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=targets), net
    )
    params = []
    for name, p in net.named_parameters():
        p.requires_grad_("lora_" in name)
        if "lora_" in name:
            params.append(p)
    return net, params, inputs_fn, image_fn


def lora(backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int) -> Run:
    """LoRA on the frozen towers (`lora_model`), lr 1e-3, the trainer's loop and budget."""
    net, params, inputs_fn, image_fn = lora_model(backbone, seed)
    return train_towers(
        net, domain.config.build_task(), data, cfg, seed, LORA_LR, inputs_fn, image_fn, params
    )
