"""Prompt configs, presets and the fusion module's start state."""

from __future__ import annotations

import pytest
import torch

from mpt_core import PRESETS, ConfigError, UnknownNameError, tiny_backbone
from mpt_core.prompts import MultimodalPrompts, PromptConfig, preset_config

SLOTS = tiny_backbone("hf-clip").slots


def test_unknown_preset_lists_known_ones():
    with pytest.raises(
        UnknownNameError, match="unknown prompt preset 'bogus'; known: coop, maple, mpt, vpt"
    ):
        preset_config("bogus", SLOTS)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"text_depth": 5},
            r"text_depth=5: this backbone's text tower takes prompts in 1..2 layers",
        ),
        ({"vision_tokens": 3}, r"text_tokens \(4\) must equal vision_tokens \(3\)"),
        ({"text_tokens": 0, "vision_tokens": 0}, "has no prompts"),
        ({"coupling": "telepathy"}, "unknown coupling 'telepathy'"),
    ],
)
def test_invalid_configs_name_the_field_and_the_allowed_values(overrides, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        preset_config("maple", SLOTS, **overrides)


def test_cross_attention_needs_divisible_width():
    with pytest.raises(ConfigError, match="fusion_width=30 is not divisible by fusion_heads=4"):
        preset_config("mpt", SLOTS, fusion_width=30)


def test_config_round_trips_through_dict_and_rejects_unknown_fields():
    config = preset_config("mpt", SLOTS)
    assert PromptConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown prompt config fields"):
        PromptConfig.from_dict({**config.to_dict(), "colour": "red"})


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_put_prompts_where_their_method_does(preset):
    config = preset_config(preset, SLOTS)
    assert config.has_text == (preset != "vpt")
    assert config.has_vision == (preset != "coop")
    assert (
        config.coupling
        == {"coop": "none", "vpt": "none", "maple": "linear", "mpt": "cross-attention"}[preset]
    )


def test_fusion_starts_as_independent_prompts_and_gate_opens_with_training():
    prompts = MultimodalPrompts(preset_config("mpt", SLOTS), SLOTS)
    out = prompts()
    for layer in range(prompts.config.shared_depth):
        assert torch.equal(out.text[layer], prompts.text.tokens[layer])
        assert torch.equal(out.vision[layer], prompts.vision.tokens[layer])
    loss = sum(t.sum() for t in out.text) + sum(v.pow(2).sum() for v in out.vision)
    loss.backward()
    assert all(layer.gate.grad.abs().sum() > 0 for layer in prompts.coupling.layers)


def test_no_gate_ablation_couples_from_the_start():
    prompts = MultimodalPrompts(preset_config("mpt", SLOTS, fusion_gate=False), SLOTS)
    out = prompts()
    assert not torch.equal(out.text[0], prompts.text.tokens[0])


def test_same_seed_same_prompts_other_seed_other_prompts():
    config = preset_config("mpt", SLOTS)
    a, b, c = (MultimodalPrompts(config, SLOTS, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.text.tokens, b.text.tokens)
    assert not torch.equal(a.text.tokens, c.text.tokens)


def test_cnn_pooling_queries_start_at_average_pooling():
    backbone = tiny_backbone("shipped")
    prompts = MultimodalPrompts(preset_config("vpt", backbone.slots), backbone.slots)
    feature_map = torch.rand(2, backbone.slots.vision.width, 4, 4)
    with torch.no_grad():
        assert torch.allclose(
            backbone.encode_image(feature_map, prompts().vision),
            backbone.encode_image(feature_map),
            atol=1e-6,
        )
