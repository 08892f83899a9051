"""`hf-clip`: any transformers CLIPModel checkpoint, by hub id or local path.

Deep token prompts in both towers: text prompts replace placeholder tokens right after
the start token (so the end-of-text pooling position moves with them, as the tokenizer
puts the end token after the prompts); visual prompts are appended to the patch sequence
and replaced per layer, the class token still pools.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..errors import BackboneLoadError
from ..text import TextInputs, TextTokenizer, char_tokenizer
from .base import Backbone, PromptSlots, TowerSlot, offline_cause, quiet_transformers
from .injection import DeepPromptInjector
from .pixels import CLIP_MEAN, CLIP_STD, PixelNormalizer

if TYPE_CHECKING:  # transformers takes seconds to import: only when a backbone is built
    from transformers import CLIPConfig, CLIPModel


class HFClipBackbone(Backbone):
    family = "hf-clip"

    def __init__(
        self,
        name: str,
        model: CLIPModel,
        tokenizer: TextTokenizer,
        *,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        super().__init__(name)
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = model.config.vision_config.image_size
        self.normalize = PixelNormalizer(mean, std)
        text, vision = model.text_model, model.vision_model
        self._text_injector = DeepPromptInjector(
            text.embeddings.token_embedding, text.encoder.layers, "replace_after_start"
        )
        self._vision_injector = DeepPromptInjector(
            vision.embeddings, vision.encoder.layers, "append"
        )
        self.freeze()

    @property
    def slots(self) -> PromptSlots:
        cfg = self.model.config
        return PromptSlots(
            vision=TowerSlot(
                cfg.vision_config.num_hidden_layers, cfg.vision_config.hidden_size, "token"
            ),
            text=TowerSlot(cfg.text_config.num_hidden_layers, cfg.text_config.hidden_size, "token"),
            feature_width=cfg.vision_config.hidden_size,
            embed_dim=self.embed_dim,
        )

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize the short side, centre-crop, normalise with CLIP's statistics."""
        size = self.image_size
        batch = []
        for image in images:
            image = image.convert("RGB")
            scale = size / min(image.size)
            w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((w, h), Image.Resampling.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            batch.append(image.crop((left, top, left + size, top + size)))
        return self.normalize(batch)

    def tokenize(self, texts: Sequence[str], n_prompt_tokens: int = 0) -> TextInputs:
        return self.tokenizer(texts, n_prompt_tokens)

    def encode_image(
        self, stem: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        self.check_prompts("vision", prompts)
        with self._vision_injector.use(prompts):
            pooled = self.model.vision_model(pixel_values=stem).pooler_output
        return self.model.visual_projection(pooled)

    def encode_image_tokens(
        self, stem: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's patch tokens (after the post-layernorm, without the class token
        and the appended prompt tokens) are the image's tokens: (B, P, hidden)."""
        self.check_prompts("vision", prompts)
        vision = self.model.vision_model
        with self._vision_injector.use(prompts):
            out = vision(pixel_values=stem)
        patches = (self.image_size // self.model.config.vision_config.patch_size) ** 2
        tokens = vision.post_layernorm(out.last_hidden_state[:, 1 : 1 + patches])
        return self.model.visual_projection(out.pooler_output), tokens

    def encode_text(
        self, inputs: TextInputs, prompts: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        self.check_prompts("text", prompts)
        if prompts and prompts[0].shape[-2] != inputs.n_prompt_tokens:
            raise ValueError(
                f"text was tokenised with {inputs.n_prompt_tokens} prompt slots but "
                f"{prompts[0].shape[-2]} prompt tokens were given"
            )
        with self._text_injector.use(prompts):
            pooled = self.model.text_model(
                input_ids=inputs.input_ids, attention_mask=inputs.attention_mask
            ).pooler_output
        return self.model.text_projection(pooled)


def _clip_text_tokenizer(backend, max_length: int) -> TextTokenizer:
    return TextTokenizer(
        backend,
        start_token="<|startoftext|>",
        end_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        # any ordinary token: its embedding is overwritten, and its id stays below the
        # end token's, which legacy checkpoints (eos_token_id == 2) pool on by argmax
        placeholder_token="x</w>",
        max_length=max_length,
    )


def load(name: str, *, revision: str | None = None) -> HFClipBackbone:
    """Load a CLIPModel checkpoint by hub id (from the local cache) or local directory."""
    from transformers import AutoTokenizer, CLIPModel

    if name == "tiny":
        return tiny()
    try:
        with quiet_transformers():
            # Never the network: a hub id must already be in the local cache.
            model = CLIPModel.from_pretrained(name, revision=revision, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(
                name, revision=revision, local_files_only=True
            )
    except (OSError, ValueError) as exc:
        raise BackboneLoadError(
            f"hf-clip checkpoint {name!r} could not be loaded: it is neither a local directory "
            "with a CLIPModel and its tokenizer nor in the local Hugging Face cache, and this "
            f"platform never downloads ({offline_cause(exc)}). Fix: name a local directory "
            f"holding the checkpoint, or fetch it on a machine with network (`hf download "
            f"{name} --local-dir DIR`) and copy DIR here"
        ) from exc
    backend = tokenizer.backend_tokenizer
    max_length = model.config.text_config.max_position_embeddings
    resolved = str(Path(name).resolve()) if Path(name).exists() else name
    return HFClipBackbone(resolved, model, _clip_text_tokenizer(backend, max_length))


def weight_files(name: str, *, revision: str | None = None) -> list[Path] | None:
    """The files a checkpoint's weights are read from: a local directory's files, or the
    hub id's snapshot in the local cache; None when neither is there (or `tiny`)."""
    if name == "tiny":
        return None
    folder = Path(name).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name, revision=revision, local_files_only=True))
        except Exception:  # not cached (or not a hub id): no stamp, the loader will say why
            return None
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin")]
    return files or None


TINY_SPECIALS = ("<|endoftext|>", "<|startoftext|>", "x</w>")


def tiny_config() -> CLIPConfig:
    """A tiny random CLIP: 2 layers per tower, 32-wide, 32 px images, char vocabulary."""
    from transformers import CLIPConfig

    vocab_size = char_tokenizer(TINY_SPECIALS).get_vocab_size()
    return CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 40,
            "eos_token_id": 0,
            "bos_token_id": 1,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=24,
    )


def tiny_tokenizer(max_length: int = 40) -> TextTokenizer:
    return _clip_text_tokenizer(char_tokenizer(TINY_SPECIALS), max_length)


def tiny(seed: int = 0) -> HFClipBackbone:
    from transformers import CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(tiny_config()).eval()
    return HFClipBackbone("tiny", model, tiny_tokenizer())
