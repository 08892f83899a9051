"""What the generative tasks (captioning, vqa-open) share: decoding options and the
grouping of rows that describe the same image."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import torch
from PIL import Image

from ..data import ImageSource
from ..errors import ConfigError
from .base import Task, TaskContract


class TextGenerator(Protocol):
    """What a generative task needs from a prompted model (`generative.model.GenerativeModel`
    is one): the loss of target texts and generation, given the images' query embeddings."""

    def lm_loss(
        self, queries: torch.Tensor, prompts: Sequence[str], targets: Sequence[str]
    ) -> torch.Tensor: ...

    def generate(
        self, queries: torch.Tensor, prompts: Sequence[str], *, max_new_tokens: int, num_beams: int
    ) -> list[str]: ...


def image_key(source: ImageSource) -> str:
    """The same image, however it was handed over: a normalised path, or the pixels' hash
    (rows of one image are separate PIL objects once read from storage)."""
    if isinstance(source, Image.Image):
        digest = hashlib.sha1(f"{source.mode}{source.size}".encode())
        digest.update(source.tobytes())
        return f"pixels:{digest.hexdigest()}"
    return f"path:{os.path.normpath(str(source))}"


class GenerativeTask(Task):
    """A task whose predictions are generated text (needs a generative backbone).

    The loss is teacher-forced cross-entropy of the target text; evaluation generates
    once per distinct input (an image, or an image and its question) and scores the
    generation against every row's reference for it.
    """

    backbone_kind: ClassVar[str] = "generative"
    #: No image-conditioned residual on a generative backbone: its knobs are the rest.
    default_search: ClassVar[dict[str, Any]] = {
        "trials": 4,
        "space": {
            "lr": {"loguniform": [1e-3, 2e-2]},
            "epochs": {"choice": [10, 20]},
            "depth": {"choice": [1, 3]},
        },
    }
    contract: ClassVar[TaskContract]

    def __init__(self, num_beams: int, max_new_tokens: int) -> None:
        for field, value in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"{self.name} {field}={value!r}: must be an integer >= 1 "
                    "(num_beams=1 is greedy decoding)"
                )
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens

    def predict_scored(self, model, image_emb, examples) -> list[tuple[str, float | None]]:
        """Generated text has no probability among candidates: the score is None."""
        return [(text, None) for text in self.predict(model, image_emb, examples)]

    def decoding(self) -> dict[str, int]:
        return {"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens}

    def generate_groups(
        self,
        model: TextGenerator,
        queries: torch.Tensor,
        groups: dict[Any, list[int]],
        prompts: Sequence[str],
    ) -> dict[Any, str]:
        """One generation per group, from its first row's (query embeddings, prompt)."""
        first = [rows[0] for rows in groups.values()]
        texts = model.generate(queries[first], [prompts[i] for i in first], **self.decoding())
        return dict(zip(groups, texts, strict=True))
