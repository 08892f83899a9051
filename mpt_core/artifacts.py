"""Prompt artifacts: `prompts.safetensors` + `prompt_config.json`. No pickle anywhere.

An artifact is two byte strings (`PromptArtifact`): the JSON config and the safetensors
tensors. `prompts_to_bytes` / `prompts_from_bytes` work on them in memory (workers send
them, the registry stores them); `save_prompts` / `load_prompts` write and read the two
files. Every read is verified at the door (`verify_artifact`): the format, the sha256 of
the tensor bytes recorded in the config, the safetensors header, float dtypes, finite
values, and (given a backbone) the backbone identity. A broken artifact is refused with
its source and the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ._version import __version__
from .backbones.base import BackboneIdentity, FrozenBackbone
from .cache import atomic_write
from .errors import ArtifactError, BackboneMismatchError
from .holder import PromptsHolder
from .kinds import strategy
from .prompts import PromptConfig
from .tasks import task_from_dict

TENSORS = "prompts.safetensors"
CONFIG = "prompt_config.json"
FORMAT_VERSION = 2
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
REQUIRED = ("format_version", "prompt_config", "task", "backbone", "tensors_sha256")


@dataclass(frozen=True)
class PromptArtifact:
    """An artifact in memory: the two files `save_prompts` writes, as bytes."""

    config_json: str
    tensors: bytes

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)


def artifact_config(model: PromptsHolder, extra: dict[str, Any] | None = None) -> dict[str, Any]:
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


def prompts_to_bytes(model: PromptsHolder, extra: dict[str, Any] | None = None) -> PromptArtifact:
    """The artifact of `model` in memory; the config records the tensors' sha256."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save_tensors(tensors)
    config = artifact_config(model, extra) | {"tensors_sha256": hashlib.sha256(blob).hexdigest()}
    return PromptArtifact(json.dumps(config, indent=2, sort_keys=True) + "\n", blob)


def save_prompts(
    model: PromptsHolder,
    directory: str | Path,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the artifact into `directory` (created). Files appear whole or not at all."""
    return write_artifact(prompts_to_bytes(model, extra), directory)


def write_artifact(artifact: PromptArtifact, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in ((TENSORS, artifact.tensors), (CONFIG, artifact.config_json.encode())):
        atomic_write(directory / name, data)
    return directory


def read_artifact(directory: str | Path) -> PromptArtifact:
    """The two files of an artifact directory as bytes (not yet verified)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(
            f"{directory} is not a directory: pass the folder save_prompts wrote "
            f"({TENSORS} + {CONFIG})"
        )
    try:
        config = (directory / CONFIG).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{directory / CONFIG} is missing: not a prompt artifact") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{directory / CONFIG} cannot be read: {exc}") from None
    try:
        tensors = (directory / TENSORS).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{directory / TENSORS} is missing") from None
    except OSError as exc:
        raise ArtifactError(f"{directory / TENSORS} cannot be read: {exc}") from None
    return PromptArtifact(config, tensors)


def _parse_config(config_json: str, source: str) -> dict[str, Any]:
    try:
        config = json.loads(config_json)
    except (ValueError, RecursionError) as exc:  # also nesting too deep, a 5,000-digit number
        raise ArtifactError(
            f"{source} is not valid JSON ({str(exc).split(';')[0]}); the artifact is corrupted"
        ) from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{source} must hold a JSON object; the artifact is corrupted")
    if config.get("format_version") == 1:
        raise ArtifactError(
            f"{source}: artifact format 1 (no tensor checksum, and the static prompt fusion this "
            "library replaced by the per-input one); it cannot be verified or rebuilt. HINT: "
            "tune the domain again (`mpt run --force NAME`)"
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{source}: artifact format {config.get('format_version')!r}; this library reads "
            f"format {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ArtifactError(
            f"{source} lacks {missing}; it was not written by save_prompts of this library "
            "(re-save the prompts)"
        )
    return config


def verify_artifact(
    artifact: PromptArtifact,
    *,
    source: str = "prompt artifact",
    backbone: BackboneIdentity | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, tensors) of an artifact that passes every check, else ArtifactError (or
    BackboneMismatchError) naming `source` and the reason."""
    config = _parse_config(artifact.config_json, f"{source} ({CONFIG})")
    where = f"{source} ({TENSORS})"
    actual = hashlib.sha256(artifact.tensors).hexdigest()
    if actual != config["tensors_sha256"]:
        raise ArtifactError(
            f"{where}: its bytes hash to {actual[:16]}…, but {CONFIG} records "
            f"{str(config['tensors_sha256'])[:16]}…: the tensors were changed or damaged"
        )
    try:
        tensors = load_tensors(artifact.tensors)
    except Exception as exc:  # safetensors raises its own error types on bad headers
        raise ArtifactError(
            f"{where} is not a valid safetensors file ({type(exc).__name__}: {exc}); "
            "prompt artifacts are never pickles: re-save them with save_prompts"
        ) from None
    for key, tensor in tensors.items():
        if tensor.dtype not in FLOAT_DTYPES:
            raise ArtifactError(f"{where}: tensor {key!r} has dtype {tensor.dtype}; expected float")
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ArtifactError(
                f"{where}: tensor {key!r} holds {bad} NaN or infinite value(s); "
                "training diverged: lower the learning rate and tune again"
            )
    if backbone is not None:
        _check_backbone(config, backbone, source)
    return config, tensors


def _check_backbone(config: dict[str, Any], backbone: BackboneIdentity, source: str) -> None:
    try:
        expected = BackboneIdentity(**config["backbone"])
    except TypeError:
        raise ArtifactError(
            f"{source}: its backbone record {config['backbone']!r} is malformed"
        ) from None
    if expected != backbone:
        raise BackboneMismatchError(
            f"prompt artifact {source} was trained on backbone {expected}, but the given "
            f"backbone is {backbone}. HINT: load_backbone({expected.family!r}, "
            f"{expected.name!r}) with the same weights"
        )


def prompts_from_bytes(
    artifact: PromptArtifact,
    backbone: FrozenBackbone,
    source: str = "prompt artifact",
) -> PromptsHolder:
    """Rebuild the prompted model from a verified artifact, on the backbone it was trained on."""
    config, tensors = verify_artifact(artifact, source=source, backbone=backbone.identity)
    try:
        prompt_config = PromptConfig.from_dict(config["prompt_config"])
        task_spec = dict(config["task"])
        task = task_from_dict(task_spec.pop("name"), task_spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: its config cannot be used ({exc})") from None
    model = strategy(backbone.kind).build(backbone, prompt_config, task, config.get("method"), 0)
    tensors = {k: v.to(backbone.device) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{source} ({TENSORS}) does not match its config: "
            f"missing {missing}, unexpected {unexpected}"
        )
    model.centered = bool(config.get("centered"))
    return model


def load_prompts(directory: str | Path, backbone: FrozenBackbone) -> PromptsHolder:
    """Rebuild a PromptedModel from an artifact directory, on the backbone it was trained on."""
    return prompts_from_bytes(read_artifact(directory), backbone, source=str(directory))
