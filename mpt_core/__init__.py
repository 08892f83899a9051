"""mpt_core: multimodal prompt tuning on a frozen, shared vision-language backbone
(dual encoders for classification, retrieval, VQA; generative ones for captioning and
open VQA).

    from mpt_core import load_backbone, build_prompts, ClassificationTask, Example, fit
    backbone = load_backbone("shipped")
    model = build_prompts(backbone, "mpt", ClassificationTask(["t-shirt", "trouser", "sneaker"]))
    fit(model, train_examples, val_examples)

Names are imported on first use, so `from mpt_core.errors import ...` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "load_prompts": "artifacts",
    "save_prompts": "artifacts",
    "FAMILIES": "backbones",
    "Backbone": "backbones",
    "load_backbone": "backbones",
    "tiny_backbone": "backbones",
    "Example": "data",
    "load_image": "data",
    "ArtifactError": "errors",
    "BackboneMismatchError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "MptError": "errors",
    "UnknownNameError": "errors",
    "PromptServer": "inference",
    "ImageFeatures": "features",
    "PromptedModel": "model",
    "build_prompts": "kinds",
    "PRESETS": "prompts",
    "PromptConfig": "prompts",
    "TASKS": "tasks",
    "CaptioningTask": "tasks",
    "ClassificationTask": "tasks",
    "OpenVQATask": "tasks",
    "GenerativeModel": "generative",
    "RetrievalTask": "tasks",
    "VQATask": "tasks",
    "TrainConfig": "training",
    "TuneSpec": "spec",
    "TrainResult": "training",
    "evaluate": "training",
    "fit": "training",
}

__all__ = [
    "FAMILIES",
    "PRESETS",
    "TASKS",
    "ArtifactError",
    "Backbone",
    "BackboneMismatchError",
    "CaptioningTask",
    "ClassificationTask",
    "ConfigError",
    "DataError",
    "Example",
    "GenerativeModel",
    "ImageFeatures",
    "MptError",
    "OpenVQATask",
    "PromptConfig",
    "PromptServer",
    "PromptedModel",
    "RetrievalTask",
    "TrainConfig",
    "TrainResult",
    "TuneSpec",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mpt_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs
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
    from .features import ImageFeatures
    from .generative import GenerativeModel
    from .inference import PromptServer
    from .kinds import build_prompts
    from .model import PromptedModel
    from .prompts import PRESETS, PromptConfig
    from .spec import TuneSpec
    from .tasks import (
        TASKS,
        CaptioningTask,
        ClassificationTask,
        OpenVQATask,
        RetrievalTask,
        VQATask,
    )
    from .training import TrainConfig, TrainResult, evaluate, fit
