"""Prompt artifacts in the folder layout PEFT's `save_pretrained` writes, where that layout
maps honestly onto these prompts.

`save_pretrained(artifact, dir)` writes `adapter_model.safetensors` (the artifact's tensors,
byte for byte, under their own names), `adapter_config.json` and a `README.md`. The config
uses PEFT's field names only where they mean the same thing here: `base_model_name_or_path`
and `revision` (the backbone's name and the sha256 of its weights: these prompts load on
nothing else), `inference_mode`, and, for the text prompts, `num_virtual_tokens`,
`token_dim` and `num_layers`. Its `peft_type` and `task_type` are null: multimodal prompts
(visual prompts, image-conditioned tokens, the fusion module) are no PEFT method, so
`PeftModel.from_pretrained` cannot build them and the config does not pretend otherwise.
The library's own config is kept whole under `"mpt"`, so nothing is lost:
`load_pretrained(dir, backbone)` rebuilds the same model, verified like any artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .artifacts import PromptArtifact, prompts_from_bytes, verify_artifact
from .backbones.base import FrozenBackbone
from .cache import atomic_write
from .errors import ArtifactError
from .holder import PromptsHolder

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
MODEL_CARD = "README.md"


def adapter_config(config: dict[str, Any]) -> dict[str, Any]:
    """The `adapter_config.json` of a verified artifact config."""
    prompts = config["prompt_config"]
    backbone = config["backbone"]
    text = int(prompts.get("text_tokens") or 0)
    out: dict[str, Any] = {
        "peft_type": None,
        "task_type": None,
        "library_name": "mpt-platform",
        "base_model_name_or_path": f"{backbone['family']}:{backbone['name']}",
        "revision": backbone["weights_sha256"],
        "inference_mode": True,
    }
    if text:
        out |= {
            "num_virtual_tokens": text,
            "token_dim": (config.get("dims") or {}).get("text_width"),
            "num_layers": prompts.get("text_depth"),
        }
    return out | {"mpt": config}


def save_pretrained(
    artifact: PromptArtifact, directory: str | Path, *, source: str = "prompt artifact"
) -> Path:
    """Write `artifact` (verified first) into `directory` in PEFT's layout."""
    config, _ = verify_artifact(artifact, source=source)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card = _model_card(config)
    atomic_write(directory / ADAPTER_WEIGHTS, artifact.tensors)
    atomic_write(directory / ADAPTER_CONFIG, _json(adapter_config(config)).encode())
    atomic_write(directory / MODEL_CARD, card.encode())
    return directory


def read_pretrained(directory: str | Path) -> PromptArtifact:
    """The artifact a `save_pretrained` folder holds (not yet verified)."""
    directory = Path(directory)
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = (directory / ADAPTER_WEIGHTS).read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"{directory}: {Path(exc.filename).name} is missing; a save_pretrained folder has "
            f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{directory / ADAPTER_CONFIG} cannot be read: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("mpt"), dict):
        raise ArtifactError(
            f"{directory / ADAPTER_CONFIG} holds no 'mpt' config: it was not exported by "
            "mpt_core.export.save_pretrained"
        )
    return PromptArtifact(_json(config["mpt"]), tensors)


def load_pretrained(directory: str | Path, backbone: FrozenBackbone) -> PromptsHolder:
    """Rebuild the prompted model of a `save_pretrained` folder on its backbone, verified
    like `load_prompts` (tensor checksum, safetensors header, finite floats, backbone)."""
    return prompts_from_bytes(read_pretrained(directory), backbone, source=str(directory))


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _model_card(config: dict[str, Any]) -> str:
    backbone = config["backbone"]
    task = config["task"]["name"]
    return (
        f"---\nlibrary_name: mpt-platform\n---\n\n# {config.get('method')} prompts for "
        f"`{task}`\n\nMultimodal prompts tuned on the frozen backbone "
        f"`{backbone['family']}:{backbone['name']}` (weights sha256 "
        f"`{backbone['weights_sha256']}`); they load on that backbone only.\n\n"
        "This folder has the layout of PEFT's `save_pretrained`, but these prompts are not a "
        "PEFT method (`peft_type` is null), so load them with mpt_core:\n\n"
        "```python\nfrom mpt_core import load_backbone\nfrom mpt_core.export import "
        'load_pretrained\n\nmodel = load_pretrained("THIS_FOLDER", load_backbone('
        f"{backbone['family']!r}, {backbone['name']!r}))\n```\n"
    )
