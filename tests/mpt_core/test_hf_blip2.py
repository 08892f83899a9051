"""hf-blip2: parity with transformers' own BLIP-2 (OPT and T5), where each prompt goes,
loading by local path without the network, dtypes, padding and length limits."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import PreTrainedTokenizerFast

from mpt_core import (
    CaptioningTask,
    DataError,
    OpenVQATask,
    TrainConfig,
    build_prompts,
    fit,
    load_backbone,
    load_prompts,
    save_prompts,
    tiny_backbone,
)
from mpt_core.backbones import hf_blip2
from mpt_core.backbones.base import state_dict_sha256
from mpt_core.errors import BackboneLoadError

from .synthetic import examples

LMS = ["opt", "t5"]
PROMPTS = ["a photo of", "question: what is it? answer:"]
TARGETS = ["a cat on a mat", "two dogs"]


@pytest.fixture(scope="module", params=LMS)
def backbone(request):
    return hf_blip2.tiny(lm=request.param)


def _pixels(backbone, n=2):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 47, 3), dtype=np.uint8)) for _ in range(n)]
    return backbone.preprocess(images)


def _queries(backbone, pixels, prompts=None, fusion=None):
    return backbone.query_embeds(backbone.encode_image(pixels, prompts).tokens, fusion)


def _their_ids(backbone, prompt_ids, target_ids=None):
    """transformers' own input: image placeholders + (bos) + prompt (+ target) (+ eos)."""
    tok, image = backbone.tokenizer, backbone.model.config.image_token_index
    head = [image] * backbone.num_queries
    rows = []
    for i, prompt in enumerate(prompt_ids):
        if backbone.is_encoder_decoder:
            rows.append([*head, *prompt, tok.eos_id])
        else:
            tail = [*target_ids[i], tok.eos_id] if target_ids is not None else []
            rows.append([*head, tok.bos_id, *prompt, *tail])
    return torch.tensor(rows)


def test_no_prompt_logits_equal_transformers(backbone):
    tok = backbone.tokenizer
    prompts = tok.encode(["a cat is", "a dog is"])  # same length: no padding on their side
    targets = tok.encode([" on a mat", " in a hat"])
    pixels = _pixels(backbone)
    with torch.no_grad():
        logits, labels = backbone.lm_forward(_queries(backbone, pixels), None, prompts, targets)
        ids = _their_ids(backbone, prompts, targets)
        if backbone.is_encoder_decoder:
            their_labels = torch.tensor([[*t, tok.eos_id] for t in targets])
            theirs = backbone.model(pixel_values=pixels, input_ids=ids, labels=their_labels).logits
        else:
            theirs = backbone.model(pixel_values=pixels, input_ids=ids).logits[:, :-1]
    assert torch.allclose(logits, theirs, atol=1e-6)
    scored = labels != hf_blip2.IGNORE
    assert scored.sum(1).tolist() == [len(t) + 1 for t in targets]  # target + end token


@pytest.mark.parametrize("num_beams", [1, 3])
def test_no_prompt_generation_equals_transformers(backbone, num_beams):
    prompts = backbone.tokenizer.encode(["a cat is", "a dog is"])
    pixels = _pixels(backbone)
    ours = backbone.generate(
        _queries(backbone, pixels), None, prompts, max_new_tokens=8, num_beams=num_beams
    )
    ids = _their_ids(backbone, prompts)
    with torch.no_grad():
        theirs = backbone.model.generate(
            pixel_values=pixels, input_ids=ids, max_new_tokens=8, num_beams=num_beams
        )
    theirs = theirs[:, 1:] if backbone.is_encoder_decoder else theirs[:, ids.shape[1] :]
    stops = set(backbone.tokenizer.stop_ids)
    expected = [
        row[: next((i for i, t in enumerate(row) if t in stops), len(row))]
        for row in theirs.tolist()
    ]
    assert ours == expected
    assert any(ours)


def test_text_prompt_tokens_act_as_tokens_right_after_the_start(backbone):
    """p-tuning: prompt vectors equal to the embeddings of some tokens give exactly what
    those tokens, written after the start token (after the queries for T5), give."""
    tok = backbone.tokenizer
    inserted = tok.encode(["xy"])[0]
    prompts, targets = tok.encode(["a cat is"]), tok.encode([" here"])
    queries = _queries(backbone, _pixels(backbone, 1))
    embed = backbone.model.language_model.get_input_embeddings()
    with torch.no_grad():
        as_prompt, labels = backbone.lm_forward(
            queries, embed(torch.tensor(inserted)), prompts, targets
        )
        as_text, labels_text = backbone.lm_forward(queries, None, [inserted + prompts[0]], targets)
        plain, _ = backbone.lm_forward(queries, None, prompts, targets)
    assert torch.allclose(as_prompt, as_text, atol=1e-6) and torch.equal(labels, labels_text)
    assert as_prompt.shape[1] == plain.shape[1] + (0 if backbone.is_encoder_decoder else 2)


def test_visual_prompts_are_appended_and_change_what_the_q_former_reads(backbone):
    pixels = _pixels(backbone)
    slot = backbone.slots.vision
    prompts = [torch.randn(3, slot.width) for _ in range(slot.depth)]
    with torch.no_grad():
        plain = backbone.encode_image(pixels)
        prompted = backbone.encode_image(pixels, prompts)
    assert plain.prompt_states is None
    assert prompted.tokens.shape[1] == plain.tokens.shape[1] + 3
    assert torch.equal(prompted.prompt_states, prompted.tokens[:, -3:])
    assert not torch.allclose(prompted.tokens[:, :-3], plain.tokens)  # attention to prompts
    with pytest.raises(ValueError, match="vision prompt layers given; hf-blip2 accepts 2"):
        backbone.encode_image(pixels, prompts * 2)


def test_fusion_starts_shut_and_opens_with_its_gates(backbone):
    model = build_prompts(backbone, "mpt", CaptioningTask())
    pixels = _pixels(backbone)
    prompts = model.prompts()
    image = backbone.encode_image(pixels, prompts.vision)
    fusion = model.prompts.query_fusion(prompts, image.prompt_states)
    with torch.no_grad():
        alone = backbone.query_embeds(image.tokens)
        assert torch.equal(backbone.query_embeds(image.tokens, fusion), alone)
        model.prompts.fusion.gate.fill_(0.5)
        assert not torch.allclose(backbone.query_embeds(image.tokens, fusion), alone)
    assert backbone.fusion_slot.layers == 2  # the tiny Q-Former reads the image in both layers


def test_batched_generation_equals_one_at_a_time(backbone):
    """Rows of different lengths are padded (left for OPT, right for T5's encoder)."""
    prompts = backbone.tokenizer.encode(["a", "a much longer prompt, with words", "b c"])
    queries = _queries(backbone, _pixels(backbone, 3))
    text = torch.randn(2, backbone.embed_dim)
    batched = backbone.generate(queries, text, prompts, max_new_tokens=6, num_beams=2)
    single = [
        backbone.generate(queries[i : i + 1], text, [p], max_new_tokens=6, num_beams=2)[0]
        for i, p in enumerate(prompts)
    ]
    assert batched == single
    with torch.no_grad():
        targets = backbone.tokenizer.encode(["x", "yz", "a longer target"])
        loss = backbone.lm_loss(queries, text, prompts, targets)
        losses = [
            backbone.lm_loss(queries[i : i + 1], text, [prompts[i]], [targets[i]]) for i in range(3)
        ]
    counts = [len(t) + 1 for t in targets]  # token-weighted mean over the batch
    expected = sum(x * n for x, n in zip(losses, counts, strict=True)) / sum(counts)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_too_long_prompt_names_the_example_and_long_targets_are_cut(backbone):
    tok = backbone.tokenizer
    queries = _queries(backbone, _pixels(backbone, 2))
    with pytest.raises(DataError, match=r"example 1: its prompt takes \d+ of the .* \d+ positions"):
        backbone.lm_loss(queries, None, tok.encode(["ok", "x" * 1000]), tok.encode(["a", "b"]))
    if not backbone.is_encoder_decoder:
        long = tok.encode(["y" * 500])
        logits, labels = backbone.lm_forward(queries[:1], None, tok.encode(["ok"]), long)
        assert logits.shape[1] + 1 == backbone.max_positions
        assert labels[0, -1].item() == tok.eos_id  # cut captions still end


def test_loads_a_saved_checkpoint_by_local_path_without_the_network(tmp_path, monkeypatch):
    source = hf_blip2.tiny()
    source.model.save_pretrained(tmp_path / "blip2")
    PreTrainedTokenizerFast(
        tokenizer_object=hf_blip2.tiny_tokenizer(),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    ).save_pretrained(tmp_path / "blip2")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # offline by itself, not by env
        monkeypatch.delenv(var, raising=False)
    attempts = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(
        socket.socket, "connect", lambda s, a: attempts.append(a) or real_connect(s, a)
    )
    loaded = load_backbone("hf-blip2", str(tmp_path / "blip2"))
    assert loaded.identity.weights_sha256 == source.identity.weights_sha256
    assert loaded.identity.name == str((tmp_path / "blip2").resolve())
    assert all(not p.requires_grad for p in loaded.parameters()) and not loaded.training
    assert load_backbone("hf-blip2", str(tmp_path / "blip2")) is loaded  # loaded once
    prompts = loaded.tokenizer.encode(["a cat"])
    pixels = _pixels(source, 1)
    assert loaded.generate(
        _queries(loaded, pixels), None, prompts, max_new_tokens=5
    ) == source.generate(_queries(source, pixels), None, prompts, max_new_tokens=5)
    with pytest.raises(BackboneLoadError, match="'nobody/no-such-blip2' could not be loaded") as e:
        load_backbone("hf-blip2", "nobody/no-such-blip2")
    assert attempts == []
    assert "internet" not in str(e.value) and "never downloads" in str(e.value)
    assert "local-dir DIR`) and copy DIR here" in str(e.value)


def test_a_checkpoint_of_another_model_type_is_refused_by_name(tmp_path):
    tiny_backbone("hf-clip").model.save_pretrained(tmp_path / "clip")
    with pytest.raises(BackboneLoadError, match="is a 'clip' model, not BLIP-2"):
        load_backbone("hf-blip2", str(tmp_path / "clip"))
    with pytest.raises(BackboneLoadError, match="dtype 'int8' is not supported"):
        load_backbone("hf-blip2", str(tmp_path / "clip"), dtype="int8")


def test_bfloat16_weights_train_float32_prompts(tmp_path):
    """The GPU memory path, run on CPU: bf16 weights, fp32 prompts."""
    hf_blip2.tiny().model.save_pretrained(tmp_path / "blip2")
    PreTrainedTokenizerFast(tokenizer_object=hf_blip2.tiny_tokenizer()).save_pretrained(
        tmp_path / "blip2"
    )
    backbone = load_backbone("hf-blip2", str(tmp_path / "blip2"), dtype="bfloat16")
    assert backbone.model.language_model.dtype == torch.bfloat16
    assert backbone.model.vision_model.dtype == torch.bfloat16
    model = build_prompts(backbone, "mpt", CaptioningTask(max_new_tokens=4))
    data = examples("captioning", 1)
    before = state_dict_sha256(backbone)
    fit(model, data, data, TrainConfig(epochs=2, batch_size=4, progress=False))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert state_dict_sha256(backbone) == before
    assert len(model.predict(data)) == len(data)


def test_t5_backbone_tunes_saves_and_loads(tmp_path):
    backbone = hf_blip2.tiny(lm="t5")
    assert backbone.is_encoder_decoder and backbone.tokenizer.bos_id is None
    assert load_backbone("hf-blip2", "tiny-t5").name == "tiny-t5"
    model = build_prompts(backbone, "mpt", OpenVQATask(max_new_tokens=4))
    data = examples("vqa-open", 2)
    result = fit(model, data, config=TrainConfig(epochs=8, batch_size=6, lr=2e-2, progress=False))
    losses = [row["train_loss"] for row in result.history]
    assert min(losses[-3:]) < losses[0]
    save_prompts(model, tmp_path / "t5")
    loaded = load_prompts(tmp_path / "t5", backbone)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    assert loaded.predict(data) == model.predict(data)


@pytest.mark.slow
@pytest.mark.parametrize("lm", LMS)
def test_captioning_loss_falls_clearly_on_a_small_synthetic_set(lm):
    """`mpt` prompts on a frozen tiny random BLIP-2, 12 captions of 6 images: the
    teacher-forced loss falls by over a tenth (measured: a third with OPT, a fifth with
    T5). The random character-level LM does not write the captions yet."""
    model = build_prompts(hf_blip2.tiny(lm=lm), "mpt", CaptioningTask(max_new_tokens=8))
    data = examples("captioning", 2)
    config = TrainConfig(epochs=40, batch_size=12, lr=5e-2, patience=0, progress=False)
    losses = [row["train_loss"] for row in fit(model, data, config=config).history]
    assert min(losses[-3:]) < 0.9 * losses[0], losses
