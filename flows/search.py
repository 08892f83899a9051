"""Per-domain hyper-parameter search on Ray Tune, on the shared frozen backbone.

For a domain whose `tuning.search` asks for trials:

1. one Ray task on a worker materialises the data version, loads the backbone by name
   (sha256 checked), and computes the frozen part of every train and validation image
   once (the stems, or the finished embeddings when no visual prompt exists); they enter
   the object store once;
2. Ray Tune runs the trials in parallel, one CPU (or GPU) each; every trial fits the
   prompts on each fold (the validation split, or k folds of train + val when it is
   small: `mpt_core.training.search`) from those cached features, so no image is read
   again and the backbone is loaded once per trial process;
3. the best trial by mean validation metric (ties: the earlier, the untouched base config
   first) gives the final config, tuned by the ordinary worker pool. The test split never
   enters the search.

The chosen params and every trial's validation metric go into the version's lineage.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mpt_core.spec import TuneSpec
from mpt_core.training.search import TrialResult, kfold_splits, select_best

from .jobs import Failure, TuneJob


@dataclass(frozen=True)
class SearchOutcome:
    """What a search found: the chosen trial, every trial, and the job to tune with it."""

    domain: str
    job: TuneJob
    lineage: dict[str, Any]
    """What the registry keeps: every trial, the chosen params, their value, folds, space."""
    seconds: float = 0.0

    @property
    def best(self) -> dict[str, Any]:
        return self.lineage["chosen"]

    @property
    def trials(self) -> list[dict[str, Any]]:
        return self.lineage["trials"]

    @property
    def folds(self) -> int:
        return self.lineage["folds"]


def search_data(job: TuneJob) -> dict[str, Any]:
    """On a worker: the cached frozen features of train + val and the folds over them.

    Returns {"prepared": (N, ...) tensor, "examples": N examples (images as paths),
    "folds": [(train indices, val indices)], "k": folds}."""
    from .worker import job_examples, load_ref, node_cache

    spec = job.spec.search
    assert spec is not None, "a search was asked for a job whose spec has none"
    splits = job_examples(job, node_cache())
    train, val = splits["train"], splits["val"]
    model = job.spec.build(load_ref(job.backbone))
    examples = [*train, *val]
    prepared = model.prepare_images([e.image for e in examples])
    index = {id(e): i for i, e in enumerate(examples)}
    k = spec.fold_count(len(val))
    if k == 1:
        folds = [(list(range(len(train))), list(range(len(train), len(examples))))]
    else:
        folds = [
            ([index[id(e)] for e in fold_train], [index[id(e)] for e in fold_val])
            for fold_train, fold_val in kfold_splits(train, val, k, spec.seed)
        ]
    return {"prepared": prepared, "examples": examples, "folds": folds, "k": k}


def run_search_trial(
    job: TuneJob, data: dict[str, Any], params: dict[str, Any]
) -> tuple[TrialResult, TuneSpec]:
    """One trial on the cached features (plain: the Tune trainable and tests call it).

    Returns its result and the job's spec with the trial applied (knobs like `depth`
    expand into several fields), which the final tuning uses when this trial wins."""
    from mpt_core.training.search import run_trial

    from .worker import load_ref

    spec = job.spec
    backbone = load_ref(job.backbone)
    trial = spec.with_trial(params, backbone.slots)
    examples, prepared = data["examples"], data["prepared"]
    position = {id(e): i for i, e in enumerate(examples)}
    folds = [
        ([examples[i] for i in train], [examples[i] for i in val]) for train, val in data["folds"]
    ]

    def cached(model, subset):
        return prepared[[position[id(e)] for e in subset]]

    result = run_trial(
        backbone,
        spec.build_task(),
        spec.preset,
        spec.overrides,
        spec.train,
        params,
        folds,
        prepare=cached,
    )
    return result, trial


def _trainable(config: dict[str, Any], job: TuneJob, data: dict[str, Any]) -> None:
    from ray import tune

    result, trial = run_search_trial(job, data, config["params"])
    tune.report({"value": result.value, "fold_values": result.fold_values, "spec": trial.to_dict()})


def search_on_ray(
    jobs: list[TuneJob], storage: Path | None = None
) -> dict[str, SearchOutcome | Failure]:
    """Search every job's space on the connected Ray cluster: domain -> outcome, or why it
    failed. Call inside `cluster.ray.ray_session`."""
    import time

    import ray
    from ray import tune

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    per_trial = {"gpu": 1, "cpu": 0} if gpus else {"cpu": 1}
    prepare = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(search_data)
    out: dict[str, SearchOutcome | Failure] = {}
    storage = Path(storage or tempfile.mkdtemp(prefix="mpt-tune-"))
    for job in jobs:
        started = time.perf_counter()
        try:
            spec = job.spec.search
            data = ray.get(prepare.remote(job))
            trials = spec.trial_params()
            trainable = tune.with_resources(
                tune.with_parameters(_trainable, job=job, data=data), per_trial
            )
            tuner = tune.Tuner(
                trainable,
                param_space={"params": tune.grid_search(trials)},
                tune_config=tune.TuneConfig(
                    num_samples=1, max_concurrent_trials=max(1, gpus or int(resources["CPU"]))
                ),
                run_config=tune.RunConfig(
                    name=f"search-{job.domain}-{os.getpid()}",
                    storage_path=str(storage),
                    verbose=0,
                ),
            )
            grid = tuner.fit()
            results, chosen = _trial_results(grid, trials)
        except Exception as exc:  # one domain's search never stops the others
            out[job.domain] = Failure(
                job.domain, "search", f"search failed: {type(exc).__name__}: {exc}"
            )
            continue
        best = select_best(results)
        out[job.domain] = SearchOutcome(
            job.domain,
            replace(job, spec=chosen[repr(sorted(best.params.items()))]),
            {
                "trials": [r.to_dict() for r in results],
                "chosen": best.params,
                "value": best.value,
                "folds": data["k"],
                "space": spec.space,
                "seed": spec.seed,
            },
            time.perf_counter() - started,
        )
    return out


def _trial_results(
    grid, trials: list[dict[str, Any]]
) -> tuple[list[TrialResult], dict[str, TuneSpec]]:
    """Tune's results back in trial order (the base config first), and each trial's spec."""
    by_params: dict[str, TrialResult] = {}
    specs: dict[str, TuneSpec] = {}
    errors = []
    for result in grid:
        if result.error is not None:
            errors.append(str(result.error).strip().splitlines()[-1])
            continue
        params = result.config["params"]
        key = repr(sorted(params.items()))
        by_params[key] = TrialResult(dict(params), list(result.metrics["fold_values"]))
        specs[key] = TuneSpec.from_dict(result.metrics["spec"])
    if not by_params:
        raise RuntimeError(f"every trial failed: {errors[0] if errors else 'no results'}")
    ordered = [by_params[k] for k in (repr(sorted(t.items())) for t in trials) if k in by_params]
    return ordered, specs
