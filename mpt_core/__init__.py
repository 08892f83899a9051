"""mpt_core: multimodal prompt tuning on a frozen, shared dual-encoder backbone.

from mpt_core import load_backbone, build_prompts, ClassificationTask, Example, fit
backbone = load_backbone("shipped")
model = build_prompts(backbone, "mpt", ClassificationTask(["t-shirt", "trouser", "sneaker"]))
fit(model, train_examples, val_examples)
"""

__version__ = "0.1.0"

from .artifacts import load_prompts, save_prompts
from .backbones import FAMILIES, Backbone, load_backbone, tiny_backbone
from .data import Example, load_image
from .errors import (
    ArtifactError,
    BackboneMismatchError,
    ConfigError,
    DataError,
    MptError,
    UnknownNameError,
)
from .inference import PromptServer
from .model import PromptedModel, build_prompts
from .prompts import PRESETS, PromptConfig
from .tasks import TASKS, ClassificationTask, RetrievalTask, VQATask
from .training import TrainConfig, TrainResult, evaluate, fit

__all__ = [
    "FAMILIES",
    "PRESETS",
    "TASKS",
    "ArtifactError",
    "Backbone",
    "BackboneMismatchError",
    "ClassificationTask",
    "ConfigError",
    "DataError",
    "Example",
    "MptError",
    "PromptConfig",
    "PromptServer",
    "PromptedModel",
    "RetrievalTask",
    "TrainConfig",
    "TrainResult",
    "UnknownNameError",
    "VQATask",
    "__version__",
    "build_prompts",
    "evaluate",
    "fit",
    "load_backbone",
    "load_image",
    "load_prompts",
    "save_prompts",
    "tiny_backbone",
]
