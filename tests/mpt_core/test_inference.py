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
from mpt_core.support import family_tasks, supports

from .synthetic import examples, make_task

DUAL = [f for f in FAMILIES if FAMILIES.get(f).kind == "dual-encoder"]
CACHE_MATRIX = [
    (f, p, t) for f in DUAL for p in PRESETS for t in TASKS if supports(f, task=t, preset=p)
]
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


def scores_of(model, emb, data, cached: bool) -> list[dict[str, float]]:
    """The task's scores from cached text embeddings, or from the text tower itself."""
    if cached:
        with torch.no_grad():
            return model.task.scores(model, emb, data)
    model._inference_cache.clear()
    with torch.enable_grad():  # a training step's path: never the inference cache
        out = model.task.scores(model, emb, data)
    model._inference_cache.clear()
    return out


def assert_same(a: list[dict[str, float]], b: list[dict[str, float]], tol: float = 1e-6):
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and all(abs(x[k] - y[k]) <= tol for k in x)


@pytest.mark.parametrize(("family", "preset", "task"), CACHE_MATRIX, ids=CACHE_IDS)
def test_cached_text_embeddings_equal_fresh_ones_and_follow_training(
    family, preset, task, monkeypatch
):
    model = build_prompts(tiny_backbone(family), preset, make_task(task), seed=1)
    data = examples(task, 2)
    with torch.no_grad():
        emb = model.encode_images([e.image for e in data])
    tower = Counter(monkeypatch, model.backbone, "encode_text")
    first = scores_of(model, emb, data, cached=True)
    calls = tower.calls
    again = scores_of(model, emb, data, cached=True)
    assert calls >= 1 and tower.calls == calls, "a second inference call ran the text tower"
    assert_same(again, first)
    assert_same(first, scores_of(model, emb, data, cached=False))

    # a training step changes the prompts: inference must see the new ones, not the cache
    scores_of(model, emb, data, cached=True)
    fit(model, data, config=TrainConfig(epochs=2, batch_size=8, lr=5e-2, progress=False))
    after = scores_of(model, emb, data, cached=True)
    assert_same(after, scores_of(model, emb, data, cached=False))
    if not model.text_frozen:
        moved = any(abs(a[k] - b[k]) > 1e-4 for a, b in zip(after, first, strict=True) for k in a)
        assert moved, "training did not move the text prompts"


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
    assert list(model._inference_cache) == ["caption 3", "caption 4", "caption 5"]


@pytest.mark.parametrize(("family", "task"), [(f, t) for f in DUAL for t in family_tasks(f)])
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
        if model.task.inputs:  # the candidates come from the example (a question's answers)
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
        vqa.check_inputs([Example(image, question="is it red?"), Example(image)])
    assert (err.value.index, err.value.field) == (1, "question")
    with pytest.raises(DataError) as err:
        vqa.check_inputs([Example(image, question="how big is it?")])
    assert (err.value.index, err.value.field) == (0, "question")
    assert "declared questions" in str(err.value)
    with pytest.raises(DataError) as err:
        make_task("retrieval").check_inputs([Example(image, candidates=("ok", " "))])
    assert err.value.field == "candidates"
    make_task("classification").check_inputs([Example(image)])


def _domains(backbone):
    """Four domains on `backbone`: every task it runs, presets with and without visual
    prompts (models without them share one plain image embedding)."""
    tasks = family_tasks(backbone.family)
    presets = ("mpt", "coop", "maple", "vpt")
    domains = {}
    for i, preset in enumerate(presets):
        task = tasks[i % len(tasks)]
        model = build_prompts(backbone, preset, make_task(task), seed=i)
        fit(model, examples(task, 2), config=TrainConfig(epochs=1, progress=False))
        domains[f"{preset}-{task}"] = (model.eval(), examples(task, 2, seed=7 + i))
    return domains


@pytest.mark.parametrize("family", DUAL)
def test_mixed_batch_runs_the_stem_once_and_equals_per_domain_predictions(family, monkeypatch):
    backbone = tiny_backbone(family)
    domains = _domains(backbone)
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


def test_a_batch_may_mix_backbones_of_both_kinds():
    """Dual encoders of two families and a generative backbone in one call."""
    families = list(FAMILIES)
    models = []
    for i, family in enumerate(families):
        task = family_tasks(family)[0]
        models.append((build_prompts(tiny_backbone(family), "mpt", make_task(task), seed=i), task))
    items, expected = [], []
    for k in range(2):
        for model, task in models:
            example = examples(task, 1, seed=k)[k]
            items.append((model, example))
            expected.append(model.predict([example])[0])
    got = predict_batch(items)
    assert [p.value for p in got] == expected
    for (model, _), p in zip(items, got, strict=True):
        generative = model.backbone.kind != "dual-encoder"
        assert (p.embedding is None) == generative and (p.scores == {}) == generative


@pytest.mark.parametrize(
    ("family", "task"), [(f, t) for f in FAMILIES for t in family_tasks(f)], ids="-".join
)
def test_predictions_from_stored_features_equal_those_from_images(family, task, tmp_path):
    """`mpt predict` scores from the feature store; what it answers must not change."""
    from mpt_core.featurestore import FeatureStore

    model = build_prompts(tiny_backbone(family), "mpt", make_task(task)).eval()
    data = examples(task, 1)
    direct = predict_batch([(model, e) for e in data])
    view = model.prepare_images([e.image for e in data], store=FeatureStore(tmp_path))
    stored = predict_batch([(model, e) for e in data], prepared=list(view[:]))
    assert [p.value for p in stored] == [p.value for p in direct]
    for a, b in zip(stored, direct, strict=True):
        assert a.scores.keys() == b.scores.keys()
        assert all(abs(a.scores[k] - b.scores[k]) < 1e-5 for k in a.scores)
