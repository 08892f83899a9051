"""Prompt artifacts: `prompts.safetensors` + `prompt_config.json`. No pickle anywhere."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from . import __version__
from .backbones.base import Backbone, BackboneIdentity
from .errors import ArtifactError, BackboneMismatchError
from .model import PromptedModel
from .prompts import MultimodalPrompts, PromptConfig
from .tasks import task_from_dict

TENSORS = "prompts.safetensors"
CONFIG = "prompt_config.json"
FORMAT_VERSION = 2
"""2: image-conditioned prompts (generator, residuals, per-input PFM); 1: static prompts
only. Format 1 artifacts load unless they used the static cross-attention coupling."""
READABLE_FORMATS = (1, 2)


def artifact_config(model: PromptedModel, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    slots = model.backbone.slots
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "method": model.preset,
        "prompt_config": model.config.to_dict(),
        "dims": {
            "text_width": slots.text.width,
            "vision_width": slots.vision.width,
            "embed_dim": model.backbone.embed_dim,
        },
        "task": {"name": model.task.name, **model.task.to_dict()},
        "backbone": model.backbone.identity.to_dict(),
        "centered": model.centered,
        "trainable_parameters": model.num_trainable(),
        "extra": extra or {},
    }


def save_prompts(
    model: PromptedModel, directory: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write the artifact into `directory` (created). Files appear whole or not at all."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = json.dumps(artifact_config(model, extra), indent=2, sort_keys=True)
    for name, write in (
        (TENSORS, lambda p: save_file(tensors, p)),
        (CONFIG, lambda p: Path(p).write_text(config + "\n")),
    ):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, directory / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: not a prompt artifact directory") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the artifact is corrupted") from exc


def load_prompts(directory: str | Path, backbone: Backbone) -> PromptedModel:
    """Rebuild a PromptedModel from an artifact, on the backbone it was trained on."""
    directory = Path(directory)
    config = read_config(directory)
    if config.get("format_version") not in READABLE_FORMATS:
        raise ArtifactError(
            f"{directory}: artifact format {config.get('format_version')!r}; "
            f"this library reads formats {', '.join(map(str, READABLE_FORMATS))}"
        )
    if config["prompt_config"].get("coupling") == "cross-attention":
        raise ArtifactError(
            f"{directory}: format {config['format_version']} artifact with the static "
            "cross-attention coupling, which this library no longer has (it was replaced "
            "by the per-input fusion). HINT: tune the domain again (`mpt run --force NAME`)"
        )
    expected = BackboneIdentity(**config["backbone"])
    if expected != backbone.identity:
        raise BackboneMismatchError(
            f"prompt artifact {directory} was trained on backbone {expected}, but the given "
            f"backbone is {backbone.identity}. HINT: load_backbone({expected.family!r}, "
            f"{expected.name!r}) with the same weights"
        )
    prompts = MultimodalPrompts(PromptConfig.from_dict(config["prompt_config"]), backbone.slots)
    task_spec = dict(config["task"])
    model = PromptedModel(
        backbone, prompts, task_from_dict(task_spec.pop("name"), task_spec), config.get("method")
    )
    try:
        state = load_file(directory / TENSORS, device=str(backbone.device))
    except FileNotFoundError:
        raise ArtifactError(f"{directory / TENSORS} is missing") from None
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(
            f"{directory / TENSORS} cannot be read ({exc}); the artifact is corrupted"
        ) from exc
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{directory / TENSORS} does not match its config: "
            f"missing {missing}, unexpected {unexpected}"
        )
    model.centered = bool(config.get("centered"))
    return model
