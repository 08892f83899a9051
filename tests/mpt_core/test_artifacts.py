"""Prompt artifacts: contents, backbone binding, corruption."""

from __future__ import annotations

import json

import pytest

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
from mpt_core.artifacts import CONFIG, TENSORS

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


def test_corrupted_or_missing_files_raise_artifact_errors(trained, tmp_path):
    save_prompts(trained, tmp_path / "a")
    (tmp_path / "a" / TENSORS).write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match="cannot be read"):
        load_prompts(tmp_path / "a", trained.backbone)
    (tmp_path / "a" / CONFIG).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_prompts(tmp_path / "a", trained.backbone)
    with pytest.raises(ArtifactError, match="missing: not a prompt artifact"):
        load_prompts(tmp_path / "nowhere", trained.backbone)
