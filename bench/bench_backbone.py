"""A full-size backbone's costs: `hf-clip` at ViT-B/16 shapes, built in code with random
weights (no real checkpoint ships offline; accuracy means nothing here, only shapes and
costs do). `python bench/scale.py backbone` prints these lines.

Measured in one process, one torch thread: trainable parameters and their share of the
backbone per preset; one training step (batch 8) of `mpt` from stored features against
full fine-tuning from pixels: time and training memory (activations autograd saves + grads
+ AdamW state, as bench/step_cost.py counts them); the bytes the feature store keeps per
image for each preset; the serving process's memory with 10 domains' prompts against 1.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from methods.memory import SavedTensorBytes

VIT_B_16 = {
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 77,
    },
    "vision_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 16,
    },
    "projection_dim": 512,
}
BATCH = 8
CLASSES = [f"class {i}" for i in range(10)]


def vit_b_16():
    """The ViT-B/16 CLIP architecture with random weights, as an `hf-clip` backbone."""
    from transformers import CLIPConfig, CLIPModel

    from mpt_core.backbones.hf_clip import HFClipBackbone, tiny_tokenizer

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(**VIT_B_16)).eval()
    # a character-level tokenizer (no CLIP vocabulary ships offline): sequences are longer
    # than BPE's, which makes the text tower's cost an upper bound
    return HFClipBackbone("vit-b-16-random", model, tiny_tokenizer(77))


def _images(n: int):
    import numpy as np
    from PIL import Image

    from mpt_core import Example

    rng = np.random.default_rng(0)
    return [
        Example(
            Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)),
            label=CLASSES[i % 10],
        )
        for i in range(n)
    ]


def _step_cost(params, step, frozen) -> tuple[float, float]:
    """(seconds per step over 2 steps, training memory MiB) of an optimizer step."""
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        step().backward()
        optimizer.step()

    run()
    exclude = {t.untyped_storage().data_ptr() for t in frozen}
    exclude -= {p.untyped_storage().data_ptr() for p in params}
    counter = SavedTensorBytes(exclude)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        run()
    memory = (counter.total + 12 * sum(p.numel() for p in params)) / 2**20
    started = time.perf_counter()
    for _ in range(2):
        run()
    return (time.perf_counter() - started) / 2, memory


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure(images: int) -> Iterator[str]:
    from mpt_core import PRESETS, ClassificationTask, build_prompts
    from mpt_core.kinds import trainable_parameters

    backbone = vit_b_16()
    total = backbone.num_parameters()
    yield f"hf-clip at ViT-B/16 shapes, random weights: {total:,} backbone parameters\n"
    yield "| preset | trainable | share | stored per image (feature store) |"
    yield "| --- | ---: | ---: | ---: |"
    task = ClassificationTask(CLASSES)
    data = _images(max(images, BATCH))
    for preset in PRESETS:
        model = build_prompts(backbone, preset, task)
        row = model.prepare_images([e.image for e in data[:1]])
        stored = row.numel() * row.element_size()
        yield (
            f"| {preset} | {trainable_parameters(backbone, preset):,} | "
            f"{trainable_parameters(backbone, preset) / total:.3%} | {stored / 1024:.0f} kB "
            f"({model.prepared_output}) |"
        )
    batch = data[:BATCH]
    target = task.targets(batch)
    steps = {}
    for preset in ("coop", "vpt", "mpt"):
        model = build_prompts(backbone, preset, task)
        prepared = model.prepare_images([e.image for e in batch])

        def prompt_step(model=model, prepared=prepared) -> torch.Tensor:
            return task.loss(model, model.embed_prepared(prepared), batch)

        steps[preset] = _step_cost(
            list(model.parameters()), prompt_step, [*backbone.parameters(), prepared]
        )
    for p in backbone.parameters():
        p.requires_grad_(True)
    pixels = backbone.preprocess([e.image for e in batch])
    texts = backbone.tokenize(task.texts())

    def full_step() -> torch.Tensor:
        img = F.normalize(backbone.encode_image(backbone.image_stem(pixels)), dim=-1)
        txt = F.normalize(backbone.encode_text(texts), dim=-1)
        return F.cross_entropy(backbone.logit_scale * img @ txt.T, target)

    full_s, full_mb = _step_cost(list(backbone.parameters()), full_step, [pixels])
    for p in backbone.parameters():
        p.requires_grad_(False)
    yield ""
    yield f"| one step, batch {BATCH} | seconds | training memory MiB |"
    yield "| --- | ---: | ---: |"
    for preset, (seconds, mb) in steps.items():
        yield (
            f"| {preset}, from stored features | {seconds:.2f} ({seconds / full_s:.2f}x) "
            f"| {mb:.0f} ({mb / full_mb:.3f}x) |"
        )
    yield f"| full fine-tuning, from pixels | {full_s:.2f} | {full_mb:.0f} |"


def serving_memory(domains: int = 10) -> Iterator[str]:
    """The serving process's RSS with the backbone and 1 domain's prompts, then 10 (each
    with its text cache filled by a prediction); run in a fresh process."""
    from mpt_core import ClassificationTask, PromptServer, build_prompts

    backbone = vit_b_16()
    server = PromptServer(backbone)
    batch = _images(2)
    gc.collect()
    base = _rss_mib()
    rss = {}
    for n in range(1, domains + 1):
        classes = ClassificationTask([f"{c} {n}" for c in CLASSES])
        server.add(f"d{n}", build_prompts(backbone, "mpt", classes, seed=n).eval())
        server.predictions([(f"d{n}", e) for e in batch])  # its text cache filled
        rss[n] = _rss_mib()
    yield ""
    yield "| serving (mpt prompts) | process RSS MiB | over the bare backbone MiB |"
    yield "| --- | ---: | ---: |"
    yield f"| backbone + 1 domain | {rss[1]:.0f} | {rss[1] - base:.0f} |"
    yield (
        f"| backbone + {domains} domains | {rss[domains]:.0f} ({rss[domains] / rss[1]:.2f}x) "
        f"| {rss[domains] - base:.0f} |"
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    for line in serving_memory():
        print(line, flush=True)
