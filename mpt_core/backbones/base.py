"""The small protocol every frozen dual-encoder backbone implements."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal, Self

import torch
from PIL import Image
from torch import nn

from ..text import TextInputs

SlotKind = Literal["token", "query"]


@dataclass(frozen=True)
class TowerSlot:
    """Where prompts can go in one tower.

    depth: how many layers accept prompts (layer 0 is the input sequence).
    width: width of one prompt token.
    kind: "token" = tokens in a transformer's sequence, replaced per layer;
          "query" = learnable queries of an attention pooling over a CNN feature map.
    """

    depth: int
    width: int
    kind: SlotKind


@dataclass(frozen=True)
class PromptSlots:
    """Where prompts can go: in each tower, and after the towers.

    feature_width: width C of the frozen per-position image features that
        `encode_image_tokens` returns (CNN feature-map positions, ViT patch tokens), which
        the image-conditioned prompt generator reads; 0 = the family offers none.
    embed_dim: width D of the shared embedding space, where the prompt fusion and the
        residual paths act.
    """

    vision: TowerSlot
    text: TowerSlot
    feature_width: int = 0
    embed_dim: int = 0


@dataclass(frozen=True)
class BackboneIdentity:
    """What a prompt artifact is bound to: family + checkpoint name + weights sha256."""

    family: str
    name: str
    weights_sha256: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.family}:{self.name} (weights sha256 {self.weights_sha256[:12]}…)"


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over every tensor of `module`'s state dict, in key order (format-independent)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


ImageLike = Image.Image


class FrozenBackbone(nn.Module):
    """What every backbone kind shares: a name, an identity bound to its weights, and
    being frozen for good (no parameter trains, never out of eval mode)."""

    family: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._identity: BackboneIdentity | None = None

    #: Bumped when a family's preprocessing code changes what a stored feature would be.
    preprocessing_version: ClassVar[int] = 1

    @property
    def preprocessing(self) -> str:
        """What decides the pixels the tower sees besides the weights (a stored feature's
        key): the class, its input size and the version of its preprocessing code."""
        size = getattr(self, "image_size", None)
        kind = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"{kind}/{size}/v{self.preprocessing_version}"

    @property
    def identity(self) -> BackboneIdentity:
        if self._identity is None:
            self._identity = BackboneIdentity(self.family, self.name, state_dict_sha256(self))
        return self._identity

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def freeze(self) -> Self:
        """eval() and requires_grad=False on every parameter. Called once at load."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Self:
        # A frozen backbone never leaves eval mode: no dropout, batch-norm statistics fixed.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class Backbone(FrozenBackbone, ABC):
    """A frozen dual encoder. Subclasses wrap real towers; nothing in them ever trains.

    Image path: `preprocess` (PIL -> pixels) -> `image_stem` (the part no prompt touches,
    cacheable) -> `encode_image(stem, prompts)`. Text path: `tokenize` -> `encode_text`.
    Embeddings come back unnormalised; callers normalise (and centre, see
    `centers_images`).
    """

    kind: ClassVar[str] = "dual-encoder"  # see `Task.backbone_kind`; generative.py has the other
    #: The shipped bridge puts every image near one point; subtracting the domain's mean
    #: image embedding before normalising is what makes its zero-shot space usable.
    centers_images: ClassVar[bool] = False

    # --- description -------------------------------------------------------------
    @property
    @abstractmethod
    def slots(self) -> PromptSlots: ...

    @property
    @abstractmethod
    def embed_dim(self) -> int: ...

    @property
    @abstractmethod
    def logit_scale(self) -> float: ...

    # --- encoding ------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """PIL images -> (B, 3, H, W) float pixels as the image tower expects them."""

    @abstractmethod
    def tokenize(self, texts: Sequence[str], n_prompt_tokens: int = 0) -> TextInputs: ...

    def image_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        """The part of the image tower that no prompt touches; its output is cached."""
        return pixels

    @abstractmethod
    def encode_image(
        self, stem: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B, ...) stem output, per-layer prompts [(n, width)] -> (B, embed_dim)."""

    def encode_image_tokens(
        self, stem: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `encode_image`, and also the image's own per-position features.

        Returns (B, embed_dim) embeddings and (B, P, feature_width) features of P positions
        (CNN feature-map positions, ViT patch tokens), from the same forward pass.
        """
        raise NotImplementedError(
            f"backbone family {self.family!r} does not expose per-position image features; "
            "use image_tokens=0"
        )

    @abstractmethod
    def encode_text(
        self, inputs: TextInputs, prompts: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Tokenised texts, per-layer prompts [(n, width)] -> (N, embed_dim)."""

    def check_prompts(self, tower: str, prompts: Sequence[torch.Tensor] | None) -> None:
        if not prompts:
            return
        slot: TowerSlot = getattr(self.slots, tower)
        if len(prompts) > slot.depth:
            raise ValueError(
                f"{len(prompts)} {tower} prompt layers given; {self.family} accepts {slot.depth}"
            )
        for layer, p in enumerate(prompts):
            if p.shape[-1] != slot.width:
                raise ValueError(
                    f"{tower} prompt of layer {layer} has width {p.shape[-1]}; "
                    f"{self.family} expects {slot.width}"
                )


_HUB_UNREACHABLE = re.compile(
    r"We couldn't connect to '[^']*' to load the files?, and couldn't find (them|it) in the "
    r"cached files\.?"
)


def offline_cause(exc: BaseException) -> str:
    """transformers' reason a checkpoint did not load, as this platform means it: it never
    downloads, so "couldn't connect to the hub" is a checkpoint missing from the local
    cache, and the advice to check the internet connection is dropped (the caller's
    message says what to do instead)."""
    lines = [
        line
        for line in str(exc).splitlines()
        if not line.strip().lower().startswith("check your internet connection")
    ]
    text = " ".join(line.strip() for line in lines if line.strip())
    return _HUB_UNREACHABLE.sub("its files are not in the local Hugging Face cache.", text)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars while loading known weights
    (e.g. the unused pooler of MiniLM), restoring the caller's settings afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
