"""Multimodal prompts: TPG (text), VPG (vision), PFM (fusion) and named presets."""

from .config import PromptConfig
from .coupling import COUPLINGS, CrossAttentionFusion, LinearCoupling
from .generators import MultimodalPrompts, PromptSet, TokenPromptGenerator
from .presets import PRESETS, Preset, preset_config

__all__ = [
    "COUPLINGS",
    "PRESETS",
    "CrossAttentionFusion",
    "LinearCoupling",
    "MultimodalPrompts",
    "Preset",
    "PromptConfig",
    "PromptSet",
    "TokenPromptGenerator",
    "preset_config",
]
