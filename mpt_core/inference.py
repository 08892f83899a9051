"""Serve several domains' prompts on one loaded backbone; a batch may mix domains."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .artifacts import load_prompts
from .backbones.base import Backbone
from .backbones.generative import GenerativeBackbone
from .data import Example
from .errors import ConfigError, UnknownNameError
from .generative.model import GenerativeModel
from .model import PromptedModel

DomainModel = PromptedModel | GenerativeModel


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

    @torch.no_grad()
    def predict(self, items: Sequence[tuple[str, Example]]) -> list[str]:
        """Predictions in input order (class names, answers or generated text); examples are
        grouped per domain internally, so each domain's candidate texts and prompts are
        computed once per call."""
        out: list[str | None] = [None] * len(items)
        groups: dict[str, list[int]] = {}
        for i, (domain, _) in enumerate(items):
            self._model(domain)
            groups.setdefault(domain, []).append(i)
        for domain, rows in groups.items():
            preds = self._model(domain).predict([items[i][1] for i in rows])
            for i, pred in zip(rows, preds, strict=True):
                out[i] = pred
        return out  # type: ignore[return-value]
