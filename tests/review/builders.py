"""Registries for the review tests, built with the registry API and tiny artifacts (no
flow): a domain with production v1 and a pending candidate v2 on the same data version,
per-example predictions of both, thumbnails of where they disagree, a training curve and a
validation report with Data Docs. Metrics are computed from the predictions, so every
figure on a page can be checked against them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from registry import Policy, PromptRegistry

CLASSES = ("T-shirt/top", "trouser", "pullover", "sneaker", "bag")
PER_CLASS = 12
BACKBONE = {"family": "shipped", "name": "tiny", "weights_sha256": "b" * 64}
POLICY = Policy("accuracy", min_improvement=0.0, max_class_regression=0.05)
PEOPLE = {
    "ana": "requester",
    "ben": "reviewer",
    "cy": "reviewer",
    "vic": "viewer",
    "root": "admin",
}


@dataclass
class Scene:
    domain: str
    md5: str
    request_id: int
    """retrain-flow's pending request: v2 (candidate) vs production v1; policy passes."""
    report_dir: Path
    v1_rows: list[dict]
    v2_rows: list[dict]


def add_people(reg: PromptRegistry) -> dict[str, str]:
    """The users above; returns name -> token."""
    return {name: reg.add_user(name, role)[1] for name, role in PEOPLE.items()}


def artifact(root: Path, tag: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "prompts.safetensors").write_bytes(f"tensors-{tag}".encode())
    (root / "prompt_config.json").write_text(json.dumps({"method": "mpt", "tag": tag}))
    return root


def image_for(cls: int, i: int, images: list[Image.Image] | None) -> Image.Image:
    if images is not None:
        return images[cls * PER_CLASS + i]
    rng = np.random.default_rng(cls * 100 + i)
    pixels = rng.integers(0, 80, (28, 28, 3), dtype=np.uint8)
    pixels[4 + cls * 4 : 10 + cls * 4, 6:22] = (230, 90 + 30 * cls, 40)
    return Image.fromarray(pixels)


def jpeg(image: Image.Image) -> bytes:
    small = image.convert("RGB")
    small.thumbnail((96, 96))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=85)
    return out.getvalue()


def predictions(right: list[int], errors_first: bool) -> list[dict]:
    """PER_CLASS examples per class; `right[k]` of class k are right, the others are taken
    for the next class. Errors sit at the start or the end, so two versions disagree."""
    rows = []
    for k, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            wrong = i < PER_CLASS - right[k] if errors_first else i >= right[k]
            prediction = CLASSES[(k + 1) % len(CLASSES)] if wrong else name
            score = 0.55 if wrong else 0.9
            rows.append(
                {
                    "image": f"images/test/{k}_{i:02d}.png",
                    "target": name,
                    "prediction": prediction,
                    "score": score,
                }
            )
    return rows


def metrics_of(rows: list[dict]) -> dict:
    per_class = {}
    f1s = []
    for name in CLASSES:
        mine = [r for r in rows if r["target"] == name]
        tp = sum(r["prediction"] == name for r in mine)
        predicted = sum(r["prediction"] == name for r in rows)
        per_class[name] = tp / len(mine)
        precision, recall = (tp / predicted if predicted else 0.0), tp / len(mine)
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    accuracy = sum(r["prediction"] == r["target"] for r in rows) / len(rows)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s), "per_class_accuracy": per_class}


def history(epochs: int = 12) -> list[dict]:
    return [
        {
            "epoch": e,
            "step": e * 4,
            "train_loss": round(1.9 * 0.82**e + 0.25, 4),
            "lr": 0.002,
            "val_accuracy": round(min(0.93, 0.4 + 0.05 * e), 4),
        }
        for e in range(1, epochs + 1)
    ]


def write_report(root: Path) -> Path:
    """A validation report directory like the flow writes (summary, Data Docs)."""
    docs = root / "data_docs"
    (docs / "static").mkdir(parents=True, exist_ok=True)
    (docs / "index.html").write_text(
        "<html><body><h1>Data Docs</h1><a href='static/style.css'>css</a></body></html>"
    )
    (docs / "static" / "style.css").write_text("h1 { color: green; }")
    (root / "summary.txt").write_text("passed: 3 checks")
    return root


def build(
    reg: PromptRegistry,
    tmp_path: Path,
    domain: str = "retail",
    md5: str = "c0ffee" + "0" * 26,
    images: list[Image.Image] | None = None,
    requester: str = "retrain-flow",
) -> Scene:
    """Production v1 (ana asked, ben approved) and `requester`'s pending candidate v2."""
    reg.ensure_service_account("retrain-flow")
    report = write_report(tmp_path / f"reports-{domain}" / md5)
    reg.record_data_version(
        domain,
        md5,
        rows=len(CLASSES) * PER_CLASS * 3,
        row_counts={"train": 80, "val": 40, "test": len(CLASSES) * PER_CLASS},
        validation_passed=True,
        validation_summary=f"{domain}: passed: 14 checks on 180 rows (train 80, val 40, test 60)",
        report_uri=str(report),
    )
    v1_rows = predictions([9, 11, 8, 10, 11], errors_first=False)
    v2_rows = predictions([10, 12, 10, 10, 11], errors_first=True)
    for number, rows, tag, config in (
        (1, v1_rows, "v1", {"preset": "coop", "tuning": {"epochs": 10, "lr": 0.002}}),
        (2, v2_rows, "v2", {"preset": "mpt", "tuning": {"epochs": 12, "lr": 0.002}}),
    ):
        reg.register_version(
            domain,
            artifact(tmp_path / f"art-{domain}-{tag}", f"{domain}-{tag}"),
            method=config["preset"],
            config=config,
            data_version=md5,
            backbone=BACKBONE,
            metrics={"test": metrics_of(rows)},
            created_by="retrain-flow",
            flow_run_id=f"flow-run-{domain}-{tag}",
            commit="1" * 40,
            training_history=history(10 if number == 1 else 12),
        )
        reg.record_predictions(domain, number, md5, "test", rows, target_field="label")
        if number == 1:
            first = reg.request_promotion(domain, 1, requested_by="ana", policy=POLICY)
            reg.approve(first.id, reviewer="ben", comment="first production")
    disagree = sorted(
        {
            a["image"]
            for a, b in zip(v1_rows, v2_rows, strict=True)
            if a["prediction"] != b["prediction"]
        }
    )
    thumbs = {}
    for image in disagree:
        k, i = image.rsplit("/", 1)[1].removesuffix(".png").split("_")
        thumbs[image] = jpeg(image_for(int(k), int(i), images))
    reg.record_thumbnails(domain, md5, "test", thumbs)
    request = reg.request_promotion(domain, 2, requested_by=requester, policy=POLICY)
    return Scene(domain, md5, request.id, report, v1_rows, v2_rows)


def regressing_request(reg: PromptRegistry, tmp_path: Path, scene: Scene, by: str = "ana") -> int:
    """A v3 on the same data that loses 2 of 12 'bag' examples: its policy fails."""
    rows = predictions([12, 12, 12, 12, 9], errors_first=True)
    reg.register_version(
        scene.domain,
        artifact(tmp_path / f"art-{scene.domain}-v3", f"{scene.domain}-v3"),
        method="maple",
        config={"preset": "maple", "tuning": {"epochs": 12, "lr": 0.004}},
        data_version=scene.md5,
        backbone=BACKBONE,
        metrics={"test": metrics_of(rows)},
        created_by=by,
    )
    reg.record_predictions(scene.domain, 3, scene.md5, "test", rows, target_field="label")
    return reg.request_promotion(scene.domain, 3, requested_by=by, policy=POLICY).id
