"""Accuracy and cost of every method on the three demo domains, reproducible in one command.

    python bench/results.py            # 3 seeds, the domains' own tuning settings
    python bench/results.py --quick    # smoke test: 1 seed, 1 epoch, 2 shots per class,
                                       # on shipped and on a tiny random hf-clip

On the `shipped` backbone and the demo domains' data (`mpt domain prepare` writes it):
zero-shot, a linear probe on frozen image features, full fine-tuning of both towers, LoRA
on the frozen towers (HF PEFT), a CLIP-Adapter residual head, the presets coop / vpt /
maple / mpt, mpt with its hyper-parameters searched on validation (mpt_core's search
module, trials run one after another), and mpt ablations (one part removed or added).
Every method gets the same data version, splits, seeds, epoch budget and evaluation
code; the epoch kept is the best on validation, the test split is only scored. Frozen
stems are computed once per domain and shared by all methods and seeds. Writes
docs/results.md and one plot per domain.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from step_cost import SavedTensorBytes

from flows.dataset import layout_of, read_rows
from flows.domains import Domain, discover
from mpt_core import (
    Example,
    ImageFeatures,
    TrainConfig,
    build_prompts,
    evaluate,
    fit,
    load_backbone,
)
from mpt_core.backbones.base import Backbone
from mpt_core.data import load_image
from mpt_core.errors import ConfigError
from mpt_core.training.search import SearchSpec, apply_trial, search

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("retail", "manufacturing", "medical")


@dataclass
class Run:
    metric: float
    trainable: int
    seconds: float
    memory_mb: float
    extra: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------ data
def group_key(task, example: Example) -> str:
    """What a linear probe's classes are, from the task's contract: the target value, per
    selector where the value set is declared per question ("question\nanswer")."""
    contract = task.contract
    target = getattr(example, contract.target)
    if contract.value_set is not None and contract.value_set.per:
        return f"{getattr(example, contract.value_set.per)}\n{target}"
    return target


def load_splits(domain: Domain, shots: int | None) -> dict[str, list[Example]]:
    """The domain's examples per split, read by the platform's one table reader (what
    validation approves is what trains); `shots` caps the rows per class and split."""
    task = domain.config.build_task()
    splits: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    seen: dict[tuple, int] = {}
    for row in read_rows(layout_of(domain.config), domain.data_dir):
        example = row.example(domain.data_dir)
        key = (row.split, group_key(task, example))
        seen[key] = seen.get(key, 0) + 1
        if shots is not None and seen[key] > shots:
            continue
        splits[row.split].append(replace(example, image=load_image(example.image)))
    return splits


# ------------------------------------------------------------------ methods
_CACHE: dict[tuple, torch.Tensor] = {}


def cached_prepare(model, domain: Domain, split: str, examples: list[Example]) -> torch.Tensor:
    """`model.prepare_images` of a split, computed once per (backbone, domain, kind): the
    frozen stem (or, without visual prompts, the finished embeddings) does not depend on
    the prompts, so every method and seed reuses it (the trainer would recompute it)."""
    key = (id(model.backbone), domain.name, model.vision_frozen, split)
    if key not in _CACHE:
        _CACHE[key] = model.prepare_images([e.image for e in examples])
    return _CACHE[key]


def _memory(
    loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], frozen: list[torch.Tensor]
) -> float:
    """Activations saved for one backward + grads + AdamW state, in MB (as bench/step_cost)."""
    excluded = {t.untyped_storage().data_ptr() for t in frozen} - {
        p.untyped_storage().data_ptr() for p in params
    }
    counter = SavedTensorBytes(excluded)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        loss_fn().backward()
    for p in params:
        p.grad = None
    return (counter.total + 12 * sum(p.numel() for p in params)) / 2**20


def _prompt_run(backbone, domain, data, cfg, seed, preset, overrides) -> tuple[Run, Any]:
    task = domain.config.build_task()
    model = build_prompts(backbone, preset, task, seed=seed, **overrides)
    prepared = {s: cached_prepare(model, domain, s, data[s]) for s in ("train", "val", "test")}
    model.calibrate_center(prepared["train"])
    batch = data["train"][: cfg.batch_size]
    memory = _memory(
        lambda: (
            task.loss(model, model.embed_prepared(prepared["train"][: cfg.batch_size]), batch)
            + model.pop_auxiliary_loss()
        ),
        list(model.parameters()),
        [*backbone.parameters(), prepared["train"]],
    )
    result = fit(
        model, data["train"], data["val"], cfg, prepared=(prepared["train"], prepared["val"])
    )
    metric = evaluate(model, data["test"], prepared=prepared["test"])[task.primary_metric]
    return Run(metric, model.num_trainable(), result.seconds, memory), result


def prompt_method(preset: str, **overrides: Any):
    def run(backbone: Backbone, domain: Domain, data, cfg: TrainConfig, seed: int) -> Run:
        return _prompt_run(backbone, domain, data, cfg, seed, preset, overrides)[0]

    run.overrides = overrides  # type: ignore[attr-defined]
    return run


SEARCH_BLOCK: dict[str, Any] = {}
"""The `tuning.search` block every domain is searched with; {} = the task's default."""
QUICK_SEARCH = {"trials": 2, "space": {"lr": {"loguniform": [1e-3, 2e-2]}}}


def prompt_search(preset: str, **overrides: Any):
    """`preset` with the domain's hyper-parameters searched on validation through
    mpt_core.training.search (the default space and budget of the task; trials run one
    after another here, in parallel on Ray in `mpt run`). The chosen trial is refitted on
    the train split with early stopping on val, then scored once on test."""

    def run(backbone: Backbone, domain: Domain, data, cfg: TrainConfig, seed: int) -> Run:
        task = domain.config.build_task()
        spec = SearchSpec.from_dict({**SEARCH_BLOCK, "seed": seed}, task.name)
        rows = {id(e): (s, i) for s in ("train", "val") for i, e in enumerate(data[s])}

        def prepare(model, examples):
            tensors = {s: cached_prepare(model, domain, s, data[s]) for s in ("train", "val")}
            return torch.stack([tensors[rows[id(e)][0]][rows[id(e)][1]] for e in examples])

        started = time.perf_counter()
        best, trials = search(
            backbone, task, preset, overrides, cfg, spec, data["train"], data["val"], prepare
        )
        chosen, prompt, config = apply_trial(preset, overrides, cfg, best.params, backbone.slots)
        out, _ = _prompt_run(backbone, domain, data, config, seed, chosen, prompt)
        out.seconds = time.perf_counter() - started
        out.extra = {"trials": len(trials), "chosen": best.params}
        return out

    return run


def zero_shot(backbone, domain, data, cfg, seed) -> Run:
    task = domain.config.build_task()
    model = build_prompts(backbone, "coop", task, seed=seed)
    model.calibrate_center(cached_prepare(model, domain, "train", data["train"]))
    metric = evaluate(
        model, data["test"], prepared=cached_prepare(model, domain, "test", data["test"])
    )
    return Run(metric[task.primary_metric], 0, 0.0, 0.0)


class _TowerModel:
    """What a task needs from a model (embed_texts, score, logit_scale) over a backbone
    whose towers train (full fine-tuning) or carry LoRA adapters."""

    def __init__(self, backbone: Backbone, task, center: torch.Tensor, image_fn) -> None:
        self.backbone, self.task, self.center, self.image_fn = backbone, task, center, image_fn
        self.logit_scale = backbone.logit_scale

    def embed_texts(self, texts):
        return F.normalize(self.backbone.encode_text(self.backbone.tokenize(list(texts))), dim=-1)

    def embed_images(self, inputs) -> ImageFeatures:
        return ImageFeatures(F.normalize(self.image_fn(inputs) - self.center, dim=-1))

    def score(self, images: ImageFeatures, text: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * images.embedding @ text.T


def _tower_eval(model: _TowerModel, inputs: torch.Tensor, examples, task) -> float:
    with torch.no_grad():
        emb = ImageFeatures.cat(
            [model.embed_images(inputs[i : i + 64]) for i in range(0, len(inputs), 64)]
        )
        return task.evaluate(model, emb, examples)[task.primary_metric]


def _train_towers(net, task, data, cfg, seed, lr, inputs_fn, image_fn, params) -> Run:
    """The trainer's loop (same loss, epochs, batch, clipping, epoch chosen on val) for a
    model whose towers carry the trainable parameters."""
    inputs = {s: inputs_fn(data[s]) for s in ("train", "val", "test")}
    with torch.no_grad():
        raw = image_fn(inputs["train"])
        center = raw.mean(0) if net.centers_images else torch.zeros(net.embed_dim)
    model = _TowerModel(net, task, center, image_fn)
    batch = data["train"][: cfg.batch_size]
    memory = _memory(
        lambda: task.loss(model, model.embed_images(inputs["train"][: cfg.batch_size]), batch),
        params,
        [inputs["train"], *(p for p in net.parameters() if not p.requires_grad)],
    )
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    trainable = {k for k, v in net.named_parameters() if v.requires_grad}
    best, best_state, started = None, None, time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(data["train"]), generator=generator).split(cfg.batch_size):
            examples = [data["train"][i] for i in idx.tolist()]
            loss = task.loss(model, model.embed_images(inputs["train"][idx]), examples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
        value = _tower_eval(model, inputs["val"], data["val"], task)
        if best is None or value > best:
            state = net.state_dict()
            best, best_state = value, {k: state[k].clone() for k in trainable}
    seconds = time.perf_counter() - started
    net.load_state_dict(best_state, strict=False)
    metric = _tower_eval(model, inputs["test"], data["test"], task)
    return Run(metric, sum(p.numel() for p in params), seconds, memory)


def full_finetune(backbone, domain, data, cfg, seed) -> Run:
    """Both towers train (same loss, epochs, schedule, early choice on val), lr 1e-5."""
    torch.manual_seed(seed)
    net = copy.deepcopy(backbone)
    for p in net.parameters():
        p.requires_grad_(True)
    return _train_towers(
        net,
        domain.config.build_task(),
        data,
        cfg,
        seed,
        1e-5,
        lambda examples: net.preprocess([e.image for e in examples]),
        lambda pixels: net.encode_image(net.image_stem(pixels)),
        list(net.parameters()),
    )


LORA_RANK = 4
LORA_LR = 1e-3


def lora_model(backbone: Backbone, seed: int):
    """A copy of `backbone` with LoRA (HF PEFT, rank 4, alpha 8) on its frozen towers: the
    text tower's attention query and value projections, and on the image side the CLIP
    ViT's query and value projections, or the CNN's last (1x1 head) convolution, so the
    CNN's frozen blocks below it are computed once, as the prompts' stem is.
    Returns (net, LoRA parameters, inputs_fn(examples), image_fn(inputs))."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(seed)
    net = copy.deepcopy(backbone)
    if net.family == "shipped":
        targets = ["query", "value", "_conv_head"]
        cnn = net.image_model

        def inputs_fn(examples):  # frozen blocks below the head, once
            with torch.no_grad():
                x = net.preprocess([e.image for e in examples])
                x = F.relu6(cnn._bn0(cnn._conv_stem(x)))
                for block in cnn._blocks:
                    x = block(x)
                return x

        def image_fn(x):
            pooled = F.relu6(cnn._bn1(cnn._conv_head(x))).mean(dim=(2, 3))
            return pooled @ net.bridge_weight.T + net.bridge_bias

    else:
        targets = ["q_proj", "v_proj"]

        def inputs_fn(examples):
            return net.preprocess([e.image for e in examples])

        def image_fn(pixels):
            return net.encode_image(net.image_stem(pixels))

    inject_adapter_in_model(
        LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=targets), net
    )
    params = []
    for name, p in net.named_parameters():
        p.requires_grad_("lora_" in name)
        if "lora_" in name:
            params.append(p)
    return net, params, inputs_fn, image_fn


def lora(backbone, domain, data, cfg, seed) -> Run:
    """LoRA on the frozen towers (`lora_model`), lr 1e-3, the trainer's loop and budget."""
    net, params, inputs_fn, image_fn = lora_model(backbone, seed)
    return _train_towers(
        net, domain.config.build_task(), data, cfg, seed, LORA_LR, inputs_fn, image_fn, params
    )


class ClipAdapter(torch.nn.Module):
    """CLIP-Adapter (Gao et al.): f' = ratio * MLP(f) + (1 - ratio) * f on the frozen image
    embedding, MLP D -> D/4 -> D with ReLU; the candidate text embeddings stay frozen."""

    def __init__(self, dim: int, ratio: float = 0.2) -> None:
        super().__init__()
        self.ratio = ratio
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(dim, dim // 4, bias=False),
            torch.nn.ReLU(),
            torch.nn.Linear(dim // 4, dim, bias=False),
            torch.nn.ReLU(),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ratio * self.mlp(f) + (1 - self.ratio) * f, dim=-1)


def clip_adapter(backbone, domain, data, cfg, seed) -> Run:
    """The adapter trained with the trainer's loop on cached frozen embeddings (the task's
    own loss and evaluation code), lr = the domain's, epoch chosen on val."""
    torch.manual_seed(seed)
    task = domain.config.build_task()
    base = build_prompts(backbone, "coop", task, seed=seed)
    feats = {s: cached_prepare(base, domain, s, data[s]) for s in ("train", "val", "test")}
    base.calibrate_center(feats["train"])
    adapter = ClipAdapter(backbone.embed_dim)

    class _Model:
        logit_scale = backbone.logit_scale
        embed_texts = base.frozen_texts  # CLIP-Adapter keeps the text side frozen

        @staticmethod
        def score(images, text):
            return backbone.logit_scale * images.embedding @ text.T

    def embed(split, idx=None):
        x = feats[split] if idx is None else feats[split][idx]
        return ImageFeatures(adapter(F.normalize(x - base.image_center, dim=-1)))

    params = list(adapter.parameters())
    batch = data["train"][: cfg.batch_size]
    memory = _memory(
        lambda: task.loss(_Model, embed("train", slice(0, cfg.batch_size)), batch),
        params,
        [feats["train"]],
    )
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best, best_state, started = None, None, time.perf_counter()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(data["train"]), generator=generator).split(cfg.batch_size):
            loss = task.loss(_Model, embed("train", idx), [data["train"][i] for i in idx.tolist()])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            value = task.evaluate(_Model, embed("val"), data["val"])[task.primary_metric]
        if best is None or value > best:
            best, best_state = value, copy.deepcopy(adapter.state_dict())
    seconds = time.perf_counter() - started
    adapter.load_state_dict(best_state)
    with torch.no_grad():
        metric = task.evaluate(_Model, embed("test"), data["test"])[task.primary_metric]
    return Run(metric, sum(p.numel() for p in params), seconds, memory)


def linear_probe(backbone, domain, data, cfg, seed) -> Run:
    """A linear layer on frozen (centred) image embeddings, scoring the task's candidates:
    classes, (question, answer) pairs restricted to the example's question, or captions."""
    torch.manual_seed(seed)
    task = domain.config.build_task()
    base = build_prompts(backbone, "coop", task, seed=seed)
    feats = {s: cached_prepare(base, domain, s, data[s]) for s in ("train", "val", "test")}
    base.calibrate_center(feats["train"])
    feats = {s: F.normalize(f - base.image_center, dim=-1) for s, f in feats.items()}

    def key(e: Example) -> str:
        return group_key(task, e)

    classes = sorted({key(e) for s in data.values() for e in s})
    index = {c: i for i, c in enumerate(classes)}
    head = torch.nn.Linear(feats["train"].shape[1], len(classes))
    target = torch.tensor([index[key(e)] for e in data["train"]])
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2)

    class _Probe:
        logit_scale = 1.0

        def __init__(self, examples):
            self.examples = examples

    def score(split: str) -> float:
        with torch.no_grad():
            logits = head(feats[split])
        examples = data[split]
        contract = task.contract
        if contract.value_set is None:  # free targets (captions): rank them, as retrieval does
            from mpt_core.tasks.metrics import recall_at_k

            caps = list(dict.fromkeys(key(e) for e in examples))
            cols = torch.tensor([index[c] for c in caps])
            pos = torch.tensor([[key(e) == c for c in caps] for e in examples])
            i2t, t2i = (
                recall_at_k(logits[:, cols], pos, [1]),
                recall_at_k(logits[:, cols].T, pos.T, [1]),
            )
            return (i2t[1] + t2i[1]) / 2
        if contract.value_set.per:  # candidates declared per question: choose among them
            hits = []
            for row, e in zip(logits, examples, strict=True):
                selector = getattr(e, contract.value_set.per)
                best = max(
                    task.declared_values()[selector],
                    key=lambda a, q=selector: (
                        row[index[f"{q}\n{a}"]] if f"{q}\n{a}" in index else -1e9
                    ),
                )
                hits.append(best == getattr(e, contract.target))
            return sum(hits) / len(hits)
        pred = logits.argmax(1)
        return float((pred == torch.tensor([index[key(e)] for e in examples])).float().mean())

    best, best_state, started = None, None, time.perf_counter()
    for _ in range(cfg.epochs * 10):  # a linear head on fixed features needs more, cheap steps
        loss = F.cross_entropy(head(feats["train"]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = score("val")
        if best is None or value > best:
            best, best_state = value, copy.deepcopy(head.state_dict())
    seconds = time.perf_counter() - started
    head.load_state_dict(best_state)
    memory = _memory(
        lambda: F.cross_entropy(head(feats["train"]), target),
        list(head.parameters()),
        [feats["train"]],
    )
    return Run(score("test"), sum(p.numel() for p in head.parameters()), seconds, memory)


METHODS: dict[str, Callable[..., Run]] = {
    "zero-shot": zero_shot,
    "linear-probe": linear_probe,
    "full-ft": full_finetune,
    "lora": lora,
    "clip-adapter": clip_adapter,
    "coop": prompt_method("coop"),
    "vpt": prompt_method("vpt"),
    "maple": prompt_method("maple"),
    "mpt": prompt_method("mpt"),
    "mpt+search": prompt_search("mpt"),
    # ablations of mpt: one part removed or added at a time
    "mpt static prompts only": prompt_method(
        "mpt", image_tokens=0, image_residual=0.0, fusion=False
    ),
    "mpt w/o PFM": prompt_method("mpt", fusion=False),
    "mpt w/o residual (PFM only)": prompt_method("mpt", image_residual=0.0),
    "mpt w/o text adapter": prompt_method("mpt", text_residual=0.0),
    "mpt w/o text prompts": prompt_method("mpt", text_tokens=0),
    "mpt + text anchor (KgCoOp)": prompt_method("mpt", text_anchor=1.0),
}
"""Ablation rows whose settings equal the preset's are skipped (see `_redundant`)."""


# ------------------------------------------------------------------ report
def _fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def domain_table(name: str, metric: str, runs: dict[str, list[Run]]) -> list[str]:
    ref = runs.get("full-ft")
    ref_time = statistics.mean(r.seconds for r in ref) if ref else None
    ref_mem = statistics.mean(r.memory_mb for r in ref) if ref else None
    lines = [
        f"### {name} ({metric}, test split)",
        "",
        f"| method | {metric} | trainable params | train time s | train memory MB "
        "| time / full FT | memory / full FT |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, rs in runs.items():
        t = statistics.mean(r.seconds for r in rs)
        m = statistics.mean(r.memory_mb for r in rs)
        rt = f"{t / ref_time:.3f}" if ref_time else "-"
        rm = f"{m / ref_mem:.4f}" if ref_mem else "-"
        lines.append(
            f"| {method} | {_fmt([r.metric for r in rs])} | {rs[0].trainable:,} "
            f"| {t:.1f} | {m:.2f} | {rt} | {rm} |"
        )
    return [*lines, ""]


def plot(name: str, metric: str, runs: dict[str, list[Run]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, rs in runs.items():
        x = max(rs[0].trainable, 1)
        y = statistics.mean(r.metric for r in rs)
        err = statistics.stdev([r.metric for r in rs]) if len(rs) > 1 else 0.0
        ax.errorbar([x], [y], yerr=[err], fmt="o", capsize=3)
        ax.annotate(method, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (zero-shot drawn at 1)")
    ax.set_ylabel(metric)
    ax.set_title(f"{name}: {metric} vs trainable parameters")
    fig.tight_layout()
    path = out / f"results-{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _redundant(method: str, backbone: Backbone) -> bool:
    """An ablation row that changes nothing on this preset (e.g. "+ PFM" when mpt has it)."""
    from mpt_core.prompts import preset_config

    run = METHODS[method]
    overrides = getattr(run, "overrides", None)
    if not method.startswith("mpt ") or overrides is None:
        return False
    try:
        return preset_config("mpt", backbone.slots, **overrides) == preset_config(
            "mpt", backbone.slots
        )
    except ConfigError:
        return True  # not buildable on this backbone


def run_domain(
    spec: str, domain_name: str, args, seeds: int, shots: int | None, epochs: int | None
) -> list[str]:
    """Every method x seed on one domain; the domain's markdown section (and its plot)."""
    torch.set_num_threads(args.threads)
    if args.quick:
        SEARCH_BLOCK.update(QUICK_SEARCH)
    family, _, name = spec.partition(":")
    backbone = load_backbone(family, name or None)
    found = discover(args.domains_dir, [domain_name])
    if found.errors:
        raise SystemExit(f"domains not usable: {found.errors}")
    domain = found.domains[domain_name]
    suffix = "" if spec == "shipped" else "-" + spec.replace(":", "-").replace("/", "-")
    data = load_splits(domain, shots)
    cfg = TrainConfig(**{**domain.config.train_config(), "progress": False})
    cfg.epochs = epochs or cfg.epochs
    metric = domain.config.build_task().primary_metric
    runs: dict[str, list[Run]] = {}
    for method in args.methods.split(","):
        if _redundant(method, backbone):
            continue
        for seed in range(seeds):
            cfg.seed = seed
            run = METHODS[method](backbone, domain, data, cfg, seed)
            runs.setdefault(method, []).append(run)
            print(
                f"{spec:12s} {domain_name:13s} {method:30s} seed {seed}: {metric} "
                f"{run.metric:.3f} ({run.seconds:.1f}s) {run.extra or ''}",
                flush=True,
            )
    table = domain_table(domain_name, metric, runs)
    print("\n".join(table), flush=True)
    plot_name = f"{domain_name}{suffix}"
    args.out.mkdir(parents=True, exist_ok=True)
    plot(plot_name, metric, runs, args.out)
    return [*table, *_chosen(runs), f"![{plot_name}](results-{plot_name}.png)", ""]


def run_backbone(spec: str, args, seeds: int, shots: int | None, epochs: int | None) -> list[str]:
    """Every demo domain on one backbone; with --jobs > 1, domains run in parallel processes
    (each single-threaded, so every method of a domain is timed under the same load)."""
    family, _, name = spec.partition(":")
    doc = [f"## Backbone {load_backbone(family, name or None).identity}", ""]
    found = discover(args.domains_dir, args.domains.split(","))
    names = [n for n in args.domains.split(",") if n in found.domains]  # largest first
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = [pool.submit(run_domain, spec, n, args, seeds, shots, epochs) for n in names]
            sections = [f.result() for f in futures]
    else:
        sections = [run_domain(spec, n, args, seeds, shots, epochs) for n in names]
    for section in sections:
        doc += section
    return doc


def _chosen(runs: dict[str, list[Run]]) -> list[str]:
    searched = [r for m, rs in runs.items() if m.endswith("+search") for r in rs]
    if not searched:
        return []
    picks = "; ".join(
        f"seed {i}: {r.extra.get('chosen') or 'the base config'}" for i, r in enumerate(searched)
    )
    return [
        f"mpt+search, the trial chosen on validation "
        f"({searched[0].extra.get('trials')} trials): {picks}.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 1 epoch, 2 shots per class, on shipped and a tiny random hf-clip",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="default: each domain's tuning.epochs")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--backbones", help="FAMILY[:NAME],... (default: shipped; --quick: shipped,hf-clip:tiny)"
    )
    parser.add_argument("--domains-dir", type=Path, default=REPO / "domains")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--jobs", type=int, default=1, help="domains run in parallel processes (1 thread each)"
    )
    parser.add_argument("--threads", type=int, help="torch threads per process (default: torch's)")
    args = parser.parse_args()
    args.threads = args.threads or (1 if args.quick or args.jobs > 1 else torch.get_num_threads())
    torch.set_num_threads(args.threads)
    seeds, shots = (1, 2) if args.quick else (args.seeds, None)
    epochs = 1 if args.quick else args.epochs
    backbones = (args.backbones or ("shipped,hf-clip:tiny" if args.quick else "shipped")).split(",")
    started = time.perf_counter()
    doc = [
        "# Results: every method on the three demo domains",
        "",
        f"Command: `python bench/results.py{' --quick' if args.quick else ''}"
        f"{f' --jobs {args.jobs}' if args.jobs > 1 else ''}` "
        f"({seeds} seed(s){', 2 shots per class, 1 epoch' if args.quick else ''}). Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {args.jobs} domain(s) at a time, "
        f"{args.threads} torch thread(s) each, "
        f"torch {torch.__version__}. Test metric mean ± std over seeds; everything chosen "
        "on validation.",
        "",
    ]
    for spec in backbones:
        doc += run_backbone(spec, args, seeds, shots, epochs)
    doc.append(f"Total run time: {time.perf_counter() - started:.0f} s.")
    (args.out / "results.md").write_text("\n".join(doc) + "\n")
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
