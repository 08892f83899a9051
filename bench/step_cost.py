"""Cost of one training step per method, measured side by side in one run.

    python bench/step_cost.py [--backbone shipped] [--batch-size 32] [--steps 10]

Each method runs in its own subprocess (so peak memory is its own), on the same backbone,
batch size and images (Fashion-MNIST, 10 classes). A step is what the trainer does per
batch: prompt methods start from the cached frozen stem (or cached image embeddings when
no visual prompt exists); full fine-tuning runs both towers forward and backward; the
linear probe trains a linear head on cached image features.

Training memory on CPU = bytes of the tensors autograd saves for backward during one
step (activations; frozen weights and cached inputs excluded) + gradients and AdamW state
of the trainable parameters (3 x their size). On CUDA: peak allocated during the timed
steps minus allocated before them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from methods.memory import SavedTensorBytes

METHODS = ("full-ft", "linear-probe", "lora", "clip-adapter", "coop", "vpt", "maple", "mpt")


def _images(n: int):
    from mpt_core.samples import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, fashion_mnist

    if FASHION_MNIST_DIR.exists():
        per_class = -(-n // 10)
        return fashion_mnist("train", per_class)[:n], list(FASHION_MNIST_CLASSES)
    import numpy as np
    from PIL import Image

    from mpt_core import Example

    rng = np.random.default_rng(0)
    names = [f"class {i}" for i in range(10)]
    return [
        Example(
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), label=names[i % 10]
        )
        for i in range(n)
    ], names


def measure(method: str, backbone_spec: str, batch_size: int, steps: int) -> dict:
    from mpt_core import ClassificationTask, build_prompts, load_backbone

    family, _, name = backbone_spec.partition(":")
    backbone = load_backbone(family, name or None)
    if torch.cuda.is_available():
        backbone.cuda()
    device = backbone.device
    examples, names = _images(batch_size)
    task = ClassificationTask(names)
    target = task.targets(examples).to(device)
    total = backbone.num_parameters()

    if method == "full-ft":
        for p in backbone.parameters():
            p.requires_grad_(True)
        pixels = backbone.preprocess([e.image for e in examples])
        texts = backbone.tokenize(task.texts())
        params = list(backbone.parameters())
        frozen_inputs = [pixels]

        def step() -> torch.Tensor:
            img = F.normalize(backbone.encode_image(backbone.image_stem(pixels)), dim=-1)
            txt = F.normalize(backbone.encode_text(texts), dim=-1)
            return F.cross_entropy(backbone.logit_scale * img @ txt.T, target)

    elif method == "lora":
        from methods.lora import lora_model  # the same LoRA as bench/results.py

        net, params, inputs_fn, image_fn = lora_model(backbone, torch.initial_seed())
        inputs = inputs_fn(examples)
        texts = net.tokenize(task.texts())
        frozen_inputs = [inputs, *(p for p in net.parameters() if not p.requires_grad)]

        def step() -> torch.Tensor:
            img = F.normalize(image_fn(inputs), dim=-1)
            txt = F.normalize(net.encode_text(texts), dim=-1)
            return F.cross_entropy(net.logit_scale * img @ txt.T, target)

    elif method == "clip-adapter":
        from methods.clip_adapter import ClipAdapter

        probe = build_prompts(backbone, "coop", task)
        feats = F.normalize(probe.prepare_images([e.image for e in examples]), dim=-1)
        text = probe.frozen_texts(task.texts())
        head = ClipAdapter(backbone.embed_dim).to(device)
        params = list(head.parameters())
        frozen_inputs = [feats, text]

        def step() -> torch.Tensor:
            return F.cross_entropy(backbone.logit_scale * head(feats) @ text.T, target)

    elif method == "linear-probe":
        probe = build_prompts(backbone, "coop", task)  # for its cached, frozen image embeddings
        feats = probe.prepare_images([e.image for e in examples])
        head = torch.nn.Linear(feats.shape[1], len(names)).to(device)
        params = list(head.parameters())
        frozen_inputs = [feats]

        def step() -> torch.Tensor:
            return F.cross_entropy(head(feats), target)

    else:
        model = build_prompts(backbone, method, task)
        prepared = model.prepare_images([e.image for e in examples])
        model.calibrate_center(prepared) if backbone.centers_images else None
        params = list(model.parameters())
        frozen_inputs = [prepared]

        def step() -> torch.Tensor:
            return task.loss(model, model.embed_prepared(prepared), examples) + (
                model.pop_auxiliary_loss()
            )

    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        step().backward()
        optimizer.step()

    run()  # warm-up: allocator, autograd graph, optimizer state
    trainable = sum(p.numel() for p in params)
    frozen = {t.untyped_storage().data_ptr() for t in [*backbone.parameters(), *backbone.buffers()]}
    frozen |= {t.untyped_storage().data_ptr() for t in frozen_inputs}
    counter = SavedTensorBytes(frozen - {p.untyped_storage().data_ptr() for p in params})
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        run()
    memory = counter.total + 3 * 4 * trainable  # activations + grads + AdamW moments (fp32)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
        memory = torch.cuda.max_memory_allocated() - base
    seconds = (time.perf_counter() - start) / steps
    inference = _inference_ms_per_image(method, backbone, task, examples, steps)
    return {
        "inference_ms_per_image": inference,
        "method": method,
        "trainable": trainable,
        "fraction": trainable / total,
        "ms_per_step": seconds * 1000,
        "memory_mb": memory / 2**20,
        "device": device.type,
    }


@torch.no_grad()
def _inference_ms_per_image(method, backbone, task, examples, repeats: int) -> float | None:
    """Serving cost per image for a prompt preset, text embeddings cached (as a server
    does per domain and version): image tower + prompts + scoring, batch of len(examples)."""
    from mpt_core import build_prompts

    if method in ("full-ft", "linear-probe", "lora", "clip-adapter"):
        return None
    model = build_prompts(backbone, method, task).eval()
    pixels = backbone.preprocess([e.image.convert("RGB") for e in examples])
    text = model.embed_texts(task.texts())  # once per (domain, version)

    def once() -> None:
        stem = backbone.image_stem(pixels)
        prepared = backbone.encode_image(stem) if model.vision_frozen else stem
        model.score(model.embed_prepared(prepared), text).argmax(1)

    once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats / len(examples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="shipped", help="FAMILY[:NAME]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.backbone, args.batch_size, args.steps)))
        return
    rows = []
    for method in args.methods.split(","):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                method,
                "--backbone",
                args.backbone,
                "--batch-size",
                str(args.batch_size),
                "--steps",
                str(args.steps),
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {method}", file=sys.stderr)
    ref = next((r for r in rows if r["method"] == "full-ft"), None)
    print(
        f"\nbackbone {args.backbone}, batch {args.batch_size}, {args.steps} timed steps, "
        f"{rows[0]['device']}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{platform.machine()}\n"
    )
    print(
        "| method | trainable params | % of backbone | ms / step | train memory MB "
        "| time vs full FT | memory vs full FT | inference ms / image |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t = f"{r['ms_per_step'] / ref['ms_per_step']:.3f}" if ref else "-"
        m = f"{r['memory_mb'] / ref['memory_mb']:.4f}" if ref else "-"
        inf = r["inference_ms_per_image"]
        print(
            f"| {r['method']} | {r['trainable']:,} | {100 * r['fraction']:.3f} | "
            f"{r['ms_per_step']:.1f} | {r['memory_mb']:.2f} | {t} | {m} | "
            f"{'-' if inf is None else f'{inf:.2f}'} |"
        )


if __name__ == "__main__":
    main()
