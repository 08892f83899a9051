"""Serve several domains' prompts on shared backbones; a batch may mix domains.

`predict_batch` is the one inference path: on a dual encoder the image stem (the part of
the image tower no prompt touches) runs once per backbone for the whole batch, then each
domain's prompted part runs on its own rows and its task scores them; on a generative
backbone each domain generates for its rows. `PromptServer` keeps domains by name on one
backbone; the serving app keeps (domain, version) models and calls the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .artifacts import load_prompts
from .backbones.base import FrozenBackbone
from .data import Example, group_rows
from .errors import ConfigError, DataError, UnknownNameError
from .features import Prediction
from .holder import PromptsHolder
from .kinds import strategy

DomainModel = PromptsHolder
"""A domain's prompted model, of either backbone kind."""


@torch.no_grad()
def predict_batch(
    items: Sequence[tuple[PromptsHolder, Example]],
    prepared: Sequence[torch.Tensor] | None = None,
    features: list[torch.Tensor | None] | None = None,
) -> list[Prediction]:
    """Predictions for (model, example) pairs, in input order; models may differ per item.

    Items are grouped by backbone object, and each group goes to its backbone kind's
    `predict` (`kinds.KINDS`). Dual encoders: one stem pass over all the group's items,
    models without visual prompts share one finished image embedding, then per model its
    visual prompts on its rows and its task's `scores` (class and answer texts come from
    the model's text cache). Generative backbones: each model generates for its rows.
    `prepared[i]`: item i's frozen features from a feature store (its model's
    `prepare_images` output), which then replace the images' encoding.
    `features`: a list of len(items) the kinds fill with each item's frozen features as
    they computed them on the way (the same tensors `prepared` takes), so that a caller can
    score the same images with another model of the same `feature_key` without encoding
    them again (a server's shadow version). Rows are views of the batch's tensors.
    All forward passes of one backbone must run in one thread: prompt injection hooks
    hold the active prompts on the backbone while it runs.
    """
    out: list[Prediction | None] = [None] * len(items)
    for rows in group_rows([id(model.backbone) for model, _ in items]).values():
        strategy(items[rows[0]][0].backbone.kind).predict(items, rows, out, prepared, features)
    return out  # type: ignore[return-value]


class PromptServer:
    """One frozen backbone, many domains' prompts.

    >>> server = PromptServer(load_backbone("shipped"))
    >>> server.add("retail", "artifacts/retail")
    >>> server.predict([("retail", Example(image)), ("medical", Example(image2, caption=...))])
    """

    def __init__(self, backbone: FrozenBackbone) -> None:
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
