"""Images as the towers see them, and backbones that never reach the network."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from mpt_core.data import load_image
from mpt_core.errors import BackboneLoadError


def test_a_16_bit_grayscale_png_is_scaled_not_clipped_to_white(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    rgb = np.asarray(load_image(tmp_path / "ramp.png"))
    assert rgb.shape == (64, 64, 3)
    assert rgb.min() == 0 and rgb.max() == 255 and 100 < rgb.mean() < 155
    assert np.asarray(Image.open(tmp_path / "ramp.png").convert("RGB")).mean() > 250  # PIL alone


def test_an_uncached_hub_id_fails_without_any_connection(monkeypatch):
    from mpt_core.backbones import hf_clip

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    attempts = []
    real = socket.socket.connect
    monkeypatch.setattr(
        socket.socket,
        "connect",
        lambda self, address: attempts.append(address) or real(self, address),
    )
    with pytest.raises(BackboneLoadError, match="neither a local directory"):
        hf_clip.load("nobody/no-such-clip-checkpoint")
    assert attempts == []


def test_an_example_takes_the_fields_tasks_declare_and_names_them_when_given_another():
    from mpt_core import Example

    example = Example("a.png", question="Is there a defect?", answer="no")
    assert (example.question, example.answer, example.label) == ("Is there a defect?", "no", None)
    assert example.fields == {"question": "Is there a defect?", "answer": "no"}
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['colour'\].*answer, candidates"):
        Example("a.png", colour="red")
    with pytest.raises(AttributeError, match="no field 'lable'"):
        _ = example.lable
    with pytest.raises(AttributeError, match="immutable"):
        example.answer = "yes"


def test_examples_compare_by_value_survive_pickling_and_copy_with_changes():
    import pickle

    from mpt_core import Example

    example = Example("a.png", caption="a boot", candidates=["a boot", "a shoe"])
    assert example.candidates == ("a boot", "a shoe")  # a `many` field becomes a tuple
    assert pickle.loads(pickle.dumps(example)) == example
    assert hash(Example("a.png", label="x")) == hash(Example("a.png", label="x"))
    changed = example.replace(caption="a shoe", candidates=None)
    assert changed == Example("a.png", caption="a shoe") and example.caption == "a boot"


def test_a_field_declared_twice_differently_is_refused():
    from mpt_core.data import ExampleField, declare_field
    from mpt_core.errors import ConfigError

    with pytest.raises(ConfigError, match="'label' is declared twice, differently"):
        declare_field(ExampleField("label", "something else"))
    with pytest.raises(ConfigError, match="field name 'image' is invalid"):
        ExampleField("image", "the picture")


def test_a_registry_entry_registered_temporarily_is_gone_after_the_block():
    from mpt_core import PRESETS
    from mpt_core.prompts import Preset

    mine = Preset("mine", "a try", PRESETS.get("coop").build)
    with PRESETS.temporarily("mine", mine):
        assert PRESETS.get("mine") is mine and "mine" in PRESETS.names()
    assert "mine" not in PRESETS
    coop = PRESETS.get("coop")
    with PRESETS.temporarily("coop", mine):
        assert PRESETS.get("coop") is mine
    assert PRESETS.get("coop") is coop
