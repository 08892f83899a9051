"""`PromptedModel`: a shared frozen backbone + one domain's prompts + its task.

How a prediction is scored (and how a server caches it):

    text = model.embed_texts(texts)        # (N, D): a function of (texts, prompts) only
    images = model.encode_images(images)   # ImageFeatures: (B, D) + (B, n, D) image tokens
    logits = model.score(images, text)     # (B, N)

`embed_texts` never sees an image, so a server computes it once per (domain, version) and
caches it; the per-image conditioning (the PFM) happens in `score`, after the text tower.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image

from .backbones.base import Backbone
from .data import Example, ImageSource, group_rows, load_image
from .features import ImageFeatures, Prediction
from .holder import PromptsHolder
from .prompts import MultimodalPrompts, PromptConfig, PromptSet
from .tasks.base import best_candidate

if TYPE_CHECKING:
    from .tasks.base import Task

TEXT_CACHE_SIZE = 8192
"""Text embeddings a model keeps per cache (least recently used dropped first): every class
prompt and question+answer pair of a domain, and the recent retrieval captions."""


def image_stems(
    backbone: Backbone, images: Sequence[ImageSource], batch_size: int
) -> Iterator[torch.Tensor]:
    """The image stem output of `images` (paths are read), `batch_size` images per chunk,
    so one chunk's pixels are in memory at a time."""
    for start in range(0, len(images), batch_size):
        chunk = [load_image(x) for x in images[start : start + batch_size]]
        yield backbone.image_stem(backbone.preprocess(chunk))


def _keep(cache: OrderedDict[str, torch.Tensor], used: Sequence[str]) -> None:
    """Mark `used` as recent and drop the oldest entries beyond TEXT_CACHE_SIZE."""
    for text in dict.fromkeys(used):
        cache.move_to_end(text)
    while len(cache) > TEXT_CACHE_SIZE:
        cache.popitem(last=False)


class PromptedModel(PromptsHolder):
    """Only `prompts` (and the image centre buffer) belong to this module.

    The backbone is held, not registered: `parameters()`, `state_dict()` and the
    optimizer see the prompts alone, and one backbone object serves many domains.
    """

    def __init__(
        self,
        backbone: Backbone,
        prompts: MultimodalPrompts,
        task: Task,
        preset: str | None = None,
    ) -> None:
        super().__init__(backbone, prompts, task, preset)
        self.register_buffer("image_center", torch.zeros(backbone.embed_dim))
        self.centered = False
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()  # frozen tower
        self._inference_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._inference_key: tuple = ()  # the prompt state the inference cache belongs to
        self._auxiliary: list[torch.Tensor] = []
        self.to(backbone.device)

    # --- what trains ---------------------------------------------------------------
    @property
    def text_frozen(self) -> bool:
        """No prompt inside the text tower: its embeddings are computed once per text."""
        return not self.config.has_text

    @property
    def vision_frozen(self) -> bool:
        """Nothing reads the image tower's inside: its finished embeddings are cached."""
        return not (self.config.has_vision or self.config.has_generator)

    # --- images ---------------------------------------------------------------------
    @property
    def prepared_output(self) -> str:
        """`stem` (what the visual prompts start from), or `embedding`: the finished
        (uncentred) image embedding, when no visual prompt exists."""
        return "embedding" if self.vision_frozen else "stem"

    def prepare_chunk(self, images: list[Image.Image]) -> torch.Tensor:
        stem = self.backbone.image_stem(self.backbone.preprocess(images))
        return self.backbone.encode_image(stem) if self.vision_frozen else stem

    def embed_prepared(
        self, prepared: torch.Tensor, prompts: PromptSet | None = None
    ) -> ImageFeatures:
        """Prepared images -> their features: centred, L2-normalised (B, D) embeddings
        (moved by the image's own tokens where a residual exists) and (B, n, D) tokens."""
        tokens = None
        if self.vision_frozen:
            raw = prepared
        else:
            vision = (prompts if prompts is not None else self.prompts()).vision
            if self.config.has_generator:
                raw, features = self.backbone.encode_image_tokens(prepared, vision)
                tokens = self.prompts.image_prompts(features)
            else:
                raw = self.backbone.encode_image(prepared, vision)
        embedding = F.normalize(raw - self.image_center, dim=-1)
        return ImageFeatures(self.prompts.condition_image(embedding, tokens), tokens)

    def encode_images(self, images: Sequence[ImageSource]) -> ImageFeatures:
        return self.embed_prepared(self.prepare_images(images))

    @torch.no_grad()
    def calibrate_center(self, prepared: torch.Tensor) -> None:
        """Set the image centre to the mean embedding of the domain's (unlabelled) images.

        Used where the backbone asks for it (`centers_images`): the shipped bridge maps
        all images near one point, and removing the domain's mean is what separates them.
        """
        self.image_center.zero_()
        raw = []
        vision = None if self.vision_frozen else self.prompts().vision
        for start in range(0, len(prepared), 256):
            chunk = prepared[start : start + 256].to(self.backbone.device)
            raw.append(chunk if self.vision_frozen else self.backbone.encode_image(chunk, vision))
        self.image_center.copy_(torch.cat(raw).mean(0))
        self.centered = True

    # --- texts ----------------------------------------------------------------------
    def frozen_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) normalised embeddings of the frozen text tower (no prompt, no adapter),
        cached per text: zero-shot candidates, the text anchor's target."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            with torch.no_grad():
                emb = self.backbone.encode_text(self.backbone.tokenize(missing))
            self._text_cache.update(zip(missing, F.normalize(emb, dim=-1), strict=True))
        out = torch.stack([self._text_cache[t] for t in texts])
        _keep(self._text_cache, texts)
        return out

    def embed_texts(
        self, texts: Sequence[str], text: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(N, D) L2-normalised text embeddings: a function of the texts and the prompts
        only, never of an image.

        At inference (grad disabled, the model's own prompts) they are cached per text,
        keyed by the state of every prompt tensor, so a training step or `load_state_dict`
        drops them: a server embeds a domain's class prompts and question+answer pairs
        once per (domain, version).
        """
        if text is None and not torch.is_grad_enabled():
            return self._cached_texts(texts)
        return self._embed_texts(texts, text)

    def _cached_texts(self, texts: Sequence[str]) -> torch.Tensor:
        key = self._prompt_state()
        if key != self._inference_key:
            self._inference_cache.clear()
            self._inference_key = key
        cache = self._inference_cache
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, self._embed_texts(missing), strict=True))
        out = torch.stack([cache[t] for t in texts])
        _keep(cache, texts)
        return out

    def _prompt_state(self) -> tuple:
        """Changes whenever a prompt tensor does: optimizer steps and load_state_dict write
        in place (bumping each tensor's version counter), replacing a tensor changes its id,
        `.to()` its device or dtype."""
        tensors = itertools.chain(self.prompts.parameters(), self.prompts.buffers())
        return (self.backbone.device, *((id(t), t._version, t.device, t.dtype) for t in tensors))

    def _embed_texts(
        self, texts: Sequence[str], text: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The text tower under the prompts, no inference cache."""
        if self.text_frozen:
            return self.prompts.adapt_text(self.frozen_texts(texts))
        if text is None:
            text = self.prompts().text
        inputs = self.backbone.tokenize(texts, self.config.text_tokens).to(self.backbone.device)
        emb = self.prompts.adapt_text(F.normalize(self.backbone.encode_text(inputs, text), dim=-1))
        if self.config.text_anchor and torch.is_grad_enabled():
            # KgCoOp: keep prompted embeddings near the frozen tower's (added by `fit`)
            gap = (emb - self.frozen_texts(texts)).pow(2).sum(-1).mean()
            self._auxiliary.append(self.config.text_anchor * gap)
        return emb

    def pop_auxiliary_loss(self) -> torch.Tensor | float:
        """Regularising terms gathered since the last call (the text anchor), summed."""
        terms, self._auxiliary = self._auxiliary, []
        return sum(terms) if terms else 0.0

    @property
    def logit_scale(self) -> float:
        return self.backbone.logit_scale

    def score(self, images: ImageFeatures, text: torch.Tensor) -> torch.Tensor:
        """(B, N) logits of each image against each candidate text embedding (N, D).

        With the PFM, each candidate's embedding is first fused with the image's own
        prompt tokens (after the text tower: the texts are still embedded once)."""
        if self.prompts.fusion is None or images.tokens is None:
            return self.logit_scale * images.embedding @ text.T
        fused = self.prompts.fuse(text, images.tokens)  # (B, N, D)
        return self.logit_scale * torch.einsum("bd,bnd->bn", images.embedding, fused)


STEM_CHUNK = 64
"""Images per stem pass when predicting: bounds the memory of one call whatever the batch."""


class DualEncoderKind:
    """The dual-encoder kind (`kinds.KINDS["dual-encoder"]`): `PromptedModel` over
    `MultimodalPrompts`, and predictions scored per domain from one shared stem pass."""

    def build(
        self, backbone: Backbone, config: PromptConfig, task: Task, preset: str | None, seed: int
    ) -> PromptedModel:
        return PromptedModel(backbone, self.prompt_module(backbone, config, seed), task, preset)

    def prompt_module(
        self, backbone: Backbone, config: PromptConfig, seed: int = 0
    ) -> MultimodalPrompts:
        return MultimodalPrompts(config, backbone.slots, seed)

    def predict(
        self,
        items: Sequence[tuple[PromptedModel, Example]],
        rows: list[int],
        out: list[Prediction | None],
        prepared: Sequence[torch.Tensor] | None = None,
        features: list[torch.Tensor | None] | None = None,
    ) -> None:
        """One stem pass for `rows`, one shared plain embedding for the models without
        visual prompts, then each model's prompted part and its task's scores (given
        `prepared` features, each model's part starts from them). `features[i]`: the
        stem, or the plain embedding, row item i's model started from."""
        if prepared is not None:
            for model_rows in group_rows([id(items[i][0]) for i in rows], rows).values():
                model = items[model_rows[0]][0]
                batch = torch.stack([prepared[i] for i in model_rows])
                emb = model.embed_prepared(batch.to(model.backbone.device))
                self._score(model, emb, [items[i][1] for i in model_rows], model_rows, out)
                if features is not None:
                    for i in model_rows:
                        features[i] = prepared[i]
            return
        backbone = items[rows[0]][0].backbone
        images = [items[i][1].image for i in rows]
        stem = torch.cat(list(image_stems(backbone, images, STEM_CHUNK)))
        local = {row: k for k, row in enumerate(rows)}
        plain_rows = [i for i in rows if items[i][0].vision_frozen]
        plain = backbone.encode_image(stem[[local[i] for i in plain_rows]]) if plain_rows else None
        plain_at = {row: k for k, row in enumerate(plain_rows)}
        for model_rows in group_rows([id(items[i][0]) for i in rows], rows).values():
            model = items[model_rows[0]][0]
            if model.vision_frozen:
                start = plain[[plain_at[i] for i in model_rows]]
            else:
                start = stem[[local[i] for i in model_rows]]
            emb = model.embed_prepared(start)
            self._score(model, emb, [items[i][1] for i in model_rows], model_rows, out)
            if features is not None:
                for k, i in enumerate(model_rows):
                    features[i] = start[k]

    @staticmethod
    def _score(model, emb, examples, rows, out) -> None:
        scores = model.task.scores(model, emb, examples)
        for i, row_scores, row_emb in zip(rows, scores, emb.embedding, strict=True):
            out[i] = Prediction(best_candidate(row_scores), row_scores, row_emb)


KIND = DualEncoderKind()
