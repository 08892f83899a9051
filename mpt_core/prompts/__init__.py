"""Multimodal prompts: TPG (text), VPG (vision), PFM (fusion) and named presets."""

from .config import PromptConfig
from .coupling import COUPLINGS, LinearCoupling
from .fusion import GatedResidual, ImagePromptGenerator, PromptFusion, TextAdapter
from .generators import MultimodalPrompts, PromptSet, TokenPromptGenerator
from .presets import PRESETS, Preset, preset_config

__all__ = [
    "COUPLINGS",
    "PRESETS",
    "GatedResidual",
    "ImagePromptGenerator",
    "LinearCoupling",
    "MultimodalPrompts",
    "Preset",
    "PromptConfig",
    "PromptFusion",
    "PromptSet",
    "TextAdapter",
    "TokenPromptGenerator",
    "preset_config",
]
