"""Small, valid domain folders for tests, written in code: domain.yaml, tiny PNGs and the
metadata CSV, for each task. Tests then break one thing and check the validation report.

    domain = make_domain(tmp_path, "classification")
    rows = read_rows(domain); rows[1]["label"] = "Sneakr"; write_rows(domain, rows)
"""

from __future__ import annotations

import csv
import hashlib
import random
import struct
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from flows.domains import Domain, get_domain
from flows.domains.schema import BackboneSpec, DomainConfig
from mpt_core import FAMILIES, TASKS
from mpt_core.data import SPLITS
from mpt_core.support import family_tasks

LABELS = ("boot", "shirt")
"""The classes of every test domain; each task's toy (`Task.toy`) turns an image of a
class into that task's rows (a label, a caption, questions and answers...)."""
SIDE = 24
"""Images are SIDE x SIDE pixels of seeded noise: every image has distinct bytes."""


def make_domain(
    root: Path,
    task: str,
    *,
    per_class: int = 4,
    validation: dict[str, Any] | None = None,
    name: str | None = None,
) -> Domain:
    """A valid domain `root/domains/<name>` for `task`: `per_class` images per class per
    split, with the rows and the declaration the task's toy gives, on a backbone family
    that runs the task, loaded through discovery. Works for any registered task."""
    name = name or f"test-{task}"
    folder = root / "domains" / name
    data = folder / "data"
    toy = TASKS.get(task).toy(LABELS)
    rows: list[dict[str, str]] = []
    number = 0
    for split in SPLITS:
        for cls in LABELS:
            for i in range(per_class):
                rel = f"images/{split}/{cls}_{i}.png"
                write_png(data / rel, seed=number)
                rows += [{"image": rel, "split": split, **e.fields} for e in toy.rows(cls, rel)]
                number += 1
    write_csv(data / "metadata.csv", rows, _columns(rows))
    config: dict[str, Any] = {"task": task, "description": f"test domain for {task}"}
    options = {}
    for key, value in toy.task.declaration().items():
        if key in DomainConfig.model_fields:
            config[key] = value
        else:
            options[key] = value
    if options:
        config["task_options"] = options
    if task not in family_tasks(BackboneSpec().family):  # captioning: a generative family
        config["backbone"] = {"family": next(f for f in FAMILIES if task in family_tasks(f))}
    config["validation"] = {"min_per_class": {"train": 2, "val": 1, "test": 1}} | (validation or {})
    (folder / "domain.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return get_domain(root / "domains", name)


def _columns(rows: list[dict[str, str]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def png_bytes(seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> bytes:
    """A PNG of seeded RGB noise (noise keeps the file large enough to truncate mid-data)."""
    noise = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = BytesIO()
    Image.frombytes("RGB", size, noise).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(seed))


def with_declared_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with its IHDR claiming width x height (CRC fixed, pixel data unchanged):
    a decompression bomb as far as the header is concerned."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


def write_csv(path: Path, rows: list[dict[str, str]], fieldnames: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fieldnames = fieldnames or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_rows(domain: Domain) -> list[dict[str, str]]:
    with domain.metadata_path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(domain: Domain, rows: list[dict[str, str]]) -> None:
    write_csv(domain.metadata_path, rows)


def image_of(domain: Domain, row: int) -> Path:
    """The image file of data row `row` (1 = the first line below the header)."""
    return domain.data_dir / read_rows(domain)[row - 1]["image"]


def folder_digest(folder: Path) -> str:
    """sha256 over every path, its bytes and mtime below `folder` (symlinks not followed)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        digest.update(f"{path.relative_to(folder)}|{stat.st_mode}|{stat.st_mtime_ns}".encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()
