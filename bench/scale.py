"""How the platform's costs grow: many domains, many images, a full-size backbone.

    python bench/scale.py domains [--counts 1 10 100]      # N tiny domains: mpt run, no-change run
    python bench/scale.py images [--images 20000]          # one large domain: RSS, images/s, +1 %
    python bench/scale.py backbone [--images 300]          # hf-clip at ViT-B/16 shapes (random weights)

Each part builds what it measures in a fresh temp home and repo (synthetic images of
seeded noise, written as PNG files), runs `mpt` as a user does (a new process, wall clock),
and prints a markdown table. Torch runs one thread per process (OMP_NUM_THREADS=1), the
machine's figure is in the header line. Nothing here is a test: see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MPT = [sys.executable, "-m", "cli"]
LABELS = ("boot", "shirt")
SPLITS = ("train", "val", "test")


def write_png(path: Path, seed: int, side: int = 32) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    noise = random.Random(seed).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), noise).save(path)


def make_domain(
    domains: Path, name: str, per_split: int, epochs: int, seed: int, backbone: str = "default"
) -> Path:
    """A classification domain of 2 labels with `per_split` images per split (a tiny one:
    per_split=10 is 30 images), tuned for `epochs` with no search."""
    folder = domains / name
    rows = ["image,split,label"]
    for split in SPLITS:
        for i in range(per_split):
            label = LABELS[i % 2]
            rel = f"images/{split}/{i}.png"
            write_png(folder / "data" / rel, seed * 1_000_003 + hash((split, i)) % 1_000_003)
            rows.append(f"{rel},{split},{label}")
    (folder / "data" / "metadata.csv").write_text("\n".join(rows) + "\n")
    (folder / "domain.yaml").write_text(
        f"task: classification\nlabels: [{', '.join(LABELS)}]\n"
        f"backbone: {{family: shipped, name: {backbone}}}\n"
        f"tuning: {{epochs: {epochs}, batch_size: 8}}\n"
        "validation: {min_per_class: {train: 1, val: 1, test: 1}}\n"
    )
    return folder


def fresh_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".dvc").mkdir(exist_ok=True)
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


def mpt_run(env: dict[str, str], cwd: Path, *extra: str) -> tuple[float, list[dict], int]:
    """Wall time of `mpt run --json`, its results, and the peak RSS (MiB) of its process
    tree's largest process (the driver; Ray workers are measured by the run itself)."""
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(
        [*MPT, "run", "--json", *extra], env=env, cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) // 1024
    if out.returncode not in (0, 1):
        raise SystemExit(f"mpt run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    try:
        results = json.loads(out.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"mpt run printed no JSON:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    failed = [r for r in results if r["status"] not in ("registered", "skipped")]
    if failed:
        raise SystemExit(f"{len(failed)} domain(s) failed, e.g. {failed[0]['message'][:500]}")
    return seconds, results, peak


def part_domains(counts: list[int]) -> None:
    print("| domains | `mpt run` s | s per domain beyond the first | no-change run s |")
    print("| ---: | ---: | ---: | ---: |")
    first = None
    for n in counts:
        root = Path(tempfile.mkdtemp(prefix=f"mpt-scale-{n}-"))
        domains = fresh_repo(root / "repo")
        for i in range(n):
            make_domain(domains, f"d{i:03d}", per_split=10, epochs=2, seed=i)
        env = env_for(root / "home", domains)
        seconds, results, _ = mpt_run(env, root / "repo")
        assert sum(r["status"] == "registered" for r in results) == n, results
        again, results, _ = mpt_run(env, root / "repo")
        assert all(r["status"] == "skipped" for r in results), results
        if first is None:
            first = seconds
        per = "-" if n == 1 else f"{(seconds - first) / (n - 1):.2f}"
        print(f"| {n} | {seconds:.1f} | {per} | {again:.1f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    domains = sub.add_parser("domains")
    domains.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; torch threads per process: 1 (OMP_NUM_THREADS=1)\n")
    if args.part == "domains":
        part_domains(args.counts)


if __name__ == "__main__":
    main()
