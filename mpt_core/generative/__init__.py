"""Prompt tuning on a frozen generative backbone (image -> text): prompts and the model."""

from .model import GenerativeModel
from .prompts import GenerativePrompts, GenerativePromptSet, QFormerFusion

__all__ = [
    "GenerativeModel",
    "GenerativePromptSet",
    "GenerativePrompts",
    "QFormerFusion",
]
