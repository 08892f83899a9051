"""Evaluate a registered version on a data version it was not tuned on, and record it.

A promotion policy compares candidate and production on the candidate's data version. The
retrain flow evaluates production there when it tunes a candidate; a version registered
by hand, or a request opened after production moved, finds production evaluated nowhere on
that data. `evaluate_version` runs that evaluation here (the version pulled from the
registry and verified as serving verifies it, the data version read from the DVC remote by
md5 into this machine's data cache, verified object by object) and records its metrics
and per-example predictions, so the policy and the review page compare like with like.
`mpt registry evaluate` runs it; `mpt promote request` runs it when the policy needs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mpt_core import evaluate
from mpt_core.errors import DataError
from mpt_core.training import embed_examples
from registry import PromptRegistry

from .datacache import DataCache, RemoteLocation
from .dataset import layout_of, read_rows, split_examples
from .domains import Domain
from .predictions import predict_rows, relative_images, task_evidence
from .pull import load_prompts_from_registry


@dataclass(frozen=True)
class Evaluated:
    domain: str
    version: int
    data_version: str
    split: str
    examples: int
    metrics: dict[str, Any]


def evaluate_version(
    registry: PromptRegistry,
    domain: Domain,
    number: int,
    data_version: str,
    *,
    location: RemoteLocation,
    cache: DataCache,
    actor: str,
    split: str = "test",
) -> Evaluated:
    """Evaluate `domain` v`number` on `split` of `data_version` and record the metrics and
    the per-example predictions (replacing an older result of the same evaluation). The
    data version must be recorded for the domain and readable from the DVC remote at
    `location`; it is read with the domain's table layout."""
    if registry.data_version(domain.name, data_version) is None:
        raise DataError(
            f"data version {data_version} of {domain.name} is not recorded in the registry; "
            f"`mpt registry show {domain.name} N` names each version's data version"
        )
    model = load_prompts_from_registry(domain.name, number, registry=registry)
    data_dir = cache.materialise(location, data_version)
    examples = split_examples(read_rows(layout_of(domain.config), data_dir), data_dir)
    chosen = examples.get(split) or []
    if not chosen:
        raise DataError(
            f"data version {data_version} of {domain.name} has no {split!r} rows; splits with "
            f"rows: {', '.join(s for s, rows in examples.items() if rows) or 'none'}"
        )
    embedded = embed_examples(model, chosen)
    metrics = json.loads(json.dumps(evaluate(model, chosen, embedded=embedded)))  # plain floats
    rows = predict_rows(model, chosen, relative_images(chosen, data_dir), embedded)
    registry.record_evaluation(domain.name, number, data_version, split, metrics, actor=actor)
    registry.record_predictions(
        domain.name,
        number,
        data_version,
        split,
        rows,
        target_field=model.task.contract.target,
        task=task_evidence(model.task),
        actor=actor,
    )
    return Evaluated(domain.name, number, data_version, split, len(chosen), metrics)
