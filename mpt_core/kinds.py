"""Backbone kinds: how the prompted model of each kind of backbone is built, counted and
asked for predictions. A kind is one module that provides a `KIND` strategy, registered
here by name; `Backbone.kind` and `Task.backbone_kind` name it.

    dual-encoder  `model.py`: texts scored against images in one embedding space
    generative    `generative/model.py`: text written from an image

`build_prompts`, the artifacts and `predict_batch` ask `KINDS` instead of testing types,
and no kind module imports another (nor this one), so adding a kind is one module and
one `KINDS.register` line.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._registry import Registry
from .prompts import preset_config
from .support import check_preset, check_supported

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .data import Example
    from .features import Prediction
    from .holder import PromptsHolder
    from .prompts.config import PromptConfig
    from .tasks.base import Task


class KindStrategy(Protocol):
    """What a backbone kind's module provides as `KIND`."""

    def build(
        self, backbone: Any, config: PromptConfig, task: Task, preset: str | None, seed: int
    ) -> PromptsHolder:
        """A domain's prompted model: fresh prompts of `config` for `task` on `backbone`."""

    def prompt_module(self, backbone: Any, config: PromptConfig) -> nn.Module:
        """The prompts alone (no task), e.g. to count what trains."""

    def predict(
        self,
        items: Sequence[tuple[PromptsHolder, Example]],
        rows: list[int],
        out: list[Prediction | None],
        prepared: Sequence[torch.Tensor] | None = None,
        features: list[torch.Tensor | None] | None = None,
    ) -> None:
        """Fill `out[i]` for every i in `rows`; all of them share one backbone object.
        `prepared[i]`: item i's frozen features (its model's `prepare_images` output),
        when the caller has them (a feature store); else the images are encoded here.
        `features[i]`, when a list is given: item i's frozen features as used here."""


@dataclass(frozen=True)
class BackboneKind:
    """A kind of backbone and the module (in this package) whose `KIND` implements it."""

    name: str
    module: str
    help: str

    @property
    def strategy(self) -> KindStrategy:
        return importlib.import_module(f"{__package__}.{self.module}").KIND


KINDS: Registry[BackboneKind] = Registry("backbone kind")
KINDS.register(
    "dual-encoder",
    BackboneKind(
        "dual-encoder",
        "model",
        "image and text towers with a shared embedding space: candidate texts are scored "
        "against images (classification, retrieval, multiple-choice VQA)",
    ),
)
KINDS.register(
    "generative",
    BackboneKind(
        "generative",
        "generative.model",
        "a vision tower feeding a frozen language model that writes text (captioning, open VQA)",
    ),
)


def strategy(kind: str) -> KindStrategy:
    """The strategy of a registered kind (an unknown kind lists the known ones)."""
    return KINDS.get(kind).strategy


def build_prompts(
    backbone: Any,
    preset: str,
    task: Task,
    *,
    seed: int = 0,
    **overrides: object,
) -> PromptsHolder:
    """Prompts of `preset` (with config field overrides) for `task` on `backbone`.

    >>> model = build_prompts(load_backbone("shipped"), "mpt", ClassificationTask(["cat", "dog"]))
    >>> captioner = build_prompts(load_backbone("hf-blip2", path), "mpt", CaptioningTask())
    """
    check_supported(backbone.family, backbone.kind, preset, task.name, task.backbone_kind)
    config = preset_config(preset, backbone.slots, **overrides)
    return strategy(backbone.kind).build(backbone, config, task, preset, seed)


def trainable_parameters(backbone: Any, preset: str, **overrides: object) -> int:
    """Trainable prompt parameters of `preset` on `backbone`, for either kind of backbone
    (what `mpt presets` lists), without building a task."""
    check_preset(backbone.family, preset)
    config = preset_config(preset, backbone.slots, **overrides)
    return strategy(backbone.kind).prompt_module(backbone, config).num_trainable()
