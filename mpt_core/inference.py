"""Serve several domains' prompts on shared backbones; a batch may mix domains.

`predict_batch` is the one inference path: on a dual encoder the image stem (the part of
the image tower no prompt touches) runs once per backbone for the whole batch, then each
domain's prompted part runs on its own rows and its task scores them; on a generative
backbone each domain generates for its rows. `PromptServer` keeps domains by name on one
backbone; the serving app keeps (domain, version) models and calls the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .artifacts import load_prompts
from .backbones.base import Backbone
from .backbones.generative import GenerativeBackbone
from .data import Example, group_rows
from .errors import ConfigError, DataError, UnknownNameError
from .generative.model import GenerativeModel
from .model import PromptedModel, image_stems
from .tasks.base import best_candidate

DomainModel = PromptedModel | GenerativeModel

STEM_CHUNK = 64
"""Images per stem pass: bounds the memory of one call whatever the batch size."""


@dataclass(frozen=True)
class Prediction:
    """One image's answer under one domain's prompts."""

    value: str | None
    """The label, answer, best caption or generated text; None when there was nothing
    to rank (a retrieval example without candidates)."""
    scores: dict[str, float]
    """Each candidate -> probability (softmax over this example's candidates); empty for
    generated text."""
    embedding: torch.Tensor | None
    """(D,) the centred, L2-normalised image embedding the scores came from (dual
    encoders; None on a generative backbone)."""


def _scored(items: Sequence[tuple[PromptedModel, Example]], rows: list[int], out: list) -> None:
    """Dual encoder: one stem pass for `rows`, one shared plain embedding for the models
    without visual prompts, then each model's prompted part and its task's scores."""
    backbone = items[rows[0]][0].backbone
    stem = torch.cat(list(image_stems(backbone, [items[i][1].image for i in rows], STEM_CHUNK)))
    local = {row: k for k, row in enumerate(rows)}
    plain_rows = [i for i in rows if items[i][0].vision_frozen]
    plain = backbone.encode_image(stem[[local[i] for i in plain_rows]]) if plain_rows else None
    plain_at = {row: k for k, row in enumerate(plain_rows)}
    for model_rows in group_rows([id(items[i][0]) for i in rows], rows).values():
        model = items[model_rows[0]][0]
        if model.vision_frozen:
            emb = model.embed_prepared(plain[[plain_at[i] for i in model_rows]])
        else:
            emb = model.embed_prepared(stem[[local[i] for i in model_rows]])
        scores = model.task.scores(model, emb, [items[i][1] for i in model_rows])
        for i, row_scores, row_emb in zip(model_rows, scores, emb.embedding, strict=True):
            out[i] = Prediction(best_candidate(row_scores), row_scores, row_emb)


def _generated(items: Sequence[tuple[GenerativeModel, Example]], rows: list[int], out) -> None:
    for model_rows in group_rows([id(items[i][0]) for i in rows], rows).values():
        model = items[model_rows[0]][0]
        texts = model.predict([items[i][1] for i in model_rows])
        for i, text in zip(model_rows, texts, strict=True):
            out[i] = Prediction(text, {}, None)


@torch.no_grad()
def predict_batch(items: Sequence[tuple[DomainModel, Example]]) -> list[Prediction]:
    """Predictions for (model, example) pairs, in input order; models may differ per item.

    Dual encoders: per backbone one stem pass over all its items, models without visual
    prompts share one finished image embedding, then per model its visual prompts on its
    rows and its task's `scores` (class and answer texts come from the model's text
    cache). Generative backbones: each model generates for its rows.
    All forward passes of one backbone must run in one thread: prompt injection hooks
    hold the active prompts on the backbone while it runs.
    """
    out: list[Prediction | None] = [None] * len(items)
    for rows in group_rows([id(model.backbone) for model, _ in items]).values():
        if isinstance(items[rows[0]][0].backbone, GenerativeBackbone):
            _generated(items, rows, out)  # type: ignore[arg-type]
        else:
            _scored(items, rows, out)  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


class PromptServer:
    """One frozen backbone, many domains' prompts.

    >>> server = PromptServer(load_backbone("shipped"))
    >>> server.add("retail", "artifacts/retail")
    >>> server.predict([("retail", Example(image)), ("medical", Example(image2, caption=...))])
    """

    def __init__(self, backbone: Backbone | GenerativeBackbone) -> None:
        self.backbone = backbone
        self.models: dict[str, DomainModel] = {}

    def add(self, domain: str, source: DomainModel | str | Path) -> DomainModel:
        is_path = isinstance(source, str | Path)
        model = load_prompts(source, self.backbone) if is_path else source
        if model.backbone is not self.backbone:
            raise ConfigError(
                f"domain {domain!r}: its prompts hold another backbone object; "
                "load them with this server's backbone (server.add(domain, artifact_dir))"
            )
        self.models[domain] = model.eval()
        return model

    def domains(self) -> list[str]:
        return sorted(self.models)

    def _model(self, domain: str) -> DomainModel:
        try:
            return self.models[domain]
        except KeyError:
            raise UnknownNameError(
                f"no prompts loaded for domain {domain!r}; loaded: {self.domains() or '(none)'}"
            ) from None

    def predictions(self, items: Sequence[tuple[str, Example]]) -> list[Prediction]:
        """Value, scores and embedding per item, in input order (one stem pass per call;
        each domain's candidate texts come from its cache)."""
        return predict_batch([(self._model(domain), example) for domain, example in items])

    def predict(self, items: Sequence[tuple[str, Example]]) -> list[str]:
        """Predictions in input order (class names, answers, captions or generated text)."""
        out = []
        for index, ((domain, _), p) in enumerate(zip(items, self.predictions(items), strict=True)):
            if p.value is None:
                raise DataError(
                    f"item {index} ({domain}): nothing to rank; give retrieval examples a "
                    "caption or candidates",
                    index=index,
                    field="candidates",
                )
            out.append(p.value)
        return out
