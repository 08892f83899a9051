"""Inference: the per-model text-embedding cache, task scores, and mixed batches that run
the image stem once per backbone. Generated from the registries like test_matrix."""

from __future__ import annotations

import pytest
import torch

from mpt_core import (
    FAMILIES,
    PRESETS,
    TASKS,
    DataError,
    Example,
    PromptServer,
    TrainConfig,
    build_prompts,
    fit,
    tiny_backbone,
)
from mpt_core.inference import predict_batch

from .synthetic import examples, make_task

CACHE_MATRIX = [(f, p, t) for f in FAMILIES for p in PRESETS for t in TASKS]
CACHE_IDS = [f"{f}-{p}-{t}" for f, p, t in CACHE_MATRIX]


class Counter:
    """Counts calls to one bound method of a backbone (the text tower or the image stem)."""

    def __init__(self, monkeypatch, obj, name: str) -> None:
        self.calls = 0
        original = getattr(obj, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(obj, name, counted)


def texts_of(model, data) -> list[str]:
    """The candidate texts a task embeds for `data`."""
    task = model.task
    if task.name == "classification":
        return task.texts()
    if task.name == "vqa":
        return [
            task.template.format(question=q, answer=a)
            for q in dict.fromkeys(e.question for e in data)
            for a in task.candidates(q)
        ]
    return list(dict.fromkeys(e.caption for e in data))


@pytest.mark.parametrize(("family", "preset", "task"), CACHE_MATRIX, ids=CACHE_IDS)
def test_cached_text_embeddings_equal_fresh_ones_and_follow_training(
    family, preset, task, monkeypatch
):
    model = build_prompts(tiny_backbone(family), preset, make_task(task), seed=1)
    data = examples(task, 2)
    texts = texts_of(model, data)
    tower = Counter(monkeypatch, model.backbone, "encode_text")
    with torch.no_grad():
        first = model.embed_texts(texts)
        again = model.embed_texts(list(reversed(texts)))
    assert tower.calls == 1, "a second inference call must not run the text tower"
    assert torch.equal(again, first.flip(0))
    with torch.no_grad():
        fresh = model._encode_texts(texts)
    assert torch.allclose(first, fresh, atol=1e-6)

    # a training step changes the prompts: inference must see the new ones, not the cache
    fit(model, data, config=TrainConfig(epochs=2, batch_size=8, lr=5e-2, progress=False))
    with torch.no_grad():
        after = model.embed_texts(texts)
        fresh = model._encode_texts(texts)
    assert torch.allclose(after, fresh, atol=1e-6)
    if not model.text_frozen:
        assert not torch.allclose(after, first, atol=1e-4), "training did not move text prompts"


def test_load_state_dict_drops_the_cache(monkeypatch):
    model = build_prompts(tiny_backbone("shipped"), "mpt", make_task("classification"), seed=1)
    other = build_prompts(model.backbone, "mpt", make_task("classification"), seed=2)
    texts = model.task.texts()
    with torch.no_grad():
        before = model.embed_texts(texts)
        model.load_state_dict(other.state_dict())
        after = model.embed_texts(texts)
        expected = other.embed_texts(texts)
    assert torch.allclose(after, expected, atol=1e-6)
    assert not torch.allclose(after, before, atol=1e-4)


def test_training_mode_with_grad_never_reads_the_cache(monkeypatch):
    model = build_prompts(tiny_backbone("hf-clip"), "coop", make_task("classification"))
    texts = model.task.texts()
    with torch.no_grad():
        model.embed_texts(texts)
    tower = Counter(monkeypatch, model.backbone, "encode_text")
    emb = model.embed_texts(texts)  # grad enabled: a training step needs the graph
    assert tower.calls == 1 and emb.requires_grad


def test_cache_is_bounded(monkeypatch):
    import mpt_core.model as model_module

    monkeypatch.setattr(model_module, "TEXT_CACHE_SIZE", 3)
    model = build_prompts(tiny_backbone("shipped"), "coop", make_task("retrieval"))
    with torch.no_grad():
        for i in range(6):
            model.embed_texts([f"caption {i}"])
    assert list(model._text_cache) == ["caption 3", "caption 4", "caption 5"]


@pytest.mark.parametrize(("family", "task"), [(f, t) for f in FAMILIES for t in TASKS])
def test_scores_are_probabilities_whose_argmax_is_the_prediction(family, task):
    model = build_prompts(tiny_backbone(family), "mpt", make_task(task), seed=4)
    data = examples(task, 2, seed=3)
    with torch.no_grad():
        emb = model.encode_images([e.image for e in data])
        scores = model.task.scores(model, emb, data)
    preds = model.predict(data)
    for row, pred, example in zip(scores, preds, data, strict=True):
        assert abs(sum(row.values()) - 1) < 1e-5 and all(0 <= v <= 1 for v in row.values())
        assert max(row, key=row.__getitem__) == pred
        if task == "vqa":
            assert list(row) == model.task.candidates(example.question)


def test_retrieval_ranks_each_examples_own_candidates():
    model = build_prompts(tiny_backbone("shipped"), "coop", make_task("retrieval"))
    data = examples("retrieval", 1)
    items = [
        Example(data[0].image, candidates=("a red square", "a blue square")),
        Example(data[1].image, candidates=("a green square",)),
        Example(data[2].image),
    ]
    with torch.no_grad():
        emb = model.encode_images([e.image for e in items])
        scores = model.task.scores(model, emb, items)
    assert list(scores[0]) == ["a red square", "a blue square"]
    assert scores[1] == {"a green square": pytest.approx(1.0)}
    assert scores[2] == {}, "no candidates and no captions in the batch: nothing to rank"


def test_check_inputs_names_the_example_and_field():
    vqa = make_task("vqa")
    image = examples("vqa", 1)[0].image
    with pytest.raises(DataError) as err:
        vqa.check_inputs([Example(image, question="is the square red?"), Example(image)])
    assert (err.value.index, err.value.field) == (1, "question")
    with pytest.raises(DataError) as err:
        vqa.check_inputs([Example(image, question="how big is it?")])
    assert (err.value.index, err.value.field) == (0, "question")
    assert "declared questions" in str(err.value)
    with pytest.raises(DataError) as err:
        make_task("retrieval").check_inputs([Example(image, candidates=("ok", " "))])
    assert err.value.field == "candidates"
    make_task("classification").check_inputs([Example(image)])


def _three_domains(backbone):
    domains = {}
    for i, (preset, task) in enumerate(
        [("mpt", "classification"), ("coop", "vqa"), ("maple", "retrieval"), ("vpt", "vqa")]
    ):
        model = build_prompts(backbone, preset, make_task(task), seed=i)
        fit(model, examples(task, 2), config=TrainConfig(epochs=1, progress=False))
        domains[f"{preset}-{task}"] = (model.eval(), examples(task, 2, seed=7 + i))
    return domains


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mixed_batch_runs_the_stem_once_and_equals_per_domain_predictions(family, monkeypatch):
    backbone = tiny_backbone(family)
    domains = _three_domains(backbone)
    server = PromptServer(backbone)
    for name, (model, _) in domains.items():
        server.add(name, model)
    mixed = [(d, ex) for d, (_, data) in domains.items() for ex in data]
    mixed = mixed[::2] + mixed[1::2]  # interleave domains
    alone = {}
    with torch.no_grad():
        for d, (model, data) in domains.items():
            emb = model.encode_images([e.image for e in data])
            alone[d] = dict(zip(map(id, data), model.task.scores(model, emb, data), strict=True))
    stem = Counter(monkeypatch, backbone, "image_stem")
    got = server.predictions(mixed)
    assert stem.calls == 1
    for (domain, example), prediction in zip(mixed, got, strict=True):
        expected = alone[domain][id(example)]
        assert prediction.scores.keys() == expected.keys()
        for key, value in expected.items():
            assert prediction.scores[key] == pytest.approx(value, abs=1e-5)
        assert prediction.value == max(expected, key=expected.__getitem__)
    predicted = server.predict(mixed)
    for domain, (model, data) in domains.items():
        from_server = [p for (d, _), p in zip(mixed, predicted, strict=True) if d == domain]
        by_example = dict(zip(map(id, data), model.predict(data), strict=True))
        assert from_server == [by_example[id(ex)] for d, ex in mixed if d == domain]


def test_a_batch_may_mix_backbones():
    shipped, clip = tiny_backbone("shipped"), tiny_backbone("hf-clip")
    a = build_prompts(shipped, "mpt", make_task("classification"))
    b = build_prompts(clip, "mpt", make_task("classification"), seed=1)
    data = examples("classification", 2)
    items = [(a if i % 2 else b, ex) for i, ex in enumerate(data)]
    got = [p.value for p in predict_batch(items)]
    assert got[1::2] == a.predict(data[1::2]) and got[::2] == b.predict(data[::2])
