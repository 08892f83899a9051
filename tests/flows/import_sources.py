"""Real sources in the layouts `mpt domain import` reads, built from data that ships here:
Fashion-MNIST (Debian `dataset-fashion-mnist`) as an ImageFolder tree and as a Hugging Face
Parquet export, the medical demo's tiles as COCO captions, the manufacturing demo's fabric
images as VQAv2 question and annotation files. Small: a few images per class."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mpt_core.samples import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, _read_idx

CLASSES = ("trouser", "sneaker", "bag")


def fashion_images(per_class: int, classes=CLASSES, offset: int = 0) -> dict[str, list[bytes]]:
    """`per_class` PNGs of each class from Fashion-MNIST's test set, skipping `offset`."""
    images = _read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    out = {}
    for name in classes:
        chosen = np.flatnonzero(labels == FASHION_MNIST_CLASSES.index(name))
        out[name] = [_png(images[i]) for i in chosen[offset : offset + per_class]]
    return out


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def fashion_imagefolder(
    root: Path, per_class: int = 6, splits: tuple[str, ...] = (), offset: int = 0
) -> Path:
    """SOURCE/<class>/<n>.png, or SOURCE/<split>/<class>/<n>.png for each of `splits`
    (`per_class` images per class in each)."""
    for s, split in enumerate(splits or ("",)):
        images = fashion_images(per_class, offset=offset + s * per_class)
        for name, pngs in images.items():
            for n, png in enumerate(pngs):
                path = root / split / name / f"{offset + s * per_class + n:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png)
    return root


def fashion_parquet(root: Path, per_class: int = 6, splits=("train", "test")) -> Path:
    """SOURCE/data/<split>-00000-of-00001.parquet as `datasets` writes them: an `image`
    column of {bytes, path} structs, a `label` ClassLabel column (integers, their names in
    the schema's Hugging Face metadata) and an `id` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {
        "image": {"_type": "Image"},
        "label": {"_type": "ClassLabel", "names": list(CLASSES)},
        "id": {"dtype": "int64", "_type": "Value"},
    }
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    (root / "data").mkdir(parents=True, exist_ok=True)
    for s, split in enumerate(splits):
        images = fashion_images(per_class, offset=s * per_class)
        rows = [
            {"image": {"bytes": png, "path": f"{name}-{n}.png"}, "label": c, "id": 1000 * s + n}
            for c, (name, pngs) in enumerate(images.items())
            for n, png in enumerate(pngs)
        ]
        table = pa.Table.from_pylist(rows).replace_schema_metadata(metadata)
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def medical_coco(
    root: Path, sources: int = 4, tiles: int = 5, splits: bool = True, first: int = 0
) -> Path:
    """The medical demo's tiles (`flows.domains.prepare`), `tiles` of each of the first
    `sources` source images from tile `first` on, as COCO captions, each image entry naming
    its `source`. With `splits`: annotations/captions_train.json and captions_val.json (the
    last tile of each source is val), images in train/ and val/; else
    annotations/captions.json, images in images/."""
    from flows.domains.prepare import _medical_sources

    names = ("train", "val") if splits else ("images",)
    documents = {split: {"images": [], "annotations": []} for split in names}
    image_id = 0
    for source, caption, found in _medical_sources()[:sources]:
        for n, tile in enumerate(found[first : first + tiles]):
            split = ("val" if n == tiles - 1 else "train") if splits else "images"
            name = f"{source}_{first + n}.png"
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(tile).save(root / split / name)
            image_id += 1
            documents[split]["images"].append(
                {"id": image_id, "file_name": name, "source": source, "height": tile.shape[0]}
            )
            documents[split]["annotations"].append(
                {"id": 10 * image_id, "image_id": image_id, "caption": caption + " "}
            )
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, document in documents.items():
        name = f"captions_{split}.json" if splits else "captions.json"
        (root / "annotations" / name).write_text(json.dumps(document))
    return root


def manufacturing_vqa(root: Path, per_answer: int = 4) -> Path:
    """The manufacturing demo's fabric images and questions as VQAv2 files, one pair per
    split (`data_subtype` train / val / test), images named as VQAv2 does
    (`<subtype>/COCO_<subtype>_<id:012d>.jpg`); ten annotators per question, one of whom
    disagrees with the consensus."""
    import conformal_clip_data as ccd

    from flows.domains.prepare import DEFECT_Q, KIND_Q, TEXTILE_ANSWERS

    counter = 0
    for split, start in (("train", 0), ("val", per_answer), ("test", 2 * per_answer)):
        questions, annotations = [], []
        for folder, (defect, kind) in TEXTILE_ANSWERS.items():
            files = sorted((ccd.textile_simulated_root() / folder).glob("*.jpg"))
            for n, file in enumerate(files[start : start + per_answer]):
                counter += 1
                target = root / split / f"COCO_{split}_{counter:012d}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(file.read_bytes())
                question, answer = (DEFECT_Q, defect) if n % 2 == 0 else (KIND_Q, kind)
                qid = 100 * counter
                questions.append({"image_id": counter, "question": question, "question_id": qid})
                others = ["yes" if answer == "no" else "no"] if question == DEFECT_Q else ["none"]
                votes = [answer] * 9 + (others if others[0] != answer else ["local"])
                annotations.append(
                    {
                        "question_id": qid,
                        "image_id": counter,
                        "question_type": "is there" if question == DEFECT_Q else "what kind",
                        "answer_type": "yes/no" if question == DEFECT_Q else "other",
                        "multiple_choice_answer": answer,
                        "answers": [
                            {"answer": v, "answer_confidence": "yes", "answer_id": i + 1}
                            for i, v in enumerate(votes)
                        ],
                    }
                )
        meta = {"data_type": "fabric", "data_subtype": split}
        (root / f"v2_OpenEnded_fabric_{split}_questions.json").write_text(
            json.dumps({**meta, "questions": questions})
        )
        (root / f"v2_fabric_{split}_annotations.json").write_text(
            json.dumps({**meta, "annotations": annotations})
        )
    return root
