"""The worked examples of docs/architecture.md: a backbone family and a preset are each one
module (or function) and one registration; everything else loops over the registries.
(The third, a task, is tests/test_new_task.py.) Each registers for its test alone."""

from __future__ import annotations

import json

import pytest
import torch

from mpt_core import (
    FAMILIES,
    PRESETS,
    PromptConfig,
    TrainConfig,
    build_prompts,
    fit,
    load_prompts,
    save_prompts,
    tiny_backbone,
)
from mpt_core.backbones import BackboneFamily
from mpt_core.backbones.base import state_dict_sha256
from mpt_core.prompts import Preset
from mpt_core.support import family_presets, family_tasks

from .mpt_core.synthetic import examples, make_task

MEAN_POOL = BackboneFamily(
    "mean-pool", "tests.extending_family", "tiny", "a CNN stem and mean-pooled tokens"
)


def _trained_round_trip(backbone, preset: str, task: str, tmp_path) -> None:
    """Tune one epoch, check what trained, save and load back the same predictions."""
    data = examples(task, 2)
    model = build_prompts(backbone, preset, make_task(task))
    before = state_dict_sha256(backbone)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, data, config=TrainConfig(epochs=1, batch_size=8, progress=False))
    assert state_dict_sha256(backbone) == before  # the backbone never trains
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items())
    loaded = load_prompts(save_prompts(model, tmp_path / f"{preset}-{task}"), backbone)
    assert loaded.predict(data) == model.predict(data)


def test_a_backbone_family_from_outside_mpt_core_runs_every_preset_and_task(tmp_path, capsys):
    from cli import main

    with FAMILIES.temporarily("mean-pool", MEAN_POOL):  # the registration line
        backbone = tiny_backbone("mean-pool")
        assert family_tasks("mean-pool") == family_tasks("shipped")  # a dual encoder
        for preset in family_presets("mean-pool"):
            for task in family_tasks("mean-pool"):
                _trained_round_trip(backbone, preset, task, tmp_path)
        assert main(["presets", "mean-pool:tiny", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["preset"] for r in rows] == PRESETS.names()
    assert "mean-pool" not in FAMILIES


def test_a_preset_is_one_registration_and_reaches_the_cli_and_the_domain_schema(tmp_path, capsys):
    from cli import main
    from flows.domains.schema import DomainConfig

    def wide_text(slots) -> PromptConfig:
        return PromptConfig(text_tokens=8, text_depth=min(2, slots.text.depth), vision_tokens=0)

    preset = Preset("coop-wide", "text prompts only, 8 tokens in 2 layers", wide_text)
    with PRESETS.temporarily("coop-wide", preset):  # the registration line
        assert main(["presets", "shipped:tiny", "--json"]) == 0
        listed = {r["preset"]: r for r in json.loads(capsys.readouterr().out)}
        text = tiny_backbone("shipped").slots.text
        assert listed["coop-wide"]["trainable"] == 8 * min(2, text.depth) * text.width
        config = DomainConfig.model_validate(
            {
                "name": "d",
                "task": "classification",
                "labels": ["a", "b"],
                "prompts": {"preset": "coop-wide"},
            }
        )
        assert config.tune_spec().preset == "coop-wide"
        _trained_round_trip(tiny_backbone("shipped"), "coop-wide", "classification", tmp_path)
    with pytest.raises(ValueError, match="unknown preset 'coop-wide'"):
        DomainConfig.model_validate(
            {
                "name": "d",
                "task": "classification",
                "labels": ["a", "b"],
                "prompts": {"preset": "coop-wide"},
            }
        )
