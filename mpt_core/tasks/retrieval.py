"""Image <-> caption retrieval. Several images may share one caption (tiles of a source);
any image with the query's caption counts as a hit, and the loss treats them alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Example, require
from ..errors import DataError
from .base import Metrics, Task, TaskContract, TextField, Toy, take_declaration
from .fields import CANDIDATES, CAPTION
from .metrics import recall_at_k

KS = (1, 5, 10)


def _caption_groups(captions: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """Distinct captions in first-seen order, and each example's index into them."""
    unique = list(dict.fromkeys(captions))
    index = {c: i for i, c in enumerate(unique)}
    return unique, torch.tensor([index[c] for c in captions])


class RetrievalTask(Task):
    name = "retrieval"
    contract = TaskContract(
        fields=("caption",),
        metrics=("r1_mean", *(f"{d}_r{k}" for d in ("i2t", "t2i") for k in KS)),
        primary_metric="r1_mean",
        target="caption",
        text_fields=(TextField("caption", 3, 500),),
        optional_inputs=("candidates",),
        declares=(CAPTION, CANDIDATES),
        declaration_help="# Retrieval matches images to their `caption` column; no labels.\n",
    )

    def check(self, examples: Sequence[Example]) -> None:
        require(examples, "caption", self.name)

    def check_inputs(self, examples: Sequence[Example]) -> None:
        for i, example in enumerate(examples):
            cands = example.candidates
            if cands is not None and (
                not cands or any(not isinstance(c, str) or not c.strip() for c in cands)
            ):
                raise DataError(
                    f"example {i}: candidates must be a non-empty list of non-empty captions; "
                    f"got {cands!r}",
                    index=i,
                    field="candidates",
                )

    def _scores(self, model, image_emb, examples):
        """(B, C) scores against the C distinct captions, each example's caption index,
        and the captions."""
        captions, group = _caption_groups(require(examples, "caption", self.name))
        text_emb = model.embed_texts(captions)
        return model.score(image_emb, text_emb), group.to(image_emb.device), captions

    def loss(self, model, image_emb, examples):
        """Symmetric contrastive loss: image -> its caption, caption -> its images."""
        logits, group, _ = self._scores(model, image_emb, examples)
        i2t = F.cross_entropy(logits, group)
        positives = F.one_hot(group, logits.shape[1]).T.float()  # (C, B)
        t2i = -(positives * logits.T.log_softmax(1)).sum(1) / positives.sum(1)
        return (i2t + t2i.mean()) / 2

    def evaluate(self, model, image_emb, examples) -> Metrics:
        logits, group, _ = self._scores(model, image_emb, examples)
        logits, group = logits.cpu(), group.cpu()
        positives = F.one_hot(group, logits.shape[1]).bool()  # (B, C)
        i2t = recall_at_k(logits, positives, KS)
        t2i = recall_at_k(logits.T, positives.T, KS)
        metrics = {f"i2t_r{k}": i2t[k] for k in KS} | {f"t2i_r{k}": t2i[k] for k in KS}
        metrics["r1_mean"] = (i2t[1] + t2i[1]) / 2
        return metrics

    def predict(self, model, image_emb, examples) -> list[str]:
        """The best caption for each image among the captions given with the examples."""
        captions = [e.caption for e in examples if e.caption]
        if not captions:
            raise DataError("retrieval prediction ranks the examples' captions; none was given")
        unique = list(dict.fromkeys(captions))
        best = model.score(image_emb, model.embed_texts(unique)).argmax(1)
        return [unique[i] for i in best.tolist()]

    def predict_scored(self, model, image_emb, examples) -> list[tuple[str, float]]:
        """The best of the examples' own captions per image (what i2t R@1 ranks)."""
        logits, _, captions = self._scores(model, image_emb, examples)
        best = logits.softmax(1).max(1)
        return [
            (captions[i], p)
            for i, p in zip(best.indices.tolist(), best.values.tolist(), strict=True)
        ]

    def scores(self, model, image_emb, examples) -> list[dict[str, float]]:
        """Each image against its own `candidates`, else against the batch's captions;
        every distinct text of the batch is embedded once."""
        shared = list(dict.fromkeys(e.caption for e in examples if e.caption))
        per_example = [list(dict.fromkeys(e.candidates or shared)) for e in examples]
        texts = list(dict.fromkeys(c for cands in per_example for c in cands))
        if not texts:
            return [{} for _ in examples]
        column = {t: i for i, t in enumerate(texts)}
        sims = model.score(image_emb, model.embed_texts(texts))  # (B, T)
        out = []
        for row, cands in enumerate(per_example):
            probs = sims[row, [column[c] for c in cands]].softmax(0).tolist() if cands else []
            out.append(dict(zip(cands, probs, strict=True)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> RetrievalTask:
        return cls()

    @classmethod
    def from_declaration(cls, declared: Mapping[str, Any]) -> RetrievalTask:
        take_declaration(cls, declared, template=False)
        return cls()

    def declaration(self) -> dict[str, Any]:
        return {}

    @classmethod
    def toy(cls, classes: Sequence[str]) -> Toy:
        return Toy(cls(), lambda name, image: [Example(image, caption=f"a photo of {name}")])
