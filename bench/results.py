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
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from methods.base import Run, mean_std
from methods.data import DOMAINS, load_splits
from methods.registry import methods, redundant

from flows.domains import discover
from mpt_core import TrainConfig, load_backbone

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ report
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
            f"| {method} | {mean_std([r.metric for r in rs])} | {rs[0].trainable:,} "
            f"| {t:.1f} | {m:.2f} | {rt} | {rm} |"
        )
    return [*lines, ""]


def noise_line(metric: str, runs: dict[str, list[Run]], n_test: int) -> list[str]:
    """Which methods the test split cannot tell apart from the best: those whose mean is
    within one binomial standard error, sqrt(p (1 - p) / n), of the best mean p."""
    if not runs or n_test < 1:
        return []
    means = {method: statistics.mean(r.metric for r in rs) for method, rs in runs.items()}
    best = max(means.values())
    error = math.sqrt(best * (1 - best) / n_test)
    close = [m for m, v in means.items() if best - v <= error]
    return [
        f"Noise: {n_test} test examples; one binomial standard error at the best mean "
        f"{metric} ({best:.3f}) is {error:.3f}. Within one standard error of the best: "
        f"{', '.join(close)}.",
        "",
    ]


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


def run_domain(
    spec: str, domain_name: str, args, seeds: int, shots: int | None, epochs: int | None
) -> list[str]:
    """Every method x seed on one domain; the domain's markdown section (and its plot)."""
    torch.set_num_threads(args.threads)
    compared = methods(args.quick)
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
        if redundant(compared[method], backbone):
            continue
        for seed in range(seeds):
            cfg.seed = seed
            run = compared[method](backbone, domain, data, cfg, seed)
            runs.setdefault(method, []).append(run)
            print(
                f"{spec:12s} {domain_name:13s} {method:30s} seed {seed}: {metric} "
                f"{run.metric:.3f} ({run.seconds:.1f}s) {run.extra or ''}",
                flush=True,
            )
    table = domain_table(domain_name, metric, runs) + noise_line(metric, runs, len(data["test"]))
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
    parser.add_argument("--methods", default=",".join(methods()))
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
    unknown = [m for m in args.methods.split(",") if m not in methods()]
    if unknown:
        parser.error(
            f"--methods: unknown {', '.join(map(repr, unknown))}; known: {', '.join(methods())}"
        )
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
