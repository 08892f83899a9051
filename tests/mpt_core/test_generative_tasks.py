"""Captioning and vqa-open: evaluation plumbing, data contracts, and the errors a user gets
for a task on the wrong kind of backbone, a bad config or a bad example."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np
import pytest

from mpt_core import (
    FAMILIES,
    PRESETS,
    TASKS,
    CaptioningTask,
    ClassificationTask,
    ConfigError,
    DataError,
    Example,
    OpenVQATask,
    TrainConfig,
    UnknownNameError,
    build_prompts,
    evaluate,
    fit,
    load_prompts,
    save_prompts,
    tiny_backbone,
)
from mpt_core.data import FIELDS
from mpt_core.generative.prompts import GenerativePrompts
from mpt_core.prompts import PromptConfig
from mpt_core.support import family_tasks, supports
from mpt_core.tasks import task_from_dict
from mpt_core.tasks.generation import image_key
from mpt_core.tasks.text_metrics import bleu, caption_tokens, cider_d, vqa_accuracy

from .synthetic import CLASSES, COLOUR_QUESTION, examples, image, make_task


@pytest.fixture(scope="module")
def blip2():
    return tiny_backbone("hf-blip2")


# --- the right kind of backbone ---------------------------------------------------------
def hosts(task: str) -> str:
    """The families that run `task`, as the refusal's HINT lists them."""
    return ", ".join(f for f in FAMILIES if supports(f, task=task))


def test_a_dual_encoder_task_on_a_generative_backbone_is_refused(blip2):
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "task 'classification' needs a dual-encoder backbone, but hf-blip2 is a generative "
            f"backbone; hf-blip2 runs: {', '.join(family_tasks('hf-blip2'))}. HINT: "
            f"classification runs on {hosts('classification')}"
        ),
    ):
        build_prompts(blip2, "mpt", ClassificationTask(CLASSES))


def test_a_generative_task_on_a_dual_encoder_is_refused():
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "task 'captioning' needs a generative backbone, but hf-clip is a dual-encoder "
            f"backbone; hf-clip runs: {', '.join(family_tasks('hf-clip'))}. HINT: captioning "
            f"runs on {hosts('captioning')}"
        ),
    ):
        build_prompts(tiny_backbone("hf-clip"), "coop", CaptioningTask())


def test_an_unregistered_task_is_checked_by_its_kind_not_looked_up(blip2):
    class FruitTask(ClassificationTask):
        name = "fruit"

    model = build_prompts(tiny_backbone("hf-clip"), "coop", FruitTask(["apple", "pear"]))
    assert model.task.name == "fruit"
    with pytest.raises(ConfigError, match="task 'fruit' needs a dual-encoder backbone"):
        build_prompts(blip2, "coop", FruitTask(["apple", "pear"]))


def test_presets_outside_the_familys_list_are_refused_with_what_it_supports(blip2):
    only_coop = dataclasses.replace(FAMILIES.get("hf-blip2"), presets=("coop",))
    with (
        FAMILIES.temporarily("hf-blip2", only_coop),
        pytest.raises(
            ConfigError, match="preset 'mpt' is not available on hf-blip2; it supports: coop"
        ),
    ):
        build_prompts(blip2, "mpt", CaptioningTask())
    known = ", ".join(PRESETS.names())
    with pytest.raises(UnknownNameError, match=f"unknown prompt preset 'bogus'; known: {known}"):
        build_prompts(blip2, "bogus", CaptioningTask())


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        (
            "coop",
            {"text_depth": 2},
            r"text_depth=2: this backbone's text tower takes prompts in 1\.\.1",
        ),
        (
            "mpt",
            {"vision_learnable": False},
            "vision_learnable=False leaves visual prompts with nothing to learn from",
        ),
        ("mpt", {"fusion_width": 30}, "fusion_width=30 is not divisible by fusion_heads=4"),
        ("maple", {"vision_tokens": 2}, r"text_tokens \(4\) must equal vision_tokens \(2\)"),
    ],
)
def test_invalid_prompt_configs_name_the_field(blip2, preset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_prompts(blip2, preset, CaptioningTask(), **overrides)


def test_a_prompt_setting_this_family_does_not_read_is_refused(blip2):
    @dataclass
    class LaterPromptConfig(PromptConfig):  # a field a dual-encoder change might add
        vision_source: str = "static"

    GenerativePrompts(LaterPromptConfig(), blip2)  # at its default: fine
    with pytest.raises(
        ConfigError, match="vision_source='image' has no meaning on hf-blip2; leave it at 'static'"
    ):
        GenerativePrompts(LaterPromptConfig(vision_source="image"), blip2)


# --- bad examples and task specs --------------------------------------------------------
def test_an_empty_caption_or_answer_names_the_example(blip2):
    model = build_prompts(blip2, "coop", CaptioningTask())
    data = examples("captioning", 1)
    data[1] = Example(data[1].image, caption="  ")
    with pytest.raises(
        DataError, match=r"example 1: the captioning task needs a non-empty 'caption'; got '  '"
    ):
        fit(model, data, config=TrainConfig(epochs=1, progress=False))
    vqa = build_prompts(blip2, "coop", OpenVQATask())
    with pytest.raises(DataError, match=r"example 0: the vqa-open task needs a non-empty 'answer'"):
        evaluate(vqa, [Example(data[0].image, question="what colour?")])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CaptioningTask(num_beams=0), r"captioning num_beams=0: must be an integer >= 1"),
        (lambda: CaptioningTask(max_new_tokens=2.5), r"captioning max_new_tokens=2.5"),
        (lambda: CaptioningTask(prompt="a photo of {}"), "no placeholders"),
        (lambda: OpenVQATask(template="Answer:"), r"needs \{question\} where the question goes"),
        (lambda: OpenVQATask(template="{question} {hint}"), r"may hold only \{question\}"),
        (
            lambda: CaptioningTask.from_declaration({"labels": ["a", "b"]}),
            "'labels' is not used by task 'captioning'",
        ),
        (
            lambda: OpenVQATask.from_declaration({"answers": ["yes", "no"]}),
            "for a fixed answer set use task 'vqa'",
        ),
        (  # the hint is for the value sets only, not for a misspelt option
            lambda: CaptioningTask.from_declaration({"num_beam": 2}),
            r"^'num_beam' is not used by task 'captioning'; remove it$",
        ),
    ],
)
def test_bad_task_specs_are_config_errors(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_task_specs_round_trip_and_declarations_fill_the_options():
    for task in (
        CaptioningTask("a photo of", num_beams=3, max_new_tokens=20),
        OpenVQATask("Q: {question} A:", 2, 5),
    ):
        rebuilt = task_from_dict(task.name, task.to_dict())
        assert type(rebuilt) is type(task) and rebuilt.to_dict() == task.to_dict()
    declared = CaptioningTask.from_declaration({"template": "a photo of", "num_beams": 4})
    assert declared.to_dict() == {"prompt": "a photo of", "num_beams": 4, "max_new_tokens": 30}
    assert OpenVQATask.from_declaration({}).template == "Question: {question} Answer:"


# --- evaluation and contracts ------------------------------------------------------------
def test_captioning_generates_once_per_image_and_scores_every_reference(blip2, monkeypatch):
    model = build_prompts(blip2, "mpt", CaptioningTask(num_beams=2, max_new_tokens=8))
    data = examples("captioning", 2)  # 6 images, 2 captions each
    rows = []
    real = model.generate
    monkeypatch.setattr(
        model, "generate", lambda q, p, **kw: rows.append(len(p)) or real(q, p, **kw)
    )
    metrics = evaluate(model, data)
    assert rows == [6]
    predictions = model.predict(data)
    assert predictions[0::2] == predictions[1::2]  # both rows of an image: one caption
    hypotheses = {i: caption_tokens(predictions[2 * i]) for i in range(6)}
    references = {
        i: [caption_tokens(data[2 * i].caption), caption_tokens(data[2 * i + 1].caption)]
        for i in range(6)
    }
    assert metrics["cider"] == pytest.approx(cider_d(hypotheses, references)[0])
    scores = bleu(hypotheses, references)
    assert (metrics["bleu1"], metrics["bleu4"]) == pytest.approx((scores[0], scores[3]))
    per_row = model.task.example_scores(predictions, data)  # each row: its image's CIDEr-D
    assert (
        per_row[0::2]
        == per_row[1::2]
        == pytest.approx(list(cider_d(hypotheses, references)[1].values()))
    )
    assert sum(per_row[0::2]) / 6 == pytest.approx(metrics["cider"])


def test_vqa_open_scores_each_question_against_all_its_annotators(blip2):
    model = build_prompts(blip2, "coop", OpenVQATask(max_new_tokens=4))
    rng = np.random.default_rng(3)
    data = []
    for name in CLASSES:
        img = image(name, rng)
        # four annotators per question, one disagreeing; repeated rows are repeated answers
        data += [
            Example(img, question=COLOUR_QUESTION, answer=a, question_type="what colour")
            for a in [name] * 3 + ["grey"]
        ]
        data.append(Example(img, question="is it square?", answer="yes"))
    metrics = evaluate(model, data)
    predictions = model.predict(data)
    expected = {}
    for name_index in range(3):
        block = data[5 * name_index : 5 * name_index + 5]
        answers = predictions[5 * name_index : 5 * name_index + 5]
        assert len(set(answers[:4])) == 1  # one generation per (image, question)
        expected[("c", name_index)] = vqa_accuracy(answers[0], [e.answer for e in block[:4]])
        expected[("s", name_index)] = vqa_accuracy(answers[4], ["yes"])
    assert metrics["accuracy"] == pytest.approx(sum(expected.values()) / 6)
    per_row = model.task.example_scores(predictions, data)  # each row: its question's score
    for name_index in range(3):
        block = per_row[5 * name_index : 5 * name_index + 5]
        assert block[:4] == [expected[("c", name_index)]] * 4
        assert block[4] == expected[("s", name_index)]
    assert set(metrics["per_question_type_accuracy"]) == {"what colour", "is it square?"}
    assert set(metrics["per_answer_type_accuracy"]) == {"other", "yes/no"}


def test_rows_of_one_image_group_together_however_the_image_was_handed_over():
    rng = np.random.default_rng(0)
    img = image("red", rng)
    assert image_key(img) == image_key(img.copy()) != image_key(image("red", rng))
    assert image_key("images/a.png") == image_key("./images/a.png") != image_key("images/b.png")


@pytest.mark.parametrize("task", TASKS.names())  # every task declares its contract
def test_each_declared_contract_matches_what_the_task_reports(task):
    cls = TASKS.get(task)
    contract = cls.contract
    assert contract.primary_metric == cls.primary_metric in contract.metrics
    fields = set(FIELDS)
    assert set(contract.fields) | set(contract.optional_fields) <= fields
    assert {t.field for t in contract.text_fields} <= fields
    family = next(f for f in FAMILIES if task in family_tasks(f))
    model = build_prompts(tiny_backbone(family), "coop", make_task(task))
    metrics = evaluate(model, examples(task, 1))
    assert set(contract.metrics) <= set(metrics)
    if contract.group_metric:
        assert isinstance(metrics[contract.group_metric], dict)
    data = examples(task, 1)
    if contract.example_metric is None:  # right or wrong: compared with the target
        with pytest.raises(NotImplementedError, match="names no example_metric"):
            model.task.example_scores(model.predict(data), data)
    else:  # scored one by one, on a metric the task reports
        assert contract.example_metric in contract.metrics
        assert len(model.task.example_scores(model.predict(data), data)) == len(data)


def test_decoding_options_travel_with_the_artifact(blip2, tmp_path):
    model = build_prompts(blip2, "vpt", CaptioningTask("a photo of", num_beams=2, max_new_tokens=5))
    save_prompts(model, tmp_path / "captions")
    loaded = load_prompts(tmp_path / "captions", blip2)
    assert loaded.task.to_dict() == {"prompt": "a photo of", "num_beams": 2, "max_new_tokens": 5}
    assert loaded.predict(examples("captioning", 1)) == model.predict(examples("captioning", 1))
