"""The one mapping of compared methods, by their row name in docs/results.md, in table order."""

from __future__ import annotations

from mpt_core.backbones.base import Backbone

from .base import Method
from .clip_adapter import clip_adapter
from .full_finetune import full_finetune
from .linear_probe import linear_probe, zero_shot_probe
from .lora import lora
from .presets import PromptMethod
from .search import QUICK_SEARCH, PromptSearch
from .zero_shot import zero_shot


def methods(quick: bool = False) -> dict[str, Method]:
    """Every method `bench/results.py` compares; `quick` gives the searched preset the smoke
    test's two trials instead of the task's default search budget."""
    return {
        "zero-shot": zero_shot,
        "linear-probe": linear_probe,
        "linear-probe (zs-init)": zero_shot_probe,
        "full-ft": full_finetune,
        "lora": lora,
        "clip-adapter": clip_adapter,
        "coop": PromptMethod("coop"),
        "vpt": PromptMethod("vpt"),
        "maple": PromptMethod("maple"),
        "mpt": PromptMethod("mpt"),
        "mpt+search": PromptSearch("mpt", block=QUICK_SEARCH if quick else {}),
        # ablations of mpt: one part removed or added at a time
        "mpt static prompts only": PromptMethod(
            "mpt", {"image_tokens": 0, "image_residual": 0.0, "fusion": False}
        ),
        "mpt w/o PFM": PromptMethod("mpt", {"fusion": False}),
        "mpt w/o residual (PFM only)": PromptMethod("mpt", {"image_residual": 0.0}),
        "mpt w/o text adapter": PromptMethod("mpt", {"text_residual": 0.0}),
        "mpt w/o text prompts": PromptMethod("mpt", {"text_tokens": 0}),
        "mpt + text anchor (KgCoOp)": PromptMethod("mpt", {"text_anchor": 1.0}),
    }


def redundant(method: Method, backbone: Backbone) -> bool:
    """Whether `method`'s row would repeat another's on `backbone`: an ablation whose
    settings equal its preset's there, or one the backbone cannot build."""
    return isinstance(method, PromptMethod) and method.redundant_on(backbone)
