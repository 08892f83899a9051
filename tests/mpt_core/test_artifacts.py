"""Prompt artifacts: contents, backbone binding, corruption."""

from __future__ import annotations

import hashlib
import json
import pickle
import re

import pytest
import torch
from safetensors.torch import save

from mpt_core import (
    ArtifactError,
    BackboneMismatchError,
    TrainConfig,
    build_prompts,
    fit,
    load_prompts,
    save_prompts,
    tiny_backbone,
)
from mpt_core.artifacts import (
    CONFIG,
    TENSORS,
    prompts_from_bytes,
    prompts_to_bytes,
    verify_artifact,
)

from .synthetic import examples, make_task


@pytest.fixture(scope="module")
def trained():
    model = build_prompts(tiny_backbone("shipped"), "mpt", make_task("classification"))
    fit(model, examples("classification", 2), config=TrainConfig(epochs=1, progress=False))
    return model


def test_artifact_is_safetensors_plus_json_with_lineage(trained, tmp_path):
    save_prompts(trained, tmp_path / "a", extra={"domain": "demo"})
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [CONFIG, TENSORS]
    config = json.loads((tmp_path / "a" / CONFIG).read_text())
    assert config["method"] == "mpt"
    assert config["backbone"] == trained.backbone.identity.to_dict()
    assert config["task"] == {"name": "classification", **trained.task.to_dict()}
    assert config["dims"]["embed_dim"] == trained.backbone.embed_dim
    assert config["centered"] is True  # shipped centres images; the centre travels along
    assert config["extra"] == {"domain": "demo"}
    assert config["library_version"]
    assert (tmp_path / "a" / TENSORS).read_bytes()[8:9] == b"{"  # safetensors header, no pickle


def test_loading_on_another_backbone_fails_clearly(trained, tmp_path):
    save_prompts(trained, tmp_path / "a")
    other = tiny_backbone("shipped", seed=1)
    with pytest.raises(BackboneMismatchError, match="was trained on backbone shipped:tiny") as err:
        load_prompts(tmp_path / "a", other)
    assert "HINT" in str(err.value)


def _resealed(directory, tensors: bytes) -> None:
    """Replace the tensors and record their sha256, as an attacker who knows the format would."""
    (directory / TENSORS).write_bytes(tensors)
    config = json.loads((directory / CONFIG).read_text())
    config["tensors_sha256"] = hashlib.sha256(tensors).hexdigest()
    (directory / CONFIG).write_text(json.dumps(config))


def test_corrupted_or_missing_files_raise_artifact_errors(trained, tmp_path):
    save_prompts(trained, tmp_path / "a")
    (tmp_path / "a" / TENSORS).write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match="the tensors were changed or damaged"):
        load_prompts(tmp_path / "a", trained.backbone)
    _resealed(tmp_path / "a", b"\x00garbage")
    with pytest.raises(ArtifactError, match="not a valid safetensors file"):
        load_prompts(tmp_path / "a", trained.backbone)
    (tmp_path / "a" / CONFIG).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_prompts(tmp_path / "a", trained.backbone)
    with pytest.raises(ArtifactError, match="not a directory"):
        load_prompts(tmp_path / "nowhere", trained.backbone)
    (tmp_path / "b").mkdir()
    with pytest.raises(ArtifactError, match="missing: not a prompt artifact"):
        load_prompts(tmp_path / "b", trained.backbone)


def test_a_pickle_in_place_of_safetensors_is_refused_unopened(trained, tmp_path):
    save_prompts(trained, tmp_path / "a")
    _resealed(tmp_path / "a", pickle.dumps({k: v for k, v in trained.state_dict().items()}))
    with pytest.raises(ArtifactError, match="never pickles"):
        load_prompts(tmp_path / "a", trained.backbone)


def test_nan_tensors_and_other_dtypes_are_refused(trained, tmp_path):
    save_prompts(trained, tmp_path / "a")
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    key = next(k for k in state if k.startswith("prompts."))
    state[key].view(-1)[0] = float("nan")
    _resealed(tmp_path / "a", save(state))
    with pytest.raises(ArtifactError, match=re.escape(f"tensor '{key}' holds 1 NaN or infinite")):
        load_prompts(tmp_path / "a", trained.backbone)
    state[key] = state[key].long()
    _resealed(tmp_path / "a", save(state))
    with pytest.raises(ArtifactError, match=r"dtype torch\.int64; expected float"):
        load_prompts(tmp_path / "a", trained.backbone)


def test_bytes_round_trip_is_exact_and_verified(trained):
    artifact = prompts_to_bytes(trained, extra={"domain": "demo"})
    config, _ = verify_artifact(artifact, backbone=trained.backbone.identity)
    assert config["tensors_sha256"] == hashlib.sha256(artifact.tensors).hexdigest()
    loaded = prompts_from_bytes(artifact, trained.backbone)
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    with pytest.raises(BackboneMismatchError):
        verify_artifact(artifact, backbone=tiny_backbone("shipped", seed=1).identity)
