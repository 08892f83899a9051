"""Prompt configs, presets and the fusion module's start state."""

from __future__ import annotations

import re

import pytest
import torch

from mpt_core import PRESETS, ConfigError, UnknownNameError, build_prompts, tiny_backbone
from mpt_core.prompts import MultimodalPrompts, PromptConfig, preset_config

from .synthetic import examples, make_task

SLOTS = tiny_backbone("hf-clip").slots


def test_unknown_preset_lists_known_ones():
    known = ", ".join(PRESETS.names())
    with pytest.raises(UnknownNameError, match=re.escape(f"preset 'bogus'; known: {known}")):
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
        ({"coupling": "cross-attention"}, "unknown coupling 'cross-attention'"),
        ({"image_tokens": 4}, "image_tokens=4 feed nothing: set image_residual > 0"),
        ({"fusion": True}, "acts on the image's own prompt tokens on this backbone: set image"),
        ({"image_residual": 1.0}, "image_residual acts on the image's own prompt tokens"),
        ({"image_residual": -1.0}, "image_residual=-1.0: must be >= 0"),
        ({"text_tokens": 0, "coupling": "none", "text_anchor": 1.0}, "needs text prompts"),
    ],
)
def test_invalid_configs_name_the_field_and_the_allowed_values(overrides, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        preset_config("maple", SLOTS, **overrides)


def test_fusion_needs_divisible_width():
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
    assert config.coupling == {"maple": "linear"}.get(preset, "none")
    assert config.image_conditioned == (preset == "mpt")  # coop, vpt, maple: static prompts


def _mpt_model(**overrides):
    backbone = tiny_backbone("hf-clip")
    return build_prompts(backbone, "mpt", make_task("classification"), **overrides)


def test_image_conditioning_starts_switched_off_and_gates_open_with_training():
    """At step 0 mpt scores exactly as its static prompts do (residual and PFM gates at 0);
    one step gives every gate a gradient."""
    model = _mpt_model()
    data = examples("classification", 2)
    prepared = model.prepare_images([e.image for e in data])
    feats = model.embed_prepared(prepared)
    prompts = model.prompts()
    raw = model.backbone.encode_image(prepared, prompts.vision)
    static = torch.nn.functional.normalize(raw - model.image_center, dim=-1)
    assert torch.allclose(feats.embedding, static, atol=1e-6)
    text = model.embed_texts(make_task("classification").texts())
    assert torch.allclose(model.score(feats, text), model.logit_scale * static @ text.T, atol=1e-5)
    model.task.loss(model, feats, data).backward()
    assert model.prompts.image_residual.gate.grad.abs().sum() > 0
    assert model.prompts.fusion.gate.grad.abs().sum() > 0


def test_no_gate_ablation_fuses_from_the_start():
    model = _mpt_model(fusion_gate=False)
    data = examples("classification", 2)
    feats = model.encode_images([e.image for e in data])
    text = model.embed_texts(make_task("classification").texts())
    assert not torch.allclose(
        model.score(feats, text), model.logit_scale * feats.embedding @ text.T
    )


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
