"""`mpt predict DOMAIN PATH --out preds.csv`: one domain's version over a folder of images or
a metadata CSV, with Ray Data `map_batches` over actors that each hold the backbone once.

The version is resolved once (the alias may move during the job; every row is predicted
by the same version), its backbone is loaded here from the lineage, checked against the
recorded sha256 and put into Ray's object store once; each actor takes it from there,
loads the prompts, and predicts batches with the same `predict_batch` the server uses.
A row whose image cannot be read gets its error in the output; the other rows go on.
Image paths must be readable from every Ray worker (a shared folder on a cluster).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cluster.ray import ray_session
from mpt_core import DataError, Example
from mpt_core.artifacts import PromptArtifact, prompts_from_bytes
from mpt_core.data import FIELDS
from mpt_core.featurestore import FeatureStore, chunk_size
from mpt_core.inference import predict_batch
from mpt_core.tasks.base import Task
from registry import PromptRegistry

from . import images
from .catalog import BackboneLoader, LoadError, fetch_artifact
from .errors import ServingError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
CANDIDATE_SEPARATOR = "|"
COLUMNS = ("image", "domain", "alias", "version", "prediction", "score", "scores", "error")


@dataclass(frozen=True)
class BatchSummary:
    domain: str
    alias: str
    version: int
    rows: int
    errors: int
    seconds: float
    out: Path


# ---------------------------------------------------------------------- inputs
def _from_folder(folder: Path, task: Task) -> list[dict[str, Any]]:
    if task.inputs:
        raise ServingError(
            f"a {task.name} domain needs {', '.join(map(repr, task.inputs))} for every image; "
            f"a folder gives only images. Fix: pass a CSV with the columns image, "
            f"{', '.join(task.inputs)}"
        )
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    return [{"image": p.relative_to(folder).as_posix(), "path": str(p)} for p in files]


def _from_csv(table: Path, task: Task) -> list[dict[str, Any]]:
    try:
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            records = list(reader)
            columns = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ServingError(f"{table}: not a readable UTF-8 CSV ({exc})") from None
    needed = ["image", *task.inputs]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ServingError(
            f"{table}: no column {missing[0]!r} (columns: {', '.join(columns) or 'none'}). "
            f"Fix: a {task.name} domain needs the columns {', '.join(needed)}"
            + (
                f" (optional: {', '.join(task.optional_inputs)}; list values separated by "
                f"'{CANDIDATE_SEPARATOR}')"
                if task.optional_inputs
                else ""
            )
        )
    rows, absent = [], []
    for line, record in enumerate(records, start=2):  # line 1 is the header
        path = table.parent / (record["image"] or "")
        if not record["image"] or not path.is_file():
            absent.append(f"line {line} ({record['image']!r})")
            continue
        row: dict[str, Any] = {"image": record["image"], "path": str(path), "line": line}
        for name in (*task.inputs, *task.optional_inputs):
            value = (record.get(name) or "").strip()
            if FIELDS[name].many and value:
                row[name] = [v.strip() for v in value.split(CANDIDATE_SEPARATOR) if v.strip()]
            elif value:
                row[name] = record[name]
        rows.append(row)
    if absent:
        raise ServingError(
            f"{table}: {len(absent)} image(s) not found: {', '.join(absent[:5])}"
            f"{' ...' if len(absent) > 5 else ''}. Fix: image paths are relative to the CSV's "
            "folder"
        )
    return rows


def read_inputs(source: Path, task: Task) -> list[dict[str, Any]]:
    """Rows {image, path, task inputs...} from a folder or a CSV, checked before any work."""
    if source.is_dir():
        rows = _from_folder(source, task)
    elif source.is_file() and source.suffix.lower() == ".csv":
        rows = _from_csv(source, task)
    else:
        raise ServingError(
            f"{source} is neither a folder of images nor a .csv file. Fix: pass a folder, or a "
            "CSV with an 'image' column (paths relative to the CSV)"
        )
    if not rows:
        raise ServingError(f"{source}: no images to predict ({', '.join(sorted(IMAGE_SUFFIXES))})")
    # one schema for every row (Ray Data infers the table's columns from them)
    keys = ("image", "path", "line", *task.inputs, *task.optional_inputs)
    rows = [{k: row.get(k) for k in keys} for row in rows]
    for row in rows:
        probe = Example(
            row["path"], **{k: v for k, v in row.items() if k in task.inputs}
        )  # the task's declared values (e.g. VQA questions), before any actor starts
        try:
            task.check_inputs([probe])
        except DataError as exc:
            where = f"line {row['line']}" if row["line"] else row["image"]
            raise ServingError(f"{source}: {where}: {str(exc).partition(': ')[2]}") from None
    return rows


# ---------------------------------------------------------------------- the actors
def _example(row: dict[str, Any], limits: images.ImageLimits) -> Example:
    """The example of one input row: its decoded image and the task inputs it has (a list
    input arrives as a list, or as an array from Arrow)."""
    data = Path(row["path"]).read_bytes()
    fields: dict[str, Any] = {}
    for name, value in row.items():
        if name not in FIELDS:
            continue  # image, path, line
        if FIELDS[name].many and hasattr(value, "__len__") and not isinstance(value, str):
            if len(value):
                fields[name] = tuple(str(v) for v in value)
        elif isinstance(value, str):
            fields[name] = value
    return Example(images.decode(data, limits), **fields)


class Predictor:
    """A Ray Data actor: the backbone (from the object store) and the prompts, once."""

    def __init__(
        self,
        backbone: list,
        artifact: PromptArtifact,
        limits: images.ImageLimits,
        label: dict[str, Any],
        threads: int | None = None,
    ) -> None:
        import ray
        import torch

        if threads:
            torch.set_num_threads(threads)
        model_backbone = ray.get(backbone[0])  # wrapped in a list: Ray resolves it here, once
        if torch.cuda.is_available():
            model_backbone = model_backbone.cuda()
        self.model = prompts_from_bytes(artifact, model_backbone).eval()
        self.limits = limits
        self.label = label
        self.store = FeatureStore.from_env()  # the node's: images tuned on are not re-encoded

    def __call__(self, batch):
        rows = batch.to_dict("records")
        examples: dict[int, Example] = {}
        out = []
        for i, row in enumerate(rows):
            record = {"image": row["image"], **self.label, "prediction": "", "score": ""}
            record.update(scores="", error="")
            try:
                examples[i] = _example(row, self.limits)
            except images.ImageRejected as exc:
                record["error"] = f"the image {exc.problem}; {exc.fix}"
            except OSError as exc:
                record["error"] = f"cannot read {row['path']}: {exc.strerror or exc}"
            out.append(record)
        if examples:
            order = sorted(examples)
            view = self.store.features(
                self.model.feature_key,
                [examples[i].image for i in order],  # decoded within the server's limits
                self.model.prepare_chunk,
                digests=[self.store.digest(rows[i]["path"]) for i in order],
                chunk=chunk_size(self.model.backbone.device),
            )
            predictions = predict_batch(
                [(self.model, examples[i]) for i in order], prepared=list(view[:])
            )
            for i, p in zip(order, predictions, strict=True):
                top = p.scores.get(p.value) if p.value is not None else None
                out[i]["prediction"] = p.value or ""
                out[i]["score"] = "" if top is None else f"{top:.6f}"
                out[i]["scores"] = json.dumps(dict(sorted(p.scores.items(), key=lambda kv: -kv[1])))
        import pandas as pd

        return pd.DataFrame(out, columns=list(COLUMNS))


# ---------------------------------------------------------------------- the job
def _load_version(registry: PromptRegistry, domain: str, alias: str):
    targets = registry.alias_targets(alias)
    if domain not in targets:
        raise ServingError(
            f"{domain!r} is not a registered domain; registered: {', '.join(targets) or 'none'}"
        )
    number = targets[domain]
    if number is None:
        raise ServingError(
            f"{domain} has no version under the alias {alias!r}. Fix: promote one "
            "(mpt promote request / approve) or pass --alias"
        )
    info = registry.get_version(domain, number)
    try:
        backbone = BackboneLoader(device=_cpu()).get(info.backbone)
    except LoadError as exc:
        raise ServingError(f"{domain} v{number} cannot be loaded: {exc}") from None
    artifact = fetch_artifact(registry, info)
    task = prompts_from_bytes(artifact, backbone, f"{domain} v{number}").task
    return number, backbone, artifact, task


def _cpu():
    import torch

    return torch.device("cpu")


def predict_to_csv(
    registry: PromptRegistry,
    domain: str,
    source: Path,
    out: Path,
    *,
    alias: str = "production",
    batch_size: int = 32,
    workers: int | None = None,
    address: str | None = None,
    limits: images.ImageLimits,
    progress: bool = True,
) -> BatchSummary:
    """Predict every image of `source` with `domain`'s version under `alias`; write `out`
    (a CSV, in input order) whole or not at all."""
    started = time.perf_counter()
    number, backbone, artifact, task = _load_version(registry, domain, alias)
    rows = read_inputs(source, task)
    # a local Ray stops after the job; from a cluster we only disconnect
    with ray_session(address):
        import ray
        from ray.data import DataContext

        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        n = workers or (gpus or max(1, cpus - 1))  # leave a CPU to Ray Data's own tasks
        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the job's own bar counts images, in order
        _quiet_ray_data()
        label = {"domain": domain, "alias": alias, "version": number}
        with warnings.catch_warnings():
            # Ray Data hands every actor its map function through the object store, and
            # Ray logs an error line for each actor that may restart with arguments stored
            # there (ray-project/ray#53727); so these actors do not restart: a lost actor
            # fails the job, which says so. Ray 2.60 takes `max_restarts` only through its
            # deprecated remote-arguments keywords, hence the filter on that notice alone.
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", Warning)
            dataset = ray.data.from_items(rows).map_batches(
                Predictor,
                fn_constructor_kwargs={
                    "backbone": [ray.put(backbone)],  # the weights enter the object store once
                    "artifact": artifact,
                    "limits": limits,
                    "label": label,
                    "threads": None if gpus else max(1, cpus // n),
                },
                batch_size=batch_size,
                batch_format="pandas",
                compute=ray.data.ActorPoolStrategy(size=n),
                num_gpus=1 if gpus else 0,
                num_cpus=0 if gpus else 1,
                max_restarts=0,
            )
        errors = _write(dataset, out, len(rows), f"{domain} v{number}", progress)
    return BatchSummary(
        domain, alias, number, len(rows), errors, time.perf_counter() - started, out
    )


def _quiet_ray_data() -> None:
    """Keep Ray Data's own reporting out of the job's output: its INFO lines (execution
    plans, "finished in") and its notice that its progress bars are off, which they are
    because the job shows its own. Ray Data's warnings of substance still print."""
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _write(dataset, out: Path, total: int, desc: str, progress: bool) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    errors = 0
    try:
        with (
            os.fdopen(fd, "w", newline="", encoding="utf-8") as f,
            tqdm(total=total, desc=desc, unit="image", disable=not progress) as bar,
        ):
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for batch in dataset.iter_batches(batch_size=None, batch_format="pandas"):
                records = batch.to_dict("records")
                writer.writerows(records)
                errors += sum(1 for r in records if r["error"])
                bar.update(len(records))
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return errors
