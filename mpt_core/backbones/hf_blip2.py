"""`hf-blip2`: transformers `Blip2ForConditionalGeneration`, by hub id (local cache) or path.

Where prompts go:
- VPG: visual prompt tokens appended to the ViT's patch sequence and replaced per layer
  (deep VPT, the same hooks as hf-clip). The Q-Former reads the ViT's whole output, the
  prompt positions included (it is BLIP-2's pooler, as CLIP's class token reads the
  prompts in its last layer); those positions' last states also go to the fusion.
- TPG: learned tokens in the language model's input embeddings (p-tuning), right after
  the start token of a decoder-only LM (OPT), right after the query embeddings of an
  encoder-decoder LM (T5).
- PFM: after each Q-Former cross-attention layer (where the learned queries read the
  image) a `QueryFusion` callable may rewrite the query states; the prompt module's gated
  fusion lets them attend to the visual and text prompt tokens there.

Layout of one decoder-only row (left-padded, so generation continues every row at once):
`[pad..] [queries] [bos] [text prompt tokens] [prompt ids] [target ids] [eos]`.
Encoder-decoder: encoder `[queries] [text prompt tokens] [prompt ids] [eos]`, decoder
`[target ids] [eos]`. With no prompt tokens both are exactly what transformers' own
`Blip2ForConditionalGeneration` computes (tested on tiny configs, logits and generation).
"""

from __future__ import annotations

import copy
import string
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from ..errors import BackboneLoadError, DataError
from .base import PromptSlots, TowerSlot, offline_cause, quiet_transformers
from .generative import (
    FusionSlot,
    GenerativeBackbone,
    GenerativeTokenizer,
    QueryFusion,
    VisionOutput,
)
from .injection import DeepPromptInjector
from .pixels import CLIP_MEAN, CLIP_STD, PixelNormalizer

if TYPE_CHECKING:  # transformers takes seconds to import: only when a backbone is built
    from transformers import Blip2Config, Blip2ForConditionalGeneration

IGNORE = -100  # label of positions that are not scored
ENCODER_DECODER_MAX_POSITIONS = 512  # T5 has relative positions; its usual input limit
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HFBlip2Backbone(GenerativeBackbone):
    family = "hf-blip2"

    def __init__(
        self,
        name: str,
        model: Blip2ForConditionalGeneration,
        tokenizer: GenerativeTokenizer,
        *,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        super().__init__(name, tokenizer)
        self.model = model
        size = model.config.vision_config.image_size
        self.image_size = size if isinstance(size, int) else int(size[0])
        self.normalize = PixelNormalizer(mean, std)
        vision = model.vision_model
        self._vision_injector = DeepPromptInjector(
            vision.embeddings, vision.encoder.layers, "append"
        )
        self._fusion: QueryFusion | None = None
        cross = [
            layer.crossattention
            for layer in model.qformer.encoder.layer
            if layer.has_cross_attention
        ]
        for index, module in enumerate(cross):
            module.register_forward_hook(self._fusion_hook(index))
        self._cross_layers = len(cross)
        self.freeze()

    # --- description -------------------------------------------------------------
    @property
    def _lm(self):
        return self.model.language_model

    @property
    def slots(self) -> PromptSlots:
        vision = self.model.config.vision_config
        return PromptSlots(
            vision=TowerSlot(vision.num_hidden_layers, vision.hidden_size, "token"),
            text=TowerSlot(1, self.embed_dim, "token"),
        )

    @property
    def fusion_slot(self) -> FusionSlot:
        return FusionSlot(self._cross_layers, self.model.config.qformer_config.hidden_size)

    @property
    def embed_dim(self) -> int:
        return int(self._lm.get_input_embeddings().embedding_dim)

    @property
    def num_queries(self) -> int:
        return int(self.model.config.num_query_tokens)

    @property
    def is_encoder_decoder(self) -> bool:
        return not self.model.config.use_decoder_only_language_model

    @property
    def max_positions(self) -> int:
        if self.is_encoder_decoder:
            return ENCODER_DECODER_MAX_POSITIONS
        return int(self.model.config.text_config.max_position_embeddings)

    # --- vision --------------------------------------------------------------------
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize to the square input size (BLIP-2's processor does not crop), normalise."""
        size = (self.image_size, self.image_size)
        batch = [im.convert("RGB").resize(size, Image.Resampling.BICUBIC) for im in images]
        return self.normalize(batch).to(self.model.vision_model.dtype)

    def encode_image(
        self, pixels: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None
    ) -> VisionOutput:
        self.check_prompts(prompts)
        with self._vision_injector.use(prompts):
            states = self.model.vision_model(pixel_values=pixels).last_hidden_state
        n = prompts[0].shape[-2] if prompts else 0
        return VisionOutput(states, states[:, -n:] if n else None)

    def _fusion_hook(self, index: int):
        def hook(module, args, output: torch.Tensor):
            return None if self._fusion is None else self._fusion(index, output)

        return hook

    def query_embeds(
        self, image_tokens: torch.Tensor, fusion: QueryFusion | None = None
    ) -> torch.Tensor:
        queries = self.model.query_tokens.expand(image_tokens.shape[0], -1, -1)
        mask = torch.ones(image_tokens.shape[:-1], dtype=torch.long, device=image_tokens.device)
        previous, self._fusion = self._fusion, fusion
        try:
            states = self.model.qformer(
                query_embeds=queries,
                encoder_hidden_states=image_tokens,
                encoder_attention_mask=mask,
            ).last_hidden_state
        finally:
            self._fusion = previous
        # the Q-Former may run in another dtype (float32 next to float16 weights);
        # transformers casts its output back to the image dtype, and so do we
        return self.model.language_projection(states.to(image_tokens.dtype))

    # --- language model --------------------------------------------------------------
    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self._lm.get_input_embeddings()(ids)

    def _fit(self, index: int, used: int, target: list[int], reserve: int) -> list[int]:
        """Cut a target so the row fits the language model; a prompt alone must fit."""
        room = self.max_positions - used - reserve
        if room < (2 if target else 1):
            raise DataError(
                f"example {index}: its prompt takes {used} of the language model's "
                f"{self.max_positions} positions, leaving no room for the text; shorten it"
            )
        return target if len(target) <= room else [*target[: room - 1], target[-1]]

    def _decoder_rows(
        self,
        queries: torch.Tensor,
        text: torch.Tensor,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]] | None,
        reserve: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Left-padded `[pad..] [queries] [bos] [text prompt] [prompt] [target] [eos]`."""
        tok = self.tokenizer
        head = [tok.bos_id] if tok.bos_id is not None else []
        fixed = queries.shape[1] + len(head) + text.shape[0]
        tails, targets = [], []
        for i, prompt in enumerate(prompt_ids):
            target = [] if target_ids is None else [*target_ids[i], tok.eos_id]
            target = self._fit(i, fixed + len(prompt), target, reserve)
            tails.append([*prompt, *target])
            targets.append(target)
        length = max(fixed + len(t) for t in tails)
        pads = [length - fixed - len(tail) for tail in tails]
        ids = [[tok.pad_id] * pad + head + tail for pad, tail in zip(pads, tails, strict=True)]
        emb = self._embed(torch.tensor(ids, device=queries.device))  # one lookup: (B, ids, d)
        rows, masks, labels = [], [], []
        for i, pad in enumerate(pads):
            cut = pad + len(head)
            rows.append(torch.cat([emb[i, :pad], queries[i], emb[i, pad:cut], text, emb[i, cut:]]))
            masks.append([0] * pad + [1] * (length - pad))
            labels.append([IGNORE] * (length - len(targets[i])) + targets[i])
        mask = torch.tensor(masks, device=queries.device)
        label_tensor = None if target_ids is None else torch.tensor(labels, device=queries.device)
        return torch.stack(rows), mask, label_tensor

    def _encoder_rows(
        self,
        queries: torch.Tensor,
        text: torch.Tensor,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Right-padded encoder `[queries] [text prompt] [prompt] [eos]`; decoder labels
        `[target] [eos]`."""
        tok = self.tokenizer
        fixed = queries.shape[1] + text.shape[0]
        tails = [[*prompt, tok.eos_id] for prompt in prompt_ids]
        for i, tail in enumerate(tails):
            self._fit(i, fixed + len(tail), [], 0)
        length = max(fixed + len(t) for t in tails)
        pads = [length - fixed - len(tail) for tail in tails]
        ids = [tail + [tok.pad_id] * pad for pad, tail in zip(pads, tails, strict=True)]
        emb = self._embed(torch.tensor(ids, device=queries.device))  # one lookup: (B, ids, d)
        rows = torch.cat([queries, text.expand(len(tails), -1, -1), emb], dim=1)
        masks = [[1] * (length - pad) + [0] * pad for pad in pads]
        mask = torch.tensor(masks, device=queries.device)
        if target_ids is None:
            return rows, mask, None
        targets = [self._fit(i, 0, [*t, tok.eos_id], 0) for i, t in enumerate(target_ids)]
        width = max(len(t) for t in targets)
        labels = [t + [IGNORE] * (width - len(t)) for t in targets]
        return rows, mask, torch.tensor(labels, device=queries.device)

    def _rows(
        self,
        queries: torch.Tensor,
        text_prompt: torch.Tensor | None,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]] | None,
        reserve: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """inputs_embeds (B, L, d), attention_mask (B, L) and labels (or None) for the
        layout in the module docstring, in the language model's dtype."""
        dtype = self._lm.get_input_embeddings().weight.dtype
        queries = queries.to(dtype)
        width = queries.shape[-1]
        text = queries.new_zeros(0, width) if text_prompt is None else text_prompt.to(dtype)
        if self.is_encoder_decoder:
            return self._encoder_rows(queries, text, prompt_ids, target_ids)
        return self._decoder_rows(queries, text, prompt_ids, target_ids, reserve)

    def lm_forward(
        self,
        queries: torch.Tensor,
        text_prompt: torch.Tensor | None,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, L, V) and the labels (B, L) they score, already aligned (a decoder-only
        LM's logits lose their last position and its labels their first); unscored
        positions hold IGNORE."""
        embeds, mask, labels = self._rows(queries, text_prompt, prompt_ids, target_ids, 0)
        assert labels is not None
        if self.is_encoder_decoder:
            logits = self._lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).logits
            return logits, labels
        logits = self._lm(inputs_embeds=embeds, attention_mask=mask).logits
        return logits[:, :-1], labels[:, 1:]

    def lm_loss(self, queries, text_prompt, prompt_ids, target_ids) -> torch.Tensor:
        logits, labels = self.lm_forward(queries, text_prompt, prompt_ids, target_ids)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE
        )

    def generate(
        self,
        queries: torch.Tensor,
        text_prompt: torch.Tensor | None,
        prompt_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        num_beams: int = 1,
    ) -> list[list[int]]:
        embeds, mask, _ = self._rows(queries, text_prompt, prompt_ids, None, max_new_tokens)
        config = copy.deepcopy(self._lm.generation_config)
        config.update(
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            eos_token_id=list(self.tokenizer.stop_ids),
            pad_token_id=self.tokenizer.pad_id,
        )
        with quiet_transformers():
            out = self._lm.generate(
                inputs_embeds=embeds, attention_mask=mask, generation_config=config
            )
        if self.is_encoder_decoder:
            out = out[:, 1:]  # the decoder start token
        stops = set(self.tokenizer.stop_ids)
        rows = []
        for row in out.tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            rows.append(row[:cut])
        return rows


def tokenizer_for(backend: Tokenizer, config: Blip2Config, generation_eos) -> GenerativeTokenizer:
    """The language model's tokenizer with BLIP-2's start, end (every generation end id) and
    pad ids; encoder-decoder models have no start token."""
    text = config.text_config
    eos = generation_eos if generation_eos is not None else text.eos_token_id
    stops = list(eos) if isinstance(eos, list | tuple) else [eos]
    decoder_only = config.use_decoder_only_language_model
    return GenerativeTokenizer(
        backend,
        bos_id=text.bos_token_id if decoder_only else None,
        eos_id=stops[0],
        pad_id=text.pad_token_id if text.pad_token_id is not None else stops[0],
        stop_ids=stops,
    )


def _dtype(dtype: str | None) -> torch.dtype | None:
    if dtype is None:
        return None
    try:
        return DTYPES[dtype]
    except KeyError:
        raise BackboneLoadError(
            f"hf-blip2 dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}"
        ) from None


def load(name: str, *, revision: str | None = None, dtype: str | None = None) -> HFBlip2Backbone:
    """Load a BLIP-2 checkpoint from a local directory or the local Hugging Face cache.

    Never touches the network (`local_files_only`). `dtype="bfloat16"` or `"float16"`
    halves memory on a GPU (with float16 transformers keeps the Q-Former and its queries in
    float32; with bfloat16 everything is bfloat16). Prompts always train in float32.
    """
    from transformers import AutoConfig, AutoTokenizer, Blip2Config, Blip2ForConditionalGeneration

    if name in TINY_LANGUAGE_MODELS:
        return tiny(lm=TINY_LANGUAGE_MODELS[name])
    torch_dtype = _dtype(dtype)
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(name, revision=revision, local_files_only=True)
            if not isinstance(config, Blip2Config):
                raise BackboneLoadError(
                    f"hf-blip2 checkpoint {name!r} is a {config.model_type!r} model, not BLIP-2 "
                    "(Blip2ForConditionalGeneration). HINT: use the family that matches it"
                )
            model = Blip2ForConditionalGeneration.from_pretrained(
                name, revision=revision, local_files_only=True, dtype=torch_dtype
            )
            tokenizer = AutoTokenizer.from_pretrained(
                name, revision=revision, local_files_only=True
            )
    except (OSError, ValueError) as exc:
        raise BackboneLoadError(
            f"hf-blip2 checkpoint {name!r} could not be loaded: it is neither a local directory "
            "with a Blip2ForConditionalGeneration and its tokenizer nor in the local Hugging "
            f"Face cache, and this platform never downloads ({offline_cause(exc)}). Fix: name "
            "a local directory holding the checkpoint, or fetch it on a machine with network "
            f"(`hf download {name} --local-dir DIR`) and copy DIR here"
        ) from exc
    resolved = str(Path(name).resolve()) if Path(name).exists() else name
    generation_eos = model.language_model.generation_config.eos_token_id
    return HFBlip2Backbone(
        resolved, model.eval(), tokenizer_for(tokenizer.backend_tokenizer, config, generation_eos)
    )


# --- tiny random configurations, built in code for tests ------------------------------
TINY_SPECIALS = ("<pad>", "<s>", "</s>", "<image>", "<unk>")  # ids 0..4
TINY_LANGUAGE_MODELS = {"tiny": "opt", "tiny-t5": "t5"}


def tiny_tokenizer() -> Tokenizer:
    """Characters (space included) of printable ASCII; decoding joins them back exactly."""
    vocab = {tok: i for i, tok in enumerate(TINY_SPECIALS)}
    for ch in " " + string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(TINY_SPECIALS))
    return tok


def tiny_config(lm: str = "opt") -> Blip2Config:
    """ViT 2x32 (32 px, 8 px patches), Q-Former 2x32 with 4 queries reading the image in
    both layers, and a 2-layer 32-wide OPT (decoder-only) or T5 (encoder-decoder)."""
    from transformers import Blip2Config

    vocab_size = tiny_tokenizer().get_vocab_size()
    if lm == "opt":
        text = {
            "model_type": "opt",
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "word_embed_proj_dim": 32,
            "ffn_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 96,
            "init_std": 0.3,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
        }
    elif lm == "t5":
        text = {
            "model_type": "t5",
            "vocab_size": vocab_size,
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 64,
            "num_layers": 2,
            "num_decoder_layers": 2,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 32,
            "pad_token_id": 0,
            "eos_token_id": 2,
            "decoder_start_token_id": 0,
        }
    else:
        raise ValueError(f"tiny hf-blip2 language model {lm!r}: use 'opt' or 't5'")
    return Blip2Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "initializer_range": 0.02,  # BLIP-2's default 1e-10 makes every image look alike
        },
        qformer_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "cross_attention_frequency": 1,
            "vocab_size": vocab_size,
            "max_position_embeddings": 64,
            "initializer_range": 0.2,
        },
        text_config=text,
        num_query_tokens=4,
        image_token_index=TINY_SPECIALS.index("<image>"),
        # Larger than transformers' defaults (0.02) in the Q-Former, projection and OPT:
        # at 0.02 a random tiny model's queries ignore the image and its LM ignores its
        # input, so no prompt could change what it writes; a trained model's do not.
        initializer_range=0.2,
    )


def tiny(seed: int = 0, lm: str = "opt") -> HFBlip2Backbone:
    from transformers import Blip2ForConditionalGeneration

    torch.manual_seed(seed)
    config = tiny_config(lm)
    model = Blip2ForConditionalGeneration(config).eval()
    # transformers initialises the queries at zero (they are trained); random ones make the
    # tiny Q-Former's outputs differ per query, as a trained one's do
    torch.nn.init.normal_(model.query_tokens, std=0.02)
    name = next(k for k, v in TINY_LANGUAGE_MODELS.items() if v == lm)
    eos = model.language_model.generation_config.eos_token_id
    return HFBlip2Backbone(name, model, tokenizer_for(tiny_tokenizer(), config, eos))
