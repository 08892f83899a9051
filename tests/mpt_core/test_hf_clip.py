"""hf-clip: parity with transformers' own CLIP features, and loading by local path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import PreTrainedTokenizerFast

from mpt_core import load_backbone, tiny_backbone
from mpt_core.backbones import hf_clip
from mpt_core.errors import BackboneLoadError
from mpt_core.text import char_tokenizer

TEXTS = ["a photo of a cat.", "an x-ray of a chest", "b"]


def _images(n=3, size=48):
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size + 7, 3), dtype=np.uint8)) for _ in range(n)
    ]


def _features(output):
    return output.pooler_output if hasattr(output, "pooler_output") else output


def _assert_parity(backbone):
    model = backbone.model
    pixels = backbone.preprocess(_images())
    with torch.no_grad():
        ours = backbone.encode_image(backbone.image_stem(pixels))
        theirs = _features(model.get_image_features(pixel_values=pixels))
        assert torch.allclose(ours, theirs, atol=1e-5)
        inputs = backbone.tokenize(TEXTS)
        ours = backbone.encode_text(inputs)
        theirs = _features(
            model.get_text_features(
                input_ids=inputs.input_ids, attention_mask=inputs.attention_mask
            )
        )
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_no_prompt_embeddings_equal_transformers_features():
    _assert_parity(tiny_backbone("hf-clip"))


def test_text_prompts_fill_placeholders_and_change_embeddings():
    backbone = tiny_backbone("hf-clip")
    inputs = backbone.tokenize(TEXTS, n_prompt_tokens=2)
    assert (inputs.input_ids[:, 1:3] == backbone.tokenizer.placeholder_id).all()
    width = backbone.slots.text.width
    prompts = [torch.randn(2, width), torch.randn(2, width)]
    with torch.no_grad():
        plain = backbone.encode_text(inputs)
        prompted = backbone.encode_text(inputs, prompts)
    assert not torch.allclose(plain, prompted)
    with pytest.raises(ValueError, match="4 text prompt layers given; hf-clip accepts 2"):
        backbone.encode_text(inputs, prompts * 2)


def test_loads_a_saved_checkpoint_by_local_path(tmp_path):
    source = tiny_backbone("hf-clip")
    source.model.save_pretrained(tmp_path / "clip")
    PreTrainedTokenizerFast(
        tokenizer_object=char_tokenizer(hf_clip.TINY_SPECIALS),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    ).save_pretrained(tmp_path / "clip")
    loaded = load_backbone("hf-clip", str(tmp_path / "clip"))
    assert loaded.identity.weights_sha256 == source.identity.weights_sha256
    assert all(not p.requires_grad for p in loaded.parameters()) and not loaded.training
    assert load_backbone("hf-clip", str(tmp_path / "clip")) is loaded  # loaded once per process
    _assert_parity(loaded)


def test_unknown_hub_id_fails_offline_with_the_name_and_what_to_do():
    with pytest.raises(
        BackboneLoadError, match="'nobody/definitely-not-a-model' could not be"
    ) as e:
        load_backbone("hf-clip", "nobody/definitely-not-a-model")
    message = str(e.value)  # the platform is offline: no advice to check the connection
    assert "internet connection" not in message and "never downloads" in message
    assert "not in the local Hugging Face cache" in message and "Fix: name a local" in message
