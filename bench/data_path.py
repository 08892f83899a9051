"""Driver memory of the data path: does it stay flat in the number of images?

    python bench/data_path.py                 # 1,000 and 5,000 images of ~50 kB
    python bench/data_path.py --sizes 500     # quicker

For each size, a synthetic classification domain (noise PNGs of about 50 kB, so they do not
compress) is written into a temp git repo, then each step runs in a fresh process that
reports its peak resident memory above what its imports took:

- driver, as the platform does it: validate (GX + every image decoded once), track with
  DVC, push to a local remote, read the rows, build the tuning job, pickle it (what Ray
  sends); the job names the data version, no image travels;
- driver, the old way (for comparison, side by side): every image's bytes read into the
  job and the job pickled, as `build_job` did before the workers read the DVC remote;
- worker: materialise the data version from the remote into its node cache, read the rows
  and turn them into examples (images stay paths; batches are decoded when trained on).

Prints a table with the torch thread count, and a linear estimate for 100,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDE = 128  # 128 x 128 x 3 noise: ~49 kB per PNG


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_domain(root: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    subprocess.run(["git", "init", "-q", str(root)], check=True)
    folder = root / "domains" / "synthetic"
    images = folder / "data" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["image,split,label"]
    for i in range(n):
        split = ("train", "val", "test")[i % 3]
        label = ("cat", "dog")[(i // 3) % 2]
        noise = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(noise).save(images / f"{i:06d}.png")
        rows.append(f"images/{i:06d}.png,{split},{label}")
    (folder / "data" / "metadata.csv").write_text("\n".join(rows) + "\n")
    (folder / "domain.yaml").write_text(
        "task: classification\nlabels: [cat, dog]\nbackbone: {family: shipped, name: tiny}\n"
    )
    return folder


def step_driver(root: Path) -> dict:
    from flows.datacache import RemoteLocation
    from flows.domains import get_domain
    from flows.jobs import BackboneRef
    from flows.pipeline import build_job, prepare
    from flows.versioning import DataVersioner, RemoteSpec
    from registry import open_registry

    registry = open_registry()
    base = peak_mb()
    started = time.perf_counter()
    domain = get_domain(root / "domains", "synthetic")
    versioner = DataVersioner(root, RemoteSpec(str(root / "remote")))
    prepared = prepare(domain, versioner, registry, root / "reports")
    ref = BackboneRef("shipped", "tiny", (), "0" * 64)
    job = build_job(prepared, ref, registry, RemoteLocation(str(root / "remote")), None)
    sent = len(pickle.dumps(job))
    return {
        "peak_mb": peak_mb() - base,
        "seconds": time.perf_counter() - started,
        "job_bytes": sent,
        "md5": prepared.data.md5,
    }


def step_old(root: Path) -> dict:
    """What the driver held before: the job carried every image's bytes."""
    from flows.dataset import layout_of, read_rows
    from flows.domains import get_domain

    base = peak_mb()
    started = time.perf_counter()
    domain = get_domain(root / "domains", "synthetic")
    rows = read_rows(layout_of(domain.config), domain.data_dir)
    images = {r.image: (domain.data_dir / r.image).read_bytes() for r in rows}
    sent = len(pickle.dumps({"rows": rows, "images": images}))
    return {
        "peak_mb": peak_mb() - base,
        "seconds": time.perf_counter() - started,
        "job_bytes": sent,
    }


def step_worker(root: Path, md5: str) -> dict:
    from flows.datacache import DataCache, RemoteLocation
    from flows.dataset import layout_of, read_rows, split_examples
    from flows.domains import get_domain

    config = get_domain(root / "domains", "synthetic").config
    base = peak_mb()
    started = time.perf_counter()
    folder = DataCache(root / "node-cache").materialise(RemoteLocation(str(root / "remote")), md5)
    examples = split_examples(read_rows(layout_of(config), folder), folder)
    return {
        "peak_mb": peak_mb() - base,
        "seconds": time.perf_counter() - started,
        "examples": sum(len(v) for v in examples.values()),
    }


def run_step(step: str, root: Path, *extra: str) -> dict:
    env = {**os.environ, "MPT_HOME": str(root / "home"), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, __file__, "--step", step, "--root", str(root), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--step", choices=["driver", "old", "worker"])
    parser.add_argument("--root")
    parser.add_argument("--md5")
    args = parser.parse_args(argv)
    if args.step:
        import torch

        torch.set_num_threads(1)
        root = Path(args.root)
        step = {"driver": step_driver, "old": step_old}.get(args.step)
        result = step(root) if step else step_worker(root, args.md5)
        print(json.dumps(result))
        return
    import torch

    print(
        f"torch threads: 1 per step process (machine: {os.cpu_count()} CPUs, torch "
        f"{torch.__version__})"
    )
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="mpt-data-path-") as tmp:
            root = Path(tmp)
            make_domain(root, n)
            size_mb = sum(p.stat().st_size for p in root.rglob("*.png")) / 2**20
            driver = run_step("driver", root)
            old = run_step("old", root)
            worker = run_step("worker", root, "--md5", driver["md5"])
            rows.append((n, size_mb, driver, old, worker))
    print()
    print(
        "| images | image MiB | driver peak MiB (now) | driver peak MiB (images in the job) "
        "| ratio | job sent (now) | job sent (before) | worker peak MiB | driver s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, size_mb, d, o, w in rows:
        print(
            f"| {n} | {size_mb:.0f} | {d['peak_mb']:.0f} | {o['peak_mb']:.0f} | "
            f"{d['peak_mb'] / max(o['peak_mb'], 1):.2f} | {d['job_bytes'] / 1024:.1f} kB | "
            f"{o['job_bytes'] / 2**20:.0f} MiB | {w['peak_mb']:.0f} | {d['seconds']:.1f} |"
        )
    if len(rows) >= 2:
        (n1, _, d1, o1, w1), (n2, _, d2, o2, w2) = rows[0], rows[-1]
        for label, a, b in (
            ("driver now", d1, d2),
            ("images in the job", o1, o2),
            ("worker", w1, w2),
        ):
            slope = (b["peak_mb"] - a["peak_mb"]) / (n2 - n1)
            estimate = b["peak_mb"] + slope * (100_000 - n2)
            print(
                f"{label}: {slope * 1000:.2f} MiB per 1,000 images; 100,000 images: "
                f"about {estimate:.0f} MiB"
            )


if __name__ == "__main__":
    main()
