"""Classification: class names go through a template into (prompted) text candidates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Example, require
from ..errors import ConfigError, DataError
from .base import Metrics, Task, TaskContract, Toy, ValueSet, take_declaration
from .fields import LABEL
from .metrics import accuracy, macro_f1, per_class_accuracy

DEFAULT_TEMPLATE = "a photo of a {}."


class ClassificationTask(Task):
    name = "classification"
    contract = TaskContract(
        fields=("label",),
        metrics=("accuracy", "macro_f1"),
        primary_metric="accuracy",
        target="label",
        value_set=ValueSet("label", "labels"),
        group_metric="per_class_accuracy",
        group_field="label",
        declares=(LABEL,),
        declaration_help="""\
# Class names; every `label` in the metadata must be one of them (quote numbers: ["0", "1"]).
labels: [first-class, second-class]
# How a class name becomes text for the text tower ('{}' = the class name).
template: "a photo of a {}."
""",
    )

    def __init__(self, class_names: Sequence[str], template: str = DEFAULT_TEMPLATE) -> None:
        names = list(class_names)
        if len(names) < 2:
            raise ConfigError(f"classification needs at least 2 class names; got {names}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"class names must be unique; repeated: {dupes}")
        if "{}" not in template:
            raise ConfigError(f"template {template!r} has no '{{}}' where the class name goes")
        self.class_names = names
        self.template = template
        self._index = {n: i for i, n in enumerate(names)}

    def texts(self) -> list[str]:
        return [self.template.format(n) for n in self.class_names]

    def targets(self, examples: Sequence[Example]) -> torch.Tensor:
        labels = require(examples, "label", self.name)
        for i, label in enumerate(labels):
            if label not in self._index:
                raise DataError(
                    f"example {i}: label {label!r} is not one of the classes {self.class_names}"
                )
        return torch.tensor([self._index[label] for label in labels])

    def check(self, examples: Sequence[Example]) -> None:
        self.targets(examples)

    def logits(self, model, image_emb) -> torch.Tensor:
        """ImageFeatures of B images -> (B, num_classes)."""
        return model.score(image_emb, model.embed_texts(self.texts()))

    def loss(self, model, image_emb, examples):
        return F.cross_entropy(
            self.logits(model, image_emb), self.targets(examples).to(image_emb.device)
        )

    def evaluate(self, model, image_emb, examples) -> Metrics:
        target = self.targets(examples)
        pred = self.logits(model, image_emb).argmax(1).cpu()
        return {
            "accuracy": accuracy(pred, target),
            "macro_f1": macro_f1(pred, target, len(self.class_names)),
            "per_class_accuracy": per_class_accuracy(pred, target, self.class_names),
        }

    def predict(self, model, image_emb, examples) -> list[str]:
        return [self.class_names[i] for i in self.logits(model, image_emb).argmax(1).tolist()]

    def scores(self, model, image_emb, examples) -> list[dict[str, float]]:
        probs = self.logits(model, image_emb).softmax(1).tolist()
        return [dict(zip(self.class_names, row, strict=True)) for row in probs]

    def to_dict(self) -> dict[str, Any]:
        return {"class_names": self.class_names, "template": self.template}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> ClassificationTask:
        return cls(spec["class_names"], spec.get("template", DEFAULT_TEMPLATE))

    @classmethod
    def from_declaration(cls, declared: Mapping[str, Any]) -> ClassificationTask:
        values = take_declaration(cls, declared)
        return cls(values["labels"], values.get("template") or DEFAULT_TEMPLATE)

    def declared_values(self) -> dict[str | None, list[str]]:
        return {None: list(self.class_names)}

    def declaration(self) -> dict[str, Any]:
        return {"labels": list(self.class_names), "template": self.template}

    @classmethod
    def toy(cls, classes: Sequence[str]) -> Toy:
        return Toy(cls(classes), lambda name, image: [Example(image, label=name)])
