"""Deterministic `prepare` stages of the three demo domains (see dvc.yaml).

Each writes `domains/<name>/data/` (images/ + metadata.csv with a train/val/test split
column) from images that ship in installed packages, with seeded draws, so the same
packages give byte-identical data. The folder is replaced atomically.

    python -m flows.domains.prepare retail [--domains-dir domains]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mpt_core._registry import Registry


@dataclass(frozen=True)
class Row:
    image: Image.Image | Path
    split: str
    fields: dict[str, str]


Preparer = Callable[[], Iterator[Row]]
PREPARERS: Registry[Preparer] = Registry("demo domain")


class SourceMissing(RuntimeError):
    """A package that a demo domain's images come from is not installed."""


def _require(module: str, install: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise SourceMissing(
            f"the demo data needs `{module}`: install it with `{install}`"
        ) from None


def _split_counts(n: int, train: int, val: int, test: int) -> list[str]:
    if n < train + val + test:
        raise ValueError(f"need {train + val + test} items, have {n}")
    return ["train"] * train + ["val"] * val + ["test"] * test


# --- retail: Fashion-MNIST ---------------------------------------------------------
@PREPARERS.decorator("retail")
def retail(shots: int = 16, val: int = 20, test: int = 100, seed: int = 0) -> Iterator[Row]:
    """Fashion-MNIST (Debian dataset-fashion-mnist), 10 classes: few-shot train from the
    official train set, val from the train set (disjoint), test from the official test set.
    100 test images per class: one image moves a class's accuracy by 1 point."""
    from mpt_core.samples import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, fashion_mnist

    if not FASHION_MNIST_DIR.exists():
        raise SourceMissing(
            f"{FASHION_MNIST_DIR} is missing: `apt-get install dataset-fashion-mnist` (as root)"
        )
    train_val = fashion_mnist("train", shots + val, seed=seed)
    per_class = shots + val
    for c in range(len(FASHION_MNIST_CLASSES)):
        chunk = train_val[c * per_class : (c + 1) * per_class]
        order = np.random.default_rng(seed + c).permutation(per_class)
        for i, split in zip(order, _split_counts(per_class, shots, val, 0), strict=True):
            yield Row(chunk[i].image, split, {"label": chunk[i].label})
    for example in fashion_mnist("test", test, seed=seed):
        yield Row(example.image, "test", {"label": example.label})


# --- manufacturing: textile VQA -----------------------------------------------------
DEFECT_Q = "Is there a defect on this fabric?"
KIND_Q = "What kind of defect is visible?"
TEXTILE_ANSWERS = {
    "nominal": ("no", "none"),
    "local": ("yes", "local"),
    "global": ("yes", "global"),
}


@PREPARERS.decorator("manufacturing")
def manufacturing(shots: int = 16, val: int = 40, test: int = 150, seed: int = 0) -> Iterator[Row]:
    """Simulated textile images (PyPI conformal-clip-data), nominal / local / global defect,
    as multiple-choice VQA: every image gets one of two questions, alternating. 120 val and
    450 test images: each question has 225 test images (one moves its accuracy by 0.44)."""
    ccd = _require("conformal_clip_data", "pip install conformal-clip-data")
    rng = np.random.default_rng(seed)
    for folder, (defect, kind) in TEXTILE_ANSWERS.items():
        files = sorted((ccd.textile_simulated_root() / folder).glob("*.jpg"))
        chosen = rng.permutation(len(files))[: shots + val + test]
        for n, (i, split) in enumerate(
            zip(chosen, _split_counts(len(chosen), shots, val, test), strict=True)
        ):
            question, answer = (DEFECT_Q, defect) if n % 2 == 0 else (KIND_Q, kind)
            yield Row(files[i], split, {"question": question, "answer": answer})


# --- medical: retrieval over real images of known modality --------------------------
def _to_uint8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, [1, 99])
    return (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def _grid(a: np.ndarray, n: int = 5, min_side: int = 20) -> list[np.ndarray]:
    """Non-overlapping square tiles (no pixel is shared between two tiles): side
    min(h, w) // n, but at least `min_side` pixels (small images give fewer tiles)."""
    size = max(min(a.shape[:2]) // n, min_side)
    rows, cols = a.shape[0] // size, a.shape[1] // size
    return [
        a[y * size : (y + 1) * size, x * size : (x + 1) * size]
        for y in range(rows)
        for x in range(cols)
    ]


def _informative(tiles: list[np.ndarray], min_std: float = 2.0) -> list[np.ndarray]:
    """Drop near-uniform tiles (background around a scan, a fan or a body): they show no
    modality, and two blank tiles in two splits would be the same image."""
    return [t for t in tiles if float(np.std(t)) >= min_std]


def _dicom(name: str, frame: int | None = None) -> np.ndarray:
    """A pydicom test file's pixels as uint8: grayscale by 1st-99th percentile, colour
    (RGB, YBR, palette) as RGB."""
    pydicom = _require("pydicom", "pip install pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(get_testdata_file(name))
    pixels = ds.pixel_array if frame is None else ds.pixel_array[frame]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    return pixels.astype(np.uint8) if pixels.ndim == 3 else _to_uint8(pixels)


def _medical_sources() -> list[tuple[str, str, list[np.ndarray]]]:
    """(source id, caption, tiles) per source image; captions state only what is known
    about each source: its modality and, where known, the anatomy."""
    import importlib.resources as res

    skdata = _require("skimage.data", "pip install scikit-image")
    nib = _require("nibabel", "pip install nibabel")
    _require("matplotlib", "pip install matplotlib")
    from matplotlib import cbook

    retina = skdata.retina()[300:1100, 300:1100]  # inside the fundus disc
    anat = nib.load(
        Path(str(res.files("nibabel"))) / "tests" / "data" / "anatomical.nii"
    ).get_fdata()
    with cbook.get_sample_data("s1045.ima.gz") as f:
        head = _to_uint8(np.frombuffer(f.read(), np.uint16).reshape(256, 256))
    head_ct = "computed tomography (CT) slice of the head"
    sources = [
        (
            "ihc",
            "immunohistochemistry stained tissue section, brightfield microscopy",
            _grid(skdata.immunohistochemistry()),
        ),
        ("retina", "colour fundus photograph of the retina", _grid(retina)),
        (
            "microaneurysms",
            "grayscale retinal image with microaneurysms",
            _grid(skdata.microaneurysms()),
        ),
        ("cell", "light microscopy image of a cell", _grid(skdata.cell())),
        ("ct", "computed tomography (CT) slice", _grid(_dicom("CT_small.dcm"))),
        ("mr", "magnetic resonance (MR) image slice", _grid(_dicom("MR_small.dcm"))),
        (
            "brain-mri",
            "axial slice of a brain MRI volume",
            [_to_uint8(anat[:, :, z]) for z in range(2, 24)],
        ),
        ("head-mri", "MRI slice of a human head", _grid(head)),
        ("bone-scan", "nuclear medicine whole-body bone scan", _grid(_dicom("JPEG2000.dcm"), n=3)),
        (
            "lymph-node-us",
            "colour Doppler ultrasound image of a lymph node",
            _grid(_dicom("examples_rgb_color.dcm")),
        ),
        (
            "echo-us",
            "ultrasound image of the heart (echocardiogram)",
            _grid(_dicom("examples_ybr_color.dcm", frame=0)),
        ),
        ("abdomen-mr", "axial MR image of the abdomen", _grid(_dicom("examples_overlay.dcm"))),
        ("head-ct-bone", head_ct, _grid(_dicom("J2K_pixelrep_mismatch.dcm"))),
        ("head-ct-brain", head_ct, _grid(_dicom("693_J2KI.dcm"))),
    ]
    return [(source, caption, _informative(tiles)) for source, caption, tiles in sources]


@PREPARERS.decorator("medical")
def medical(shots: int = 4, seed: int = 0) -> Iterator[Row]:
    """Up to 25 non-overlapping tiles (or 22 slices) of each of 14 real images shipped in
    scikit-image, pydicom, nibabel and matplotlib; caption = the source's true modality
    (and anatomy where known). Per source: `shots` tiles train, the rest split evenly
    between val and test (test takes the odd one)."""
    rng = np.random.default_rng(seed)
    for source, caption, tiles in _medical_sources():
        rest = len(tiles) - shots
        order = rng.permutation(len(tiles))
        splits = _split_counts(len(tiles), shots, rest // 2, rest - rest // 2)
        for i, split in zip(order, splits, strict=True):
            yield Row(Image.fromarray(tiles[i]), split, {"caption": caption, "source": source})


# --- writing --------------------------------------------------------------------------
def write_domain_data(rows: Iterator[Row], data_dir: Path) -> int:
    """Write images + metadata.csv into a temp folder, then swap it in for `data_dir`."""
    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".data-", dir=data_dir.parent))
    try:
        (tmp / "images").mkdir()
        records = []
        for n, row in enumerate(rows):
            if isinstance(row.image, Path):
                name = f"images/{n:05d}{row.image.suffix.lower()}"
                shutil.copyfile(row.image, tmp / name)
            else:
                name = f"images/{n:05d}.png"
                row.image.save(tmp / name, optimize=False)
            records.append({"image": name, "split": row.split, **row.fields})
        with open(tmp / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        old = data_dir.with_name(f".{data_dir.name}-old")
        if data_dir.exists():
            data_dir.rename(old)
        tmp.rename(data_dir)
        shutil.rmtree(old, ignore_errors=True)
        return len(records)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(name: str, domains_dir: Path = Path("domains")) -> int:
    """Regenerate the data of demo domain `name`; returns the number of rows."""
    return write_domain_data(PREPARERS.get(name)(), Path(domains_dir) / name / "data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("domains", nargs="+", help=f"demo domains: {', '.join(PREPARERS.names())}")
    parser.add_argument("--domains-dir", type=Path, default=Path("domains"))
    args = parser.parse_args(argv)
    for name in args.domains:
        try:
            n = prepare(name, args.domains_dir)
        except (SourceMissing, KeyError) as exc:
            print(f"prepare {name}: {exc}", file=sys.stderr)
            return 2
        print(f"prepared {name}: {n} rows in {args.domains_dir / name / 'data'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
