"""How the platform's costs grow: many domains, many images, a full-size backbone.

    python bench/scale.py domains [--counts 1 10 100]   # N tiny domains: mpt run, no-change run
    python bench/scale.py images [--sizes 2000 20000]   # a large domain: RSS, images/s, +1 %
    python bench/scale.py backbone [--images 300]       # hf-clip, ViT-B/16 shapes, random weights
    python bench/scale.py demo [--baseline d87a33b]     # mpt run --force of the demo domains

Each part builds what it measures in a fresh temp home and git repo (synthetic images of
seeded noise, written as PNG files), runs `mpt run` as a user does (a new process, wall
clock) and prints a markdown table. Torch runs one thread per process (OMP_NUM_THREADS=1);
the machine's CPUs are in the header line. Nothing here is a test: docs/benchmarks.md
keeps the figures and what they mean.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MPT = [sys.executable, "-m", "cli"]
LABELS = ("boot", "shirt")
SPLITS = ("train", "val", "test")
MIB = 2**20


def write_png(path: Path, seed: int, side: int = 32) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    noise = random.Random(seed).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), noise).save(path)


def write_domain(
    domains: Path,
    name: str,
    counts: dict[str, int],
    *,
    epochs: int,
    seed: int,
    backbone: str = "family: shipped",
    start: int = 0,
    batch_size: int = 8,
) -> Path:
    """A classification domain of 2 labels with counts[split] images per split (numbered
    from `start`, so a later call appends), tuned for `epochs` with no search."""
    folder = domains / name
    table = folder / "data" / "metadata.csv"
    rows = [] if start else ["image,split,label"]
    for split, n in counts.items():
        for i in range(start, start + n):
            rel = f"images/{split}/{i}.png"
            write_png(folder / "data" / rel, seed=seed * 10_000_019 + i * 3 + SPLITS.index(split))
            rows.append(f"{rel},{split},{LABELS[i % 2]}")
    with table.open("a") as f:
        f.write("\n".join(rows) + "\n")
    (folder / "domain.yaml").write_text(
        f"task: classification\nlabels: [{', '.join(LABELS)}]\n"
        f"backbone: {{{backbone}}}\n"
        f"tuning: {{epochs: {epochs}, batch_size: {batch_size}}}\n"
        "validation: {min_per_class: {train: 1, val: 1, test: 1}}\n"
    )
    return folder


def fresh_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root / "domains"


def env_for(home: Path, domains: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MPT_HOME": str(home),
        "MPT_DOMAINS_DIR": str(domains),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }


class PeakRss:
    """Samples the peak RSS of one process (the driver) every 0.2 s while it runs."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while True:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.2)


def mpt_run(env: dict[str, str], cwd: Path, *extra: str) -> tuple[float, list[dict], int]:
    """Wall time of `mpt run --json`, its results, and the driver's peak RSS in MiB."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*MPT, "run", "--json", *extra],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rss = PeakRss(process.pid)
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode not in (0, 1):
        raise SystemExit(f"mpt run failed ({process.returncode}):\n{err[-3000:]}")
    try:
        results = json.loads(out)
    except json.JSONDecodeError:
        raise SystemExit(f"mpt run printed no JSON:\n{out[-2000:]}\n{err[-2000:]}") from None
    failed = [r for r in results if r["status"] not in ("registered", "skipped")]
    if failed:
        raise SystemExit(f"{len(failed)} domain(s) failed, e.g. {failed[0]['message'][:500]}")
    return seconds, results, rss.peak // MIB


# ---------------------------------------------------------------------- N tiny domains
def part_domains(counts: list[int]) -> None:
    print("N tiny domains (30 images: 10 per split, 2 epochs, no search, shipped backbone)\n")
    print("| domains | `mpt run` s | s per domain beyond the first | no-change run s |")
    print("| ---: | ---: | ---: | ---: |")
    first = None
    for n in counts:
        root = Path(tempfile.mkdtemp(prefix=f"mpt-scale-{n}-"))
        domains = fresh_repo(root / "repo")
        for i in range(n):
            write_domain(domains, f"d{i:03d}", dict.fromkeys(SPLITS, 10), epochs=2, seed=i)
        env = env_for(root / "home", domains)
        seconds, results, _ = mpt_run(env, root / "repo")
        assert sum(r["status"] == "registered" for r in results) == n, results
        again, results, _ = mpt_run(env, root / "repo")
        assert all(r["status"] == "skipped" for r in results), results
        first = first if first is not None else seconds
        per = "-" if n == 1 else f"{(seconds - first) / (n - 1):.2f}"
        print(f"| {n} | {seconds:.1f} | {per} | {again:.1f} |", flush=True)


# ---------------------------------------------------------------------- a large domain
def bare_tower_rate(images: int = 256) -> float:
    """Images/s of the bare frozen tower in this process (decoded images, chunks of 16,
    one thread): what the embedding pass is compared with."""
    import torch

    from mpt_core import load_backbone
    from mpt_core.featurestore import CPU_CHUNK

    torch.set_num_threads(1)
    backbone = load_backbone("shipped")
    from PIL import Image

    batch = [
        Image.frombytes("RGB", (32, 32), random.Random(i).randbytes(32 * 32 * 3))
        for i in range(images)
    ]
    with torch.no_grad():
        backbone.image_stem(backbone.preprocess(batch[:CPU_CHUNK]))  # warm up
        started = time.perf_counter()
        for i in range(0, images, CPU_CHUNK):
            backbone.image_stem(backbone.preprocess(batch[i : i + CPU_CHUNK]))
    return images / (time.perf_counter() - started)


def part_images(sizes: list[int]) -> None:
    bare = bare_tower_rate()
    workers = os.cpu_count() or 1
    print(
        f"One large domain (10 % train, 10 % val, 80 % test; 2 epochs, batch 32): "
        f"bare tower {bare:.1f} images/s per process, {workers} workers\n"
    )
    print(
        "| images | run | wall s | embedded | embedding images/s | x bare tower "
        "| driver peak RSS MiB | worker peak RSS MiB |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for total in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"mpt-images-{total}-"))
        domains = fresh_repo(root / "repo")
        counts = {"train": total // 10, "val": total // 10, "test": total - total // 5}
        write_domain(domains, "big", counts, epochs=2, seed=1, batch_size=32)
        env = env_for(root / "home", domains)
        first, results, driver = mpt_run(env, root / "repo")
        _row(total, "first", first, results[0], driver, bare, workers)
        more = {split: max(1, n // 100) for split, n in counts.items()}
        write_domain(
            domains, "big", more, epochs=2, seed=1, batch_size=32, start=max(counts.values())
        )
        again, results, driver = mpt_run(env, root / "repo")
        _row(total, f"+1 % ({sum(more.values())} images)", again, results[0], driver, bare,
             workers, first)  # fmt: skip


def _row(total, label, seconds, result, driver, bare, workers, first=None) -> None:
    features = result.get("features") or {}
    embedded, embed_s = features.get("embedded", 0), features.get("embed_seconds", 0) or 0
    rate = embedded / embed_s if embed_s else 0.0
    ratio = f"{rate / (bare * workers):.2f}" if embedded >= 100 else "-"
    wall = f"{seconds:.0f}" + (f" ({seconds / first:.2f}x)" if first else "")
    print(
        f"| {total} | {label} | {wall} | {embedded} | {rate:.1f} | {ratio} | {driver} "
        f"| {features.get('peak_rss_mb', '-')} |",
        flush=True,
    )


# ---------------------------------------------------------------------- a full-size backbone
def part_backbone(images: int) -> None:
    """hf-clip at ViT-B/16 shapes, built in code with random weights (accuracy means
    nothing here): trainable share, step time and memory against full fine-tuning, stored
    bytes per image, serving memory with 10 domains against 1."""
    import torch

    torch.set_num_threads(1)
    from bench_backbone import measure  # bench/bench_backbone.py

    for line in measure(images):
        print(line, flush=True)
    serving = subprocess.run(  # a fresh process: the steps above leave their memory behind
        [sys.executable, str(Path(__file__).with_name("bench_backbone.py"))],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    print(serving.stdout, end="")


# ---------------------------------------------------------------------- the demo's --force
def part_demo(baseline: str) -> None:
    """`mpt run --force` of the three demo domains with their features stored (a run
    before filled the store), against the same command of the code at `baseline` (before
    the feature store; a git worktree of that revision, the same environment), measured
    side by side in one run: the same data, the same trial budget."""
    source = REPO / "domains"
    if not (source / "retail" / "data" / "metadata.csv").is_file():
        raise SystemExit(
            "prepare the demo domains first: mpt domain prepare retail manufacturing medical"
        )
    base = Path(tempfile.mkdtemp(prefix="mpt-baseline-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(base / "code"), baseline],
        check=True,
    )
    try:
        rows = []
        for label, code, module in (
            ("this code", REPO, "cli"),
            (f"baseline {baseline}", base / "code", "flows.cli"),
        ):
            root = Path(tempfile.mkdtemp(prefix="mpt-demo-"))
            fresh_repo(root / "repo")
            shutil.copytree(
                source, root / "repo" / "domains", ignore=shutil.ignore_patterns("data.dvc")
            )
            env = {**env_for(root / "home", root / "repo" / "domains"), "PYTHONPATH": str(code)}
            command = [sys.executable, "-m", module, "run", "--json"]
            _timed(command, env, root / "repo")  # fills the store (and registers v1)
            seconds = _timed([*command, "--force"], env, root / "repo")
            rows.append((label, seconds))
            print(f"| {label} | {seconds:.0f} |", flush=True)
        print(f"\nratio: {rows[0][1] / rows[1][1]:.2f}x")
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base / "code")],
            check=False,
        )


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    sub.add_parser("domains").add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    sub.add_parser("images").add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    sub.add_parser("backbone").add_argument("--images", type=int, default=300)
    sub.add_parser("demo").add_argument("--baseline", default="d87a33b")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; torch threads per process: 1 (OMP_NUM_THREADS=1)\n")
    if args.part == "domains":
        part_domains(args.counts)
    elif args.part == "images":
        part_images(args.sizes)
    elif args.part == "demo":
        print("| `mpt run --force`, 3 demo domains, 3-trial searches | wall s |")
        print("| --- | ---: |")
        part_demo(args.baseline)
    else:
        part_backbone(args.images)


if __name__ == "__main__":
    main()
