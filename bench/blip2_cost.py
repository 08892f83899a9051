"""Size and training memory of prompt tuning on BLIP-2, computed without its weights.

    python bench/blip2_cost.py [--config CHECKPOINT_DIR/config.json] [--batch-size 8]
                               [--caption-tokens 20] [--dtype bfloat16]

The model is built on PyTorch's meta device from its configuration (shapes only: no
weights, no memory, no GPU), so the parameter counts are exact for that configuration.
One training step per preset (teacher-forced captioning loss, backward) is then traced on
the meta device, summing the bytes of the tensors autograd saves for backward, frozen
weights excluded: the activation memory of the step. It is an upper bound (views are
counted on their own; on the meta device attention saves its probabilities, which a
fused CUDA kernel does not).

GPU memory of a step = frozen weights (in --dtype) + saved activations + 16 bytes per
trainable parameter (float32 value, gradient and two AdamW moments). CUDA's workspace and
allocator slack come on top; nothing here was run on a GPU.

Without --config the configuration is Salesforce/blip2-opt-2.7b's: ViT-g/14 at 224 px
(39 layers, 1408 wide), Q-Former (12 layers, 768 wide, cross-attention every 2nd layer,
32 queries), OPT-2.7b (32 layers, 2560 wide, vocabulary 50272).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from mpt_core import CaptioningTask, build_prompts
from mpt_core.backbones.hf_blip2 import DTYPES, HFBlip2Backbone, tiny_tokenizer, tokenizer_for
from mpt_core.support import family_presets

BLIP2_OPT_2_7B = {
    "vision_config": {
        "hidden_size": 1408,
        "intermediate_size": 6144,
        "num_hidden_layers": 39,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
    },
    "qformer_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "cross_attention_frequency": 2,
        "encoder_hidden_size": 1408,
    },
    "text_config": {
        "model_type": "opt",
        "vocab_size": 50272,
        "hidden_size": 2560,
        "word_embed_proj_dim": 2560,
        "ffn_dim": 10240,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "max_position_embeddings": 2048,
        "bos_token_id": 2,
        "eos_token_id": 50118,
        "pad_token_id": 1,
    },
    "num_query_tokens": 32,
}


def trace_masks_on_meta() -> None:
    """transformers skips an all-ones attention mask after looking at its values, which a
    meta tensor does not have; always build the mask instead (same shapes either way)."""
    from transformers import masking_utils

    masking_utils._ignore_bidirectional_mask_sdpa = lambda *args, **kwargs: False
    masking_utils._ignore_causal_mask_sdpa = lambda *args, **kwargs: False


class SavedBytes:
    """Sums the bytes of the tensors autograd saves for backward, except `exclude`d ones
    (the frozen weights, which a linear layer keeps to pass gradients to its input) and
    their views; other views are counted on their own."""

    def __init__(self, exclude: list[torch.Tensor]) -> None:
        self.exclude = {id(t) for t in exclude}
        self.total = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if id(t) not in self.exclude and (t._base is None or id(t._base) not in self.exclude):
            self.total += t.numel() * t.element_size()
        return t


def meta_backbone(config_dict: dict, dtype: torch.dtype) -> HFBlip2Backbone:
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config.from_dict(config_dict)
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config).to(dtype)
    if dtype == torch.float16:  # what from_pretrained does: the Q-Former stays float32
        model.qformer.float()
        model.query_tokens.data = model.query_tokens.data.float()
    eos = config.text_config.eos_token_id
    backbone = HFBlip2Backbone("blip2 (meta)", model, tokenizer_for(tiny_tokenizer(), config, eos))
    backbone._identity = None  # never hashed: there are no weights
    return backbone


def step_bytes(backbone: HFBlip2Backbone, preset: str, batch: int, tokens: int) -> tuple[int, int]:
    model = build_prompts(backbone, preset, CaptioningTask())
    size = backbone.image_size
    dtype = backbone.model.vision_model.dtype
    images = torch.empty(batch, 3, size, size, device="meta", dtype=dtype)
    prepared = images
    if model.vision_frozen:  # what fit caches: no visual prompt, the queries are fixed
        with torch.no_grad():
            prepared = backbone.query_embeds(backbone.encode_image(images).tokens)
    saved = SavedBytes([*backbone.parameters(), *backbone.buffers()])
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        queries = model.embed_prepared(prepared)
        loss = backbone.lm_loss(queries, model.prompts().text, [[]] * batch, [[5] * tokens] * batch)
    loss.backward()
    return model.num_trainable(), saved.total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="a BLIP-2 checkpoint's config.json")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--caption-tokens", type=int, default=20)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text()) if args.config else BLIP2_OPT_2_7B
    dtype = DTYPES[args.dtype]
    trace_masks_on_meta()
    backbone = meta_backbone(config, dtype)
    parts = {
        "vision (ViT)": backbone.model.vision_model,
        "Q-Former + queries": [backbone.model.qformer, backbone.model.query_tokens],
        "projection": backbone.model.language_projection,
        "language model": backbone.model.language_model,
    }
    total = backbone.num_parameters()
    weight_bytes = sum(p.numel() * p.element_size() for p in backbone.parameters())
    print(f"torch {torch.__version__}, {platform.machine()}, meta device (no weights)")
    print(f"config: {args.config or 'Salesforce/blip2-opt-2.7b (built in)'}, dtype {args.dtype}")
    print(f"\n{'part':<20} {'parameters':>15}")
    for name, part in parts.items():
        modules = part if isinstance(part, list) else [part]
        n = sum(
            m.numel() if isinstance(m, torch.Tensor) else sum(p.numel() for p in m.parameters())
            for m in modules
        )
        print(f"{name:<20} {n:>15,}")
    print(f"{'total':<20} {total:>15,}   weights {weight_bytes / 2**30:.2f} GiB in {args.dtype}")
    print(f"\none training step, batch {args.batch_size}, {args.caption_tokens}-token captions")
    print(f"{'preset':<7} {'trainable':>11} {'of backbone':>12} {'activations':>12}", end="")
    print(f" {'step total':>11}")
    for preset in family_presets("hf-blip2"):
        trainable, saved = step_bytes(backbone, preset, args.batch_size, args.caption_tokens)
        step = weight_bytes + saved + 16 * trainable
        print(
            f"{preset:<7} {trainable:>11,} {trainable / total:>11.4%} "
            f"{saved / 2**30:>9.2f} GiB {step / 2**30:>7.2f} GiB"
        )


if __name__ == "__main__":
    main()
