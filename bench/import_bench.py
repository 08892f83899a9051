"""What `mpt domain import` and the leakage checks cost: N images from an ImageFolder tree.

    OMP_NUM_THREADS=1 python bench/import_bench.py --images 20000 [--keep DIR]

The source is Fashion-MNIST (Debian `dataset-fashion-mnist`, 70,000 images of 28 x 28
pixels) as class folders, ten images per subfolder (the subfolder is the group key);
beyond 70,000, the next images are copies of the first ones two grey levels brighter:
other bytes, the same look, as re-encoded duplicates are. Timed, each in this process:

- the import (`import_domain`, copying every image; `--group-by folder`);
- the per-image facts validation computes (read, sha256 / md5, header, decode, RGB) with
  and without the perceptual hash, so the hash's share shows;
- the leakage facts: identical bytes across splits, near-duplicates by multi-index hashing
  (distance 4 of 64 bits), groups across splits;
- the whole `validate_domain` (the Great Expectations suite over the table and facts).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from flows.domains import get_domain
from flows.importers import ImportRequest, import_domain
from flows.validation import images as image_module
from flows.validation import validate_domain
from flows.validation.images import fact_column, image_facts
from flows.validation.leakage import leakage_facts
from flows.validation.table import read_table
from mpt_core.samples import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, _read_idx

GROUP = 10
"""Images per subfolder (group)."""


def build_source(root: Path, count: int) -> Path:
    """`count` Fashion-MNIST images as SOURCE/<class>/g<k>/<n>.png."""
    pixels = np.concatenate(
        [_read_idx(FASHION_MNIST_DIR / f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")]
    )
    labels = np.concatenate(
        [_read_idx(FASHION_MNIST_DIR / f"{p}-labels-idx1-ubyte.gz") for p in ("train", "t10k")]
    )
    for n in range(count):
        i = n % len(pixels)
        image = pixels[i] if n < len(pixels) else np.clip(pixels[i].astype(int) + 2, 0, 255)
        name = FASHION_MNIST_CLASSES[labels[i]].replace("/", "-")
        path = root / name / f"g{n // GROUP:05d}" / f"{n:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())
    return root


def timed(what: str, results: dict[str, float], call):
    started = time.perf_counter()
    value = call()
    results[what] = time.perf_counter() - started
    print(f"{what}: {results[what]:.1f} s", flush=True)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temp one)")
    args = parser.parse_args(argv)
    import torch

    work = Path(args.keep or tempfile.mkdtemp(prefix="mpt-import-bench-"))
    # the image-facts cache lives under $MPT_HOME: the bench's own, so the first validation
    # is cold, the second shows the reuse, and nothing is left behind
    os.environ["MPT_HOME"] = str(work / "mpt-home")
    print(
        f"{args.images} images; torch threads {torch.get_num_threads()} (torch is imported, "
        f"not used); {os.cpu_count()} CPUs; in {work}",
        flush=True,
    )
    results: dict[str, float] = {}
    try:
        source = timed(
            "build the source", results, lambda: build_source(work / "source", args.images)
        )
        request = ImportRequest("bench", "imagefolder", str(source), group_by="folder")
        timed("import (copy)", results, lambda: import_domain(work / "domains", request))
        domain = get_domain(work / "domains", "bench")
        config = domain.config
        table = read_table(domain.metadata_path)
        bounds = config.validation.images
        paths = table[config.data.image_column]
        saved = image_module.perceptual_hash
        image_module.perceptual_hash = lambda img: None
        try:
            timed(
                "image facts without pHash",
                results,
                lambda: image_facts(paths, domain.data_dir, bounds),
            )
        finally:
            image_module.perceptual_hash = saved
        with_hash = timed(
            "image facts with pHash",
            results,
            lambda: image_facts(paths, domain.data_dir, bounds),
        )
        leaks = timed(
            "leakage facts (exact, near-duplicate, group)",
            results,
            lambda: leakage_facts(
                table,
                with_hash,
                image=config.data.image_column,
                split=config.data.split_column,
                group=config.data.group_column,
                max_distance=config.validation.near_duplicate_distance,
            ),
        )
        near = int((leaks[fact_column("near_duplicate")] != "ok").sum())
        report = timed("validate_domain (whole suite)", results, lambda: validate_domain(domain))
        timed(
            "validate_domain again (image facts reused)",
            results,
            lambda: validate_domain(domain),
        )
        print(
            f"near-duplicate rows across splits: {near}; validation passed: {report.passed}; "
            f"warnings: {[w.count for w in report.warnings]}"
        )
        print("\n| step | seconds |\n| --- | ---: |")
        for what, seconds in results.items():
            print(f"| {what} | {seconds:.1f} |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
