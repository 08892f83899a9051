"""Open-ended VQA: generate a short answer to a question about an image; VQAv2 accuracy.

Rows are (image, question, answer); several rows with the same image and question are
the reference answers of several annotators (repeats count: three annotators saying
"yes" is three rows). Training is teacher-forced cross-entropy of every row's answer;
evaluation generates one answer per (image, question) and scores it with the VQAv2 rule
(`text_metrics.vqa_accuracy`): overall, per question type (the row's `question_type`,
else the question itself) and per answer type (yes/no, number, other).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data import Example, group_rows, require
from ..errors import ConfigError
from .base import Metrics, TaskContract, TextField, Toy, take_declaration
from .fields import ANSWER, QUESTION, QUESTION_TYPE
from .generation import GenerativeTask, image_key
from .text_metrics import answer_type, vqa_accuracy
from .vqa import toy_rows

DEFAULT_TEMPLATE = "Question: {question} Answer:"  # BLIP-2's zero-shot VQA prompt
DEFAULT_NUM_BEAMS = 1
DEFAULT_MAX_NEW_TOKENS = 10


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class OpenVQATask(GenerativeTask):
    name = "vqa-open"
    contract = TaskContract(
        fields=("question", "answer"),
        optional_fields=("question_type",),
        group_field="question_type",  # the question itself where a row has no type
        group_metric="per_question_type_accuracy",
        text_fields=(TextField("question", 1, 300), TextField("answer", 1, 100)),
        row_key=None,
        inputs=("question",),
        declares=(QUESTION, ANSWER, QUESTION_TYPE),
        metrics=("accuracy",),
        primary_metric="accuracy",
        example_metric="accuracy",
        target="answer",
        declaration_help="""\
# Open VQA generates a short answer to each question; rows are (image, question, answer),
# one row per annotator's answer. Needs a generative backbone (family: hf-blip2).
# template: "Question: {question} Answer:"
# task_options: {num_beams: 1, max_new_tokens: 10}
""",
    )

    def __init__(
        self,
        template: str = DEFAULT_TEMPLATE,
        num_beams: int = DEFAULT_NUM_BEAMS,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        """template: the text the answer follows; must hold {question}."""
        super().__init__(num_beams, max_new_tokens)
        if not isinstance(template, str) or "{question}" not in template:
            raise ConfigError(
                f"vqa-open template {template!r} needs {{question}} where the question goes, "
                f"e.g. {DEFAULT_TEMPLATE!r}"
            )
        try:
            template.format(question="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"vqa-open template {template!r} may hold only {{question}}; got {exc}"
            ) from None
        self.template = template

    def prompts(self, examples: Sequence[Example]) -> list[str]:
        return [self.template.format(question=q) for q in require(examples, "question", self.name)]

    def check(self, examples: Sequence[Example]) -> None:
        require(examples, "question", self.name)
        require(examples, "answer", self.name)

    def loss(self, model, image_emb, examples):
        answers = require(examples, "answer", self.name)
        return model.lm_loss(image_emb, self.prompts(examples), answers)

    def _answers(self, model, image_emb, examples):
        keys = [(image_key(e.image), e.question) for e in examples]
        groups = group_rows(keys)
        return keys, groups, self.generate_groups(model, image_emb, groups, self.prompts(examples))

    def evaluate(self, model, image_emb, examples) -> Metrics:
        """accuracy over the distinct (image, question) pairs; per question and answer type."""
        answers = require(examples, "answer", self.name)
        _, groups, generated = self._answers(model, image_emb, examples)
        by_question_type: dict[str, list[float]] = {}
        by_answer_type: dict[str, list[float]] = {}
        scores = []
        for key, rows in groups.items():
            references = [answers[i] for i in rows]
            score = vqa_accuracy(generated[key], references)
            scores.append(score)
            first = examples[rows[0]]
            by_question_type.setdefault(first.question_type or first.question, []).append(score)
            by_answer_type.setdefault(answer_type(references), []).append(score)
        return {
            "accuracy": _mean(scores),
            "per_question_type_accuracy": {k: _mean(v) for k, v in by_question_type.items()},
            "per_answer_type_accuracy": {k: _mean(v) for k, v in by_answer_type.items()},
        }

    def predict(self, model, image_emb, examples) -> list[str]:
        keys, _, generated = self._answers(model, image_emb, examples)
        return [generated[k] for k in keys]

    def example_scores(
        self, predictions: Sequence[str], examples: Sequence[Example]
    ) -> list[float]:
        """Each row's VQAv2 accuracy: its (image, question)'s answer against every
        annotator's answer to it (their mean over the pairs is `accuracy`)."""
        answers = require(examples, "answer", self.name)
        keys = [(image_key(e.image), e.question) for e in examples]
        groups = group_rows(keys)
        per_pair = {
            key: vqa_accuracy(predictions[rows[0]], [answers[i] for i in rows])
            for key, rows in groups.items()
        }
        return [per_pair[key] for key in keys]

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, **self.decoding()}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> OpenVQATask:
        return cls(
            spec.get("template", DEFAULT_TEMPLATE),
            spec.get("num_beams", DEFAULT_NUM_BEAMS),
            spec.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        )

    @classmethod
    def from_declaration(cls, declaration: dict[str, Any]) -> OpenVQATask:
        """From domain.yaml: `template`, `num_beams`, `max_new_tokens`."""
        declaration = take_declaration(
            cls,
            declaration,
            options=("num_beams", "max_new_tokens"),
            hint=dict.fromkeys(
                ("labels", "answers"),
                "open answers are free text (for a fixed answer set use task 'vqa')",
            ),
        )
        return cls(
            declaration.get("template") or DEFAULT_TEMPLATE,
            declaration.get("num_beams", DEFAULT_NUM_BEAMS),
            declaration.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        )

    def declaration(self) -> dict[str, Any]:
        return {"template": self.template, **self.decoding()}

    @classmethod
    def toy(cls, classes: Sequence[str]) -> Toy:
        """The multiple-choice toy's questions, answered in a few generated tokens."""
        return Toy(cls(max_new_tokens=6), lambda name, image: toy_rows(classes, name, image))
