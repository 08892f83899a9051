"""Task metrics and the errors a bad example gets."""

from __future__ import annotations

import pytest
import torch

from mpt_core import (
    ClassificationTask,
    ConfigError,
    DataError,
    Example,
    VQATask,
    build_prompts,
    tiny_backbone,
)
from mpt_core.support import family_tasks
from mpt_core.tasks.metrics import macro_f1, per_class_accuracy, recall_at_k

from .synthetic import examples, make_task


def test_recall_at_k_counts_any_positive():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    positives = torch.tensor([[False, True, False], [True, False, True]])
    assert recall_at_k(scores, positives, [1, 2, 3]) == {1: 0.0, 2: 0.5, 3: 1.0}


def test_macro_f1_and_per_class_accuracy():
    pred, target = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2])
    assert macro_f1(pred, target, 3) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert per_class_accuracy(pred, target, ["a", "b", "c"]) == {"a": 1.0, "b": 0.5, "c": 1.0}


def test_unknown_label_names_the_example_and_the_classes():
    task = ClassificationTask(["cat", "dog"])
    with pytest.raises(
        DataError, match=r"example 1: label 'Dgo' is not one of the classes \['cat', 'dog'\]"
    ):
        task.check([Example("x.png", label="cat"), Example("y.png", label="Dgo")])


def test_missing_field_names_the_example():
    with pytest.raises(
        DataError, match="example 0: the retrieval task needs a non-empty 'caption'"
    ):
        make_task("retrieval").check([Example("x.png", caption="  ")])


def test_vqa_rejects_undeclared_questions_and_answers():
    task = VQATask({"is it red?": ["yes", "no"]})
    with pytest.raises(DataError, match=r"example 0: question 'why\?' has no declared answers"):
        task.check([Example("x.png", question="why?", answer="yes")])
    with pytest.raises(DataError, match="answer 'maybe' to 'is it red\\?' is not one of"):
        task.check([Example("x.png", question="is it red?", answer="maybe")])


def test_bad_task_specs_are_config_errors():
    with pytest.raises(ConfigError, match="at least 2 class names"):
        ClassificationTask(["only"])
    with pytest.raises(ConfigError, match="repeated"):
        ClassificationTask(["a", "a"])
    with pytest.raises(ConfigError, match="no '\\{\\}'"):
        ClassificationTask(["a", "b"], template="a photo")
    with pytest.raises(ConfigError, match="at least 2 distinct candidate answers"):
        VQATask({"q?": ["yes"]})


def test_candidate_texts_are_embedded_once_per_call(monkeypatch):
    model = build_prompts(tiny_backbone("shipped"), "mpt", make_task("vqa"))
    data = examples("vqa", 3)
    calls = []
    real = model.backbone.encode_text
    monkeypatch.setattr(
        model.backbone,
        "encode_text",
        lambda inputs, p=None: calls.append(len(inputs.input_ids)) or real(inputs, p),
    )
    model.task.loss(model, model.encode_images([e.image for e in data]), data)
    assert calls == [5]  # 3 colour answers + yes/no, for 12 examples, in one call


def test_retrieval_with_shared_captions_counts_every_matching_image():
    task = make_task("retrieval")
    model = build_prompts(tiny_backbone("hf-clip"), "coop", task)
    data = examples("retrieval", 3)
    metrics = task.evaluate(model, model.encode_images([e.image for e in data]), data)
    assert set(metrics) >= {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "r1_mean"}
    assert metrics["i2t_r10"] == 1.0  # only 3 distinct captions: all are in the top 10


TOP1 = {"classification": "accuracy", "vqa": "accuracy", "retrieval": "i2t_r1"}


@pytest.mark.parametrize("task_name", family_tasks("shipped"))
def test_scored_predictions_match_predict_and_the_top1_metric(task_name):
    """Per-example predictions (stored for reviewers) agree with what `evaluate` reports."""
    model = build_prompts(tiny_backbone("shipped"), "mpt", make_task(task_name))
    batch = examples(task_name, per_class=3)
    with torch.no_grad():
        emb = model.encode_images([e.image for e in batch])
        scored = model.task.predict_scored(model, emb, batch)
        metrics = model.task.evaluate(model, emb, batch)
    assert [p for p, _ in scored] == model.task.predict(model, emb, batch)
    assert all(0.0 < s <= 1.0 for _, s in scored)
    targets = [getattr(e, model.task.contract.target) for e in batch]
    correct = sum(p == t for (p, _), t in zip(scored, targets, strict=True)) / len(batch)
    assert correct == pytest.approx(metrics[TOP1[task_name]])


@pytest.mark.parametrize("task_name", family_tasks("hf-blip2"))
def test_generated_predictions_carry_no_score(task_name):
    from mpt_core import load_backbone

    model = build_prompts(load_backbone("hf-blip2", "tiny"), "coop", make_task(task_name))
    batch = examples(task_name, per_class=1)
    with torch.no_grad():
        emb = model.encode_images([e.image for e in batch])
        scored = model.task.predict_scored(model, emb, batch)
        texts = model.task.predict(model, emb, batch)
    assert [p for p, _ in scored] == texts and {s for _, s in scored} == {None}
    assert model.task.contract.target in model.task.contract.fields


def test_a_contract_names_its_target_or_derives_it():
    from mpt_core import TASKS
    from mpt_core.tasks import TaskContract, ValueSet

    closed = TaskContract(("answer",), ("accuracy",), "accuracy", ValueSet("answer", "labels"))
    free = TaskContract(("question", "answer"), ("accuracy",), "accuracy")
    assert closed.target == "answer" and free.target == "answer"
    targets = {name: TASKS.get(name).contract.target for name in TASKS}
    assert targets == {
        "captioning": "caption",
        "classification": "label",
        "retrieval": "caption",
        "vqa": "answer",
        "vqa-open": "answer",
    }
    with pytest.raises(ValueError, match="target 'label' is not one of the fields"):
        TaskContract(("caption",), ("r1",), "r1", target="label")
