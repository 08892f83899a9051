"""Every preset x every backbone family (tiny random) x every task, from the registries.

Pairs a family does not support (a dual-encoder task on a generative backbone, or the
reverse) are left out by asking `mpt_core.support`, never by naming them."""

from __future__ import annotations

import pytest
import torch

from mpt_core import (
    FAMILIES,
    PRESETS,
    TASKS,
    ImageFeatures,
    PromptServer,
    TrainConfig,
    build_prompts,
    fit,
    load_prompts,
    save_prompts,
    tiny_backbone,
)
from mpt_core.backbones.base import state_dict_sha256
from mpt_core.kinds import trainable_parameters
from mpt_core.support import family_presets, family_tasks, supports

from .synthetic import examples, make_task

MATRIX = [
    (f, p, t) for f in FAMILIES for p in PRESETS for t in TASKS if supports(f, task=t, preset=p)
]
IDS = [f"{f}-{p}-{t}" for f, p, t in MATRIX]
_backbones: dict[str, object] = {}


def backbone(family: str):
    if family not in _backbones:
        _backbones[family] = tiny_backbone(family)
    return _backbones[family]


def model_for(family: str, preset: str, task: str, seed: int = 0):
    return build_prompts(backbone(family), preset, make_task(task), seed=seed)


@pytest.mark.parametrize(("family", "preset", "task"), MATRIX, ids=IDS)
def test_forward_shapes(family, preset, task):
    model = model_for(family, preset, task)
    data = examples(task, 2)
    emb = model.encode_images([e.image for e in data])
    if model.backbone.kind == "dual-encoder":  # one shared, normalised embedding space
        dim = model.backbone.embed_dim
        assert emb.embedding.shape == (len(data), dim)
        assert torch.allclose(emb.embedding.norm(dim=-1), torch.ones(len(data)), atol=1e-5)
        if model.config.has_generator:
            assert emb.tokens.shape == (len(data), model.config.image_tokens, dim)
        else:
            assert emb.tokens is None
    else:  # query embeddings in the language model's input space
        assert torch.isfinite(emb).all()
        assert emb.shape == (len(data), model.backbone.num_queries, model.backbone.embed_dim)
    loss = model.task.loss(model, emb, data)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert len(model.predict(data)) == len(data)


@pytest.mark.parametrize(("family", "preset", "task"), MATRIX, ids=IDS)
def test_gradients_reach_every_prompt_and_no_backbone_parameter(family, preset, task):
    model = model_for(family, preset, task)
    data = examples(task, 2)
    prepared = model.prepare_images([e.image for e in data])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):  # the first step opens the zero-initialised fusion gates
        optimizer.zero_grad()
        model.task.loss(model, model.embed_prepared(prepared), data).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, (
            f"prompt parameter {name} got no gradient"
        )
    for name, p in model.backbone.named_parameters():
        assert not p.requires_grad and p.grad is None, f"backbone parameter {name} got a gradient"
    assert model.num_trainable() > 0


@pytest.mark.parametrize(("family", "preset", "task"), MATRIX, ids=IDS)
def test_training_lowers_loss_and_leaves_backbone_bit_identical(family, preset, task):
    model = model_for(family, preset, task)
    before = state_dict_sha256(model.backbone)
    data = examples(task, 4)
    result = fit(model, data, config=TrainConfig(epochs=12, batch_size=8, lr=2e-2, progress=False))
    losses = [row["train_loss"] for row in result.history]
    assert min(losses[-3:]) < losses[0], f"loss did not fall: {losses}"
    assert state_dict_sha256(model.backbone) == before


@pytest.mark.parametrize(("family", "preset", "task"), MATRIX, ids=IDS)
def test_save_load_round_trip_is_exact(family, preset, task, tmp_path):
    model = model_for(family, preset, task, seed=3)
    data = examples(task, 2)
    fit(model, data, config=TrainConfig(epochs=1, batch_size=8, progress=False))
    save_prompts(model, tmp_path / "artifact")
    loaded = load_prompts(tmp_path / "artifact", model.backbone)
    for (k, v), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)
    images = [e.image for e in data]
    ours, theirs = model.encode_images(images), loaded.encode_images(images)
    if model.backbone.kind != "dual-encoder":  # query embeddings of the language model
        assert torch.equal(ours, theirs)
        assert loaded.predict(data) == model.predict(data)
        return
    assert torch.equal(ours.embedding, theirs.embedding)
    assert (ours.tokens is None and theirs.tokens is None) or torch.equal(
        ours.tokens, theirs.tokens
    )
    with torch.no_grad():
        # texts neither model has embedded yet: a cached text embedding depends (in the last
        # bits) on the padding of the batch it was first embedded in
        texts = ["a small red square", "a large blue square"]
        assert torch.equal(model.embed_texts(texts), loaded.embed_texts(texts))
        assert torch.equal(
            model.score(ours, model.embed_texts(texts)),
            loaded.score(theirs, loaded.embed_texts(texts)),
        )
    assert loaded.predict(data) == model.predict(data)


@pytest.mark.parametrize(("family", "preset", "task"), MATRIX, ids=IDS)
def test_trainable_parameters_are_counted_without_building_the_task(family, preset, task):
    assert (
        trainable_parameters(backbone(family), preset)
        == model_for(family, preset, task).num_trainable()
    )


def test_every_family_and_task_is_in_the_matrix():
    assert {f for f, _, _ in MATRIX} == set(FAMILIES)
    assert {t for _, _, t in MATRIX} == set(TASKS)
    for family in FAMILIES:
        assert tiny_backbone(family).kind == FAMILIES.get(family).kind


def _domains(family: str) -> list[tuple[str, str]]:
    """At least three (preset, task) domains covering every task the family runs."""
    tasks, presets = family_tasks(family), family_presets(family)
    n = max(3, len(tasks))
    return [(presets[(i + 2) % len(presets)], tasks[i % len(tasks)]) for i in range(n)]


@pytest.mark.parametrize(("family", "preset", "task"), MATRIX, ids=IDS)
def test_image_conditioned_prompts_change_with_the_input_image(family, preset, task):
    """Where a preset conditions on the image, each image gets its own prompt tokens, and
    another image's tokens change its embedding (residual) and its scores (PFM); the other
    presets' prompts are the same for every image."""
    model = model_for(family, preset, task)
    if model.backbone.kind != "dual-encoder":
        pytest.skip("generative backbones condition through the Q-Former (test_hf_blip2.py)")
    data = examples(task, 2)
    fit(model, data, config=TrainConfig(epochs=3, batch_size=4, lr=5e-2, progress=False))
    with torch.no_grad():
        feats = model.encode_images([data[0].image, data[-1].image])
        if not model.config.image_conditioned:
            assert feats.tokens is None
            return
        own, other = feats.tokens[:1], feats.tokens[1:]
        assert not torch.allclose(own, other), "prompt tokens do not depend on the image"
        text = model.embed_texts(["a red square", "a blue square", "is it red? yes"])
        swapped = ImageFeatures(feats.embedding[:1], other)
        if model.prompts.fusion is not None:
            assert not torch.allclose(model.score(feats[:1], text), model.score(swapped, text)), (
                "the PFM ignores the image's tokens"
            )
        if model.prompts.image_residual is not None:
            stem = model.prepare_images([data[0].image])
            raw = model.backbone.encode_image(stem, model.prompts().vision)
            base = torch.nn.functional.normalize(raw - model.image_center, dim=-1)
            assert not torch.allclose(
                model.prompts.condition_image(base, own), model.prompts.condition_image(base, other)
            ), "the residual ignores the image's tokens"


@pytest.mark.parametrize(("family", "preset", "task"), MATRIX, ids=IDS)
def test_text_tower_runs_once_per_step_never_per_image(family, preset, task, monkeypatch):
    """Text embeddings are a function of the candidate texts alone: at most one prompted
    and one frozen (anchor, cached) text-tower call per loss, each over the distinct
    candidates, never one per image."""
    model = model_for(family, preset, task)
    if model.backbone.kind != "dual-encoder":
        pytest.skip("a generative backbone has no text tower")
    data = examples(task, 3)
    prepared = model.prepare_images([e.image for e in data])
    model._text_cache.clear()
    calls = []
    real = model.backbone.encode_text
    monkeypatch.setattr(
        model.backbone,
        "encode_text",
        lambda inputs, p=None: calls.append(len(inputs.input_ids)) or real(inputs, p),
    )
    model.task.loss(model, model.embed_prepared(prepared), data)
    model.pop_auxiliary_loss()
    candidates = {"classification": 3, "retrieval": 3, "vqa": 5}[task]
    assert 1 <= len(calls) <= 2 and all(n == candidates for n in calls), calls


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mixed_domain_batch_equals_per_domain(family):
    server = PromptServer(backbone(family))
    domains = {}
    for i, (preset, task) in enumerate(_domains(family)):
        model = model_for(family, preset, task, seed=i)
        fit(model, examples(task, 2), config=TrainConfig(epochs=1, progress=False))
        server.add(f"{task}-{i}", model)
        domains[f"{task}-{i}"] = (model, examples(task, 2, seed=7 + i))
    mixed = [(d, ex) for d, (_, data) in domains.items() for ex in data]
    mixed = mixed[::2] + mixed[1::2]  # interleave domains
    combined = server.predict(mixed)
    for domain, (model, data) in domains.items():
        alone = model.predict(data)
        got = [p for (d, _), p in zip(mixed, combined, strict=True) if d == domain]
        expected = [alone[data.index(ex)] for d, ex in mixed if d == domain]
        assert got == expected
