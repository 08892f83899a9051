"""VQA as multiple choice: each (question, candidate answer) pair is a text scored against
the image. Candidate answers are declared per question (or once for every question)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Example, ImageSource, require
from ..errors import ConfigError, DataError
from .base import Metrics, Task, TaskContract, Toy, ValueSet, take_declaration
from .fields import ANSWER, QUESTION
from .metrics import accuracy

DEFAULT_TEMPLATE = "question: {question} answer: {answer}"


class VQATask(Task):
    name = "vqa"
    contract = TaskContract(
        fields=("question", "answer"),
        metrics=("accuracy",),
        primary_metric="accuracy",
        target="answer",
        value_set=ValueSet("answer", "answers", per="question"),
        group_metric="per_question_accuracy",
        group_field="question",
        row_key=("image", "question"),
        inputs=("question",),
        declares=(QUESTION, ANSWER),
        declaration_help="""\
# Questions and their candidate answers; every (question, answer) row must be one of them.
answers:
  "Is there a defect?": ["yes", "no"]
template: "question: {question} answer: {answer}"
""",
    )

    def __init__(
        self,
        answers: Mapping[str, Sequence[str]] | Sequence[str],
        template: str = DEFAULT_TEMPLATE,
    ) -> None:
        """answers: {question: [candidate answers]} or one list for every question."""
        if isinstance(answers, Mapping):
            self.answers: dict[str, list[str]] | None = {q: list(a) for q, a in answers.items()}
            self.shared: list[str] | None = None
            sets = self.answers.items()
        else:
            self.answers, self.shared = None, list(answers)
            sets = [("every question", self.shared)]
        for question, candidates in sets:
            if len(candidates) < 2 or len(set(candidates)) != len(candidates):
                raise ConfigError(
                    f"{question!r} needs at least 2 distinct candidate answers; got {candidates}"
                )
        if "{question}" not in template or "{answer}" not in template:
            raise ConfigError(f"template {template!r} needs both {{question}} and {{answer}}")
        self.template = template

    def candidates(self, question: str, index: int | None = None) -> list[str]:
        if self.shared is not None:
            return self.shared
        if question not in self.answers:
            where = f"example {index}: " if index is not None else ""
            raise DataError(
                f"{where}question {question!r} has no declared answers; "
                f"declared questions: {sorted(self.answers)}",
                index=index,
                field="question",
            )
        return self.answers[question]

    def check(self, examples: Sequence[Example]) -> None:
        self.targets(examples)

    def check_inputs(self, examples: Sequence[Example]) -> None:
        super().check_inputs(examples)
        for i, example in enumerate(examples):
            self.candidates(example.question, i)

    def targets(self, examples: Sequence[Example]) -> torch.Tensor:
        questions = require(examples, "question", self.name)
        answers = require(examples, "answer", self.name)
        out = []
        for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
            cands = self.candidates(q, i)
            if a not in cands:
                raise DataError(f"example {i}: answer {a!r} to {q!r} is not one of {cands}")
            out.append(cands.index(a))
        return torch.tensor(out)

    def logits(self, model, image_emb, examples) -> torch.Tensor:
        """(B, max_candidates) scores; -inf where a question has fewer candidates."""
        questions = require(examples, "question", self.name)
        unique = list(dict.fromkeys(questions))
        texts, spans = [], {}
        for q in unique:
            cands = self.candidates(q)
            spans[q] = (len(texts), len(cands))
            texts += [self.template.format(question=q, answer=a) for a in cands]
        text_emb = model.embed_texts(texts)  # all candidates of the batch, once
        sims = model.score(image_emb, text_emb)  # (B, T)
        width = max(n for _, n in spans.values())
        out = sims.new_full((len(questions), width), float("-inf"))
        for row, q in enumerate(questions):
            start, n = spans[q]
            out[row, :n] = sims[row, start : start + n]
        return out

    def loss(self, model, image_emb, examples):
        return F.cross_entropy(
            self.logits(model, image_emb, examples), self.targets(examples).to(image_emb.device)
        )

    def evaluate(self, model, image_emb, examples) -> Metrics:
        target = self.targets(examples)
        pred = self.logits(model, image_emb, examples).argmax(1).cpu()
        questions = [e.question for e in examples]
        per_question = {}
        for q in dict.fromkeys(questions):
            mask = torch.tensor([x == q for x in questions])
            per_question[q] = accuracy(pred[mask], target[mask])
        return {"accuracy": accuracy(pred, target), "per_question_accuracy": per_question}

    def predict(self, model, image_emb, examples) -> list[str]:
        pred = self.logits(model, image_emb, examples).argmax(1).tolist()
        return [self.candidates(e.question)[i] for e, i in zip(examples, pred, strict=True)]

    def scores(self, model, image_emb, examples) -> list[dict[str, float]]:
        probs = self.logits(model, image_emb, examples).softmax(1).tolist()  # 0 at -inf pads
        out = []
        for example, row in zip(examples, probs, strict=True):
            cands = self.candidates(example.question)
            out.append(dict(zip(cands, row[: len(cands)], strict=True)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "answers": self.answers if self.answers is not None else self.shared,
            "template": self.template,
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> VQATask:
        return cls(spec["answers"], spec.get("template", DEFAULT_TEMPLATE))

    @classmethod
    def from_declaration(cls, declared: Mapping[str, Any]) -> VQATask:
        values = take_declaration(cls, declared)
        answers = values["answers"]
        if not isinstance(answers, Mapping):
            raise ConfigError(
                "answers: give each question its candidate answers, e.g. "
                '{"Is there a defect?": ["yes", "no"]}'
            )
        return cls(answers, values.get("template") or DEFAULT_TEMPLATE)

    def declaration(self) -> dict[str, Any]:
        return {"answers": self.to_dict()["answers"], "template": self.template}

    @classmethod
    def toy(cls, classes: Sequence[str]) -> Toy:
        is_first, which = toy_questions(classes)
        task = cls({is_first: ["yes", "no"], which: list(classes)})
        return Toy(task, lambda name, image: toy_rows(classes, name, image))

    def declared_values(self) -> dict[str | None, list[str]]:
        if self.answers is None:
            return {None: list(self.shared or [])}
        return {q: list(a) for q, a in self.answers.items()}


def toy_questions(classes: Sequence[str]) -> tuple[str, str]:
    """The two questions of the VQA toys: a yes/no one and one answered by the class."""
    return f"is it {classes[0]}?", "which one is it?"


def toy_rows(classes: Sequence[str], name: str, image: ImageSource) -> list[Example]:
    """The rows of one image of class `name` in the VQA toys: both questions answered."""
    is_first, which = toy_questions(classes)
    yes = "yes" if name == classes[0] else "no"
    return [
        Example(image, question=is_first, answer=yes),
        Example(image, question=which, answer=name),
    ]
