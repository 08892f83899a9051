"""Fitted prompts kept on a node by what decides them, so that a fit is never run twice.

A fit is decided by the tuning spec (task, preset and overrides, trainer settings and seed),
the data version and its rows, the backbone's weights and the code: training is
deterministic, so the same inputs give the same prompts, bit for bit. A search trial that
trained on the very train and val splits the final tuning uses (one fold: the val split)
stores its prompts and history here; when that trial is chosen, the tuning job of the same
spec finds them and skips the fit. Files: `$MPT_HOME/cache/fits/<key>.safetensors`, the
prompt tensors with the training result in their metadata, written whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from mpt_core.cache import atomic_write
from mpt_core.holder import PromptsHolder
from mpt_core.training import TrainResult
from registry.lineage import package_version

from .jobs import TuneJob


def fit_key(job: TuneJob) -> str:
    """What decides a job's fit: its spec, data version and rows, backbone, code, and the
    number of torch threads (a reduction split over threads may round differently)."""
    parts = [
        job.spec.key(),
        job.data.md5,
        job.data.rows_sha256,
        job.backbone.sha256 or "",
        package_version(),
        str(torch.get_num_threads()),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class FittedPrompts:
    """The fits of this node (`$MPT_HOME/cache/fits`)."""

    def __init__(self, root: Path | None = None) -> None:
        home = Path(os.environ.get("MPT_HOME") or Path.home() / ".mpt").expanduser()
        self.root = root or home / "cache" / "fits"

    def put(self, key: str, model: PromptsHolder, result: TrainResult) -> None:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta = {"result": json.dumps(result.to_dict()), "centered": json.dumps(model.centered)}
        atomic_write(self.root / f"{key}.safetensors", save(tensors, metadata=meta))

    def load_into(self, key: str, model: PromptsHolder) -> TrainResult | None:
        """Load the fit of `key` into `model` and return its training result; None when
        this node has none (or it cannot be read: then the fit simply runs)."""
        from safetensors import safe_open

        path = self.root / f"{key}.safetensors"
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            model.load_state_dict({k: v.to(model.backbone.device) for k, v in tensors.items()})
            model.centered = json.loads(meta["centered"])
            return TrainResult(**json.loads(meta["result"]))
        except (OSError, KeyError, ValueError, RuntimeError, TypeError):
            return None


def restore(model: PromptsHolder, job: TuneJob, fits: FittedPrompts) -> TrainResult | None:
    """The job's fit if this node holds it (loaded into `model`), else None."""
    with torch.no_grad():
        return fits.load_into(fit_key(job), model)
