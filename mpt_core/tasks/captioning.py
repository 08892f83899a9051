"""Captioning: write a caption for an image; CIDEr-D and BLEU-4 against its references.

Rows are (image, caption); several rows of one image are its several reference
captions. Training is teacher-forced cross-entropy of every reference; evaluation writes
one caption per distinct image (greedy or beam search) and scores it against all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data import Example, ImageSource, group_rows, require
from ..errors import ConfigError
from .base import Metrics, TaskContract, TextField, Toy, take_declaration
from .fields import CAPTION
from .generation import GenerativeTask, image_key
from .text_metrics import bleu, caption_tokens, cider_d

DEFAULT_NUM_BEAMS = 1
DEFAULT_MAX_NEW_TOKENS = 30


class CaptioningTask(GenerativeTask):
    name = "captioning"
    contract = TaskContract(
        fields=("caption",),
        text_fields=(TextField("caption", 1, 500),),
        row_key=("image", "caption"),
        declares=(CAPTION,),
        metrics=("cider", "bleu4", "bleu1"),
        primary_metric="cider",
        example_metric="cider",
        target="caption",
        declaration_help="""\
# Captioning writes a caption per image; rows are (image, caption), several rows of one
# image are its reference captions. Needs a generative backbone (family: hf-blip2).
# template: "a photo of"      # optional text every caption continues
# task_options: {num_beams: 3, max_new_tokens: 30}
""",
    )

    def __init__(
        self,
        prompt: str = "",
        num_beams: int = DEFAULT_NUM_BEAMS,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        """prompt: text every caption continues (e.g. "a photo of"); "" = none."""
        super().__init__(num_beams, max_new_tokens)
        if not isinstance(prompt, str) or "{" in prompt:
            raise ConfigError(
                f"captioning prompt {prompt!r}: plain text the caption continues, e.g. "
                "'a photo of' (no placeholders: the caption is what the model writes)"
            )
        self.prompt = prompt

    def check(self, examples: Sequence[Example]) -> None:
        require(examples, "caption", self.name)

    def loss(self, model, image_emb, examples):
        captions = require(examples, "caption", self.name)
        return model.lm_loss(image_emb, [self.prompt] * len(captions), captions)

    def _captions(self, model, image_emb, examples) -> tuple[list[str], dict[str, str]]:
        keys = [image_key(e.image) for e in examples]
        groups = group_rows(keys)
        return keys, self.generate_groups(model, image_emb, groups, [self.prompt] * len(keys))

    def evaluate(self, model, image_emb, examples) -> Metrics:
        """cider (CIDEr-D), bleu1 and bleu4 over the distinct images of `examples`."""
        captions = require(examples, "caption", self.name)
        keys, generated = self._captions(model, image_emb, examples)
        references: dict[str, list[list[str]]] = {}
        for key, caption in zip(keys, captions, strict=True):
            references.setdefault(key, []).append(caption_tokens(caption))
        hypotheses = {key: caption_tokens(text) for key, text in generated.items()}
        scores = bleu(hypotheses, references)
        return {
            "cider": cider_d(hypotheses, references)[0],
            "bleu4": scores[3],
            "bleu1": scores[0],
        }

    def predict(self, model, image_emb, examples) -> list[str]:
        keys, generated = self._captions(model, image_emb, examples)
        return [generated[k] for k in keys]

    def example_scores(
        self, predictions: Sequence[str], examples: Sequence[Example]
    ) -> list[float]:
        """Each row's CIDEr-D: its image's caption against all that image's references, with
        the document frequencies of the whole set (their mean over images is `cider`)."""
        captions = require(examples, "caption", self.name)
        keys = [image_key(e.image) for e in examples]
        references: dict[str, list[list[str]]] = {}
        hypotheses: dict[str, list[str]] = {}
        for key, caption, predicted in zip(keys, captions, predictions, strict=True):
            references.setdefault(key, []).append(caption_tokens(caption))
            hypotheses.setdefault(key, caption_tokens(predicted))
        per_image = cider_d(hypotheses, references)[1]
        return [per_image[key] for key in keys]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, **self.decoding()}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> CaptioningTask:
        return cls(
            spec.get("prompt", ""),
            spec.get("num_beams", DEFAULT_NUM_BEAMS),
            spec.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        )

    @classmethod
    def from_declaration(cls, declaration: dict[str, Any]) -> CaptioningTask:
        """From domain.yaml: `template` (the caption prompt), `num_beams`, `max_new_tokens`."""
        declaration = take_declaration(
            cls,
            declaration,
            options=("num_beams", "max_new_tokens"),
            hint=dict.fromkeys(("labels", "answers"), "captions are free text, not a set"),
        )
        return cls(
            declaration.get("template") or "",
            declaration.get("num_beams", DEFAULT_NUM_BEAMS),
            declaration.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        )

    def declaration(self) -> dict[str, Any]:
        return {"template": self.prompt or None, **self.decoding()}

    @classmethod
    def toy(cls, classes: Sequence[str]) -> Toy:
        """Two reference captions per image; short generations keep tests fast."""

        def rows(name: str, image: ImageSource) -> list[Example]:
            captions = (f"a photo of {name}", f"this is {name}")
            return [Example(image, caption=caption) for caption in captions]

        return Toy(cls(max_new_tokens=12), rows)
