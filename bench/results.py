"""Accuracy and cost of every method on the three demo domains, reproducible in one command.

    python bench/results.py            # 3 seeds, the domains' own tuning settings
    python bench/results.py --quick    # smoke test: 1 seed, 1 epoch, 2 shots per class

On the `shipped` backbone and the demo domains' data (`mpt domain prepare` writes it):
zero-shot, a linear probe on frozen image features, full fine-tuning of both towers, the
presets coop / vpt / maple / mpt, and mpt ablations (no fusion gate, fusion without
visual prompts, prompt depth 1). Every method gets the same data version, splits, seeds,
epoch budget and evaluation code; the epoch kept is the best on validation, the test
split is only scored. Writes docs/results.md and one plot per domain.
"""

from __future__ import annotations

import argparse
import copy
import csv
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from step_cost import SavedTensorBytes

from flows.domains import Domain, discover
from mpt_core import Example, TrainConfig, build_prompts, evaluate, fit, load_backbone
from mpt_core.backbones.base import Backbone
from mpt_core.data import load_image

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
def load_splits(domain: Domain, shots: int | None) -> dict[str, list[Example]]:
    cols = domain.config.data
    with open(domain.metadata_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    splits: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    seen: dict[tuple, int] = {}
    for r in rows:
        key = (
            r[cols.split_column],
            r.get(cols.label_column) or r.get(cols.answer_column) or r.get(cols.caption_column),
        )
        seen[key] = seen.get(key, 0) + 1
        if shots is not None and seen[key] > shots:
            continue
        splits[r[cols.split_column]].append(
            Example(
                load_image(domain.data_dir / r[cols.image_column]),
                label=r.get(cols.label_column),
                caption=r.get(cols.caption_column),
                question=r.get(cols.question_column),
                answer=r.get(cols.answer_column),
            )
        )
    return splits


# ------------------------------------------------------------------ methods
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


def prompt_method(preset: str, **overrides: Any):
    def run(backbone: Backbone, domain: Domain, data, cfg: TrainConfig, seed: int) -> Run:
        task = domain.config.build_task()
        model = build_prompts(backbone, preset, task, seed=seed, **overrides)
        prepared = model.prepare_images([e.image for e in data["train"][: cfg.batch_size]])
        model.calibrate_center(model.prepare_images([e.image for e in data["train"]]))
        frozen = [*backbone.parameters(), prepared]
        memory = _memory(
            lambda: task.loss(
                model, model.embed_prepared(prepared), data["train"][: cfg.batch_size]
            ),
            list(model.parameters()),
            frozen,
        )
        result = fit(model, data["train"], data["val"], cfg)
        metric = evaluate(model, data["test"])[task.primary_metric]
        return Run(metric, model.num_trainable(), result.seconds, memory)

    return run


def zero_shot(backbone, domain, data, cfg, seed) -> Run:
    task = domain.config.build_task()
    model = build_prompts(backbone, "coop", task, seed=seed)
    model.calibrate_center(model.prepare_images([e.image for e in data["train"]]))
    return Run(evaluate(model, data["test"])[task.primary_metric], 0, 0.0, 0.0)


class _FullModel:
    """What a task needs from a model (embed_texts, logit_scale), with a trainable backbone."""

    def __init__(self, backbone: Backbone, task, center: torch.Tensor) -> None:
        self.backbone, self.task, self.center = backbone, task, center
        self.logit_scale = backbone.logit_scale

    def embed_texts(self, texts):
        return F.normalize(self.backbone.encode_text(self.backbone.tokenize(list(texts))), dim=-1)

    def embed_images(self, pixels):
        raw = self.backbone.encode_image(self.backbone.image_stem(pixels))
        return F.normalize(raw - self.center, dim=-1)


def _full_eval(model: _FullModel, examples, task) -> float:
    with torch.no_grad():
        pixels = model.backbone.preprocess([e.image for e in examples])
        emb = torch.cat([model.embed_images(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
        return task.evaluate(model, emb, examples)[task.primary_metric]


def full_finetune(backbone, domain, data, cfg, seed) -> Run:
    """Both towers train (same loss, epochs, schedule, early choice on val)."""
    torch.manual_seed(seed)
    task = domain.config.build_task()
    net = copy.deepcopy(backbone)
    for p in net.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        pixels = net.preprocess([e.image for e in data["train"]])
        center = (
            net.encode_image(net.image_stem(pixels)).mean(0)
            if net.centers_images
            else torch.zeros(net.embed_dim)
        )
    model = _FullModel(net, task, center)
    params = list(net.parameters())
    memory = _memory(
        lambda: task.loss(
            model, model.embed_images(pixels[: cfg.batch_size]), data["train"][: cfg.batch_size]
        ),
        params,
        [pixels],
    )
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=cfg.weight_decay)
    best, best_state, started = None, None, time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(pixels), generator=generator).split(cfg.batch_size):
            batch = [data["train"][i] for i in idx.tolist()]
            loss = task.loss(model, model.embed_images(pixels[idx]), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
        value = _full_eval(model, data["val"], task)
        if best is None or value > best:
            best, best_state = value, copy.deepcopy(net.state_dict())
    seconds = time.perf_counter() - started
    net.load_state_dict(best_state)
    return Run(
        _full_eval(model, data["test"], task), sum(p.numel() for p in params), seconds, memory
    )


def linear_probe(backbone, domain, data, cfg, seed) -> Run:
    """A linear layer on frozen (centred) image embeddings, scoring the task's candidates:
    classes, (question, answer) pairs restricted to the example's question, or captions."""
    torch.manual_seed(seed)
    task = domain.config.build_task()
    base = build_prompts(backbone, "coop", task, seed=seed)
    feats = {s: base.prepare_images([e.image for e in data[s]]) for s in ("train", "val", "test")}
    base.calibrate_center(feats["train"])
    feats = {s: F.normalize(f - base.image_center, dim=-1) for s, f in feats.items()}
    key = {
        "classification": lambda e: e.label,
        "vqa": lambda e: f"{e.question}\n{e.answer}",
        "retrieval": lambda e: e.caption,
    }[task.name]
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
        if task.name == "retrieval":
            from mpt_core.tasks.metrics import recall_at_k

            caps = list(dict.fromkeys(e.caption for e in examples))
            cols = torch.tensor([index[c] for c in caps])
            pos = torch.tensor([[e.caption == c for c in caps] for e in examples])
            i2t, t2i = (
                recall_at_k(logits[:, cols], pos, [1]),
                recall_at_k(logits[:, cols].T, pos.T, [1]),
            )
            return (i2t[1] + t2i[1]) / 2
        if task.name == "vqa":
            hits = []
            for row, e in zip(logits, examples, strict=True):
                cands = task.candidates(e.question)
                best = max(
                    cands,
                    key=lambda a: (
                        row[index[f"{e.question}\n{a}"]] if f"{e.question}\n{a}" in index else -1e9
                    ),
                )
                hits.append(best == e.answer)
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
    "coop": prompt_method("coop"),
    "vpt": prompt_method("vpt"),
    "maple": prompt_method("maple"),
    "mpt": prompt_method("mpt"),
    "mpt no gate": prompt_method("mpt", fusion_gate=False),
    "mpt fusion w/o visual prompts": prompt_method("mpt", vision_learnable=False),
    "mpt depth 1": prompt_method("mpt", text_depth=1, vision_depth=1),
}


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 2 shots per class")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="default: each domain's tuning.epochs")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--domains-dir", type=Path, default=REPO / "domains")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    seeds, shots = (1, 2) if args.quick else (args.seeds, None)
    epochs = 1 if args.quick else args.epochs
    backbone = load_backbone("shipped")
    found = discover(args.domains_dir, args.domains.split(","))
    if found.errors:
        raise SystemExit(f"domains not usable: {found.errors}")
    started = time.perf_counter()
    doc = [
        "# Results: every method on the three demo domains",
        "",
        f"Command: `python bench/results.py{' --quick' if args.quick else ''}` "
        f"({seeds} seed(s){', 2 shots per class, 1 epoch' if args.quick else ''}). Machine: "
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, "
        f"backbone {backbone.identity}.",
        "",
    ]
    for name, domain in found.domains.items():
        data = load_splits(domain, shots)
        t = domain.config.tuning
        cfg = TrainConfig(
            epochs=epochs or t.epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            weight_decay=t.weight_decay,
            warmup_ratio=t.warmup_ratio,
            patience=t.patience,
            progress=False,
        )
        metric = domain.config.build_task().primary_metric
        runs: dict[str, list[Run]] = {}
        for method in args.methods.split(","):
            for seed in range(seeds):
                cfg.seed = seed
                run = METHODS[method](backbone, domain, data, cfg, seed)
                runs.setdefault(method, []).append(run)
                print(
                    f"{name:13s} {method:30s} seed {seed}: {metric} {run.metric:.3f} "
                    f"({run.seconds:.1f}s)",
                    flush=True,
                )
        table = domain_table(name, metric, runs)
        print("\n".join(table))
        doc += [*table, f"![{name}](results-{name}.png)", ""]
        args.out.mkdir(parents=True, exist_ok=True)
        plot(name, metric, runs, args.out)
    doc.append(f"Total run time: {time.perf_counter() - started:.0f} s.")
    (args.out / "results.md").write_text("\n".join(doc) + "\n")
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
