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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mpt_core.featurestore import FeatureStore
from mpt_core.spec import TuneSpec
from mpt_core.training.folds import kfold_splits
from mpt_core.training.search import TrialResult, select_best

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
    """On a worker: the frozen features of train + val put in the node's feature store
    (only those it lacks are computed), and the folds over them.

    Returns {"examples": N examples (images as paths), "folds": [(train indices, val
    indices)], "k": folds}; trials read the features from the same store."""
    from .worker import job_examples, load_ref, node_cache

    spec = job.spec.search
    assert spec is not None, "a search was asked for a job whose spec has none"
    splits = job_examples(job, node_cache())
    train, val = splits["train"], splits["val"]
    model = job.spec.build(load_ref(job.backbone))
    examples = [*train, *val]
    model.prepare_images([e.image for e in examples], store=FeatureStore.from_env())
    index = {id(e): i for i, e in enumerate(examples)}
    k = spec.fold_count(len(val))
    if k == 1:
        folds = [(list(range(len(train))), list(range(len(train), len(examples))))]
    else:
        folds = [
            ([index[id(e)] for e in fold_train], [index[id(e)] for e in fold_val])
            for fold_train, fold_val in kfold_splits(
                train, val, k, spec.seed, contract=job.spec.build_task().contract
            )
        ]
    return {"examples": examples, "folds": folds, "k": k}


def run_search_trial(
    job: TuneJob,
    data: dict[str, Any],
    params: dict[str, Any],
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    *,
    keep_fit: bool = False,
) -> tuple[TrialResult, TuneSpec]:
    """One trial on the cached features (plain: the Tune trainable and tests call it).

    Returns its result and the job's spec with the trial applied (knobs like `depth`
    expand into several fields), which the final tuning uses when this trial wins.
    `keep_fit`: the trial trains on the very train and val splits the final tuning does (one
    fold), so its prompts are kept on this node (`flows.fitted`) for that tuning to reuse."""
    from mpt_core.training.search import run_trial

    from .worker import load_ref

    spec = job.spec
    backbone = load_ref(job.backbone)
    trial = spec.with_trial(params, backbone.slots)
    examples = data["examples"]
    folds = [
        ([examples[i] for i in train], [examples[i] for i in val]) for train, val in data["folds"]
    ]
    kept = None
    if keep_fit:
        from .fitted import FittedPrompts, fit_key

        fits, key = FittedPrompts(), fit_key(replace(job, spec=trial))

        def kept(fold: int, model: Any, fitted: Any) -> None:
            fits.put(key, model, fitted)

    result = run_trial(
        backbone,
        spec.build_task(),
        spec.preset,
        spec.overrides,
        spec.train,
        params,
        folds,
        store=FeatureStore.from_env(),
        on_epoch=on_epoch,
        on_fitted=kept,
    )
    return result, trial


class FoldMean:
    """The running validation metric of a trial over its folds, for an early-stopping
    scheduler: the mean of each finished fold's best and the current fold's best so far."""

    def __init__(self, metric: str) -> None:
        self.key = f"val_{metric}"
        self.best: dict[int, float] = {}

    def __call__(self, fold: int, row: dict[str, Any]) -> float | None:
        value = row.get(self.key)
        if value is None:
            return None
        self.best[fold] = max(self.best.get(fold, float("-inf")), float(value))
        return sum(self.best.values()) / len(self.best)


def _trainable(config: dict[str, Any], job: TuneJob, data: dict[str, Any]) -> None:
    from ray import tune

    running = FoldMean(job.spec.build_task().primary_metric)

    def report(fold: int, row: dict[str, Any]) -> None:
        value = running(fold, row)
        if value is not None:
            tune.report({"value": value, "finished": False})

    early = job.spec.search is not None and job.spec.search.early_stopping
    result, trial = run_search_trial(
        job,
        data,
        config["params"],
        report if early else None,
        keep_fit=data["k"] == 1 and job.spec.train.final != "refit",
    )
    tune.report(
        {
            "value": result.value,
            "fold_values": result.fold_values,
            "spec": trial.to_dict(),
            "finished": True,
        }
    )


def _scheduler(job: TuneJob, k: int):
    """ASHA over epochs (all folds in a row): trials below the best third at a rung stop."""
    from ray.tune.schedulers import ASHAScheduler

    epochs = [job.spec.train.epochs]
    space = job.spec.search.space if job.spec.search else {}
    if "epochs" in space:
        kind, args = next(iter(space["epochs"].items()))
        epochs += [int(a) for a in args] if kind == "choice" else [int(args[1])]
    longest = k * max(epochs) + 1  # + the final report
    return ASHAScheduler(
        time_attr="training_iteration",
        metric="value",
        mode="max",
        max_t=longest,
        grace_period=max(2, min(epochs) // 3),
        reduction_factor=3,
    )


def _progress_callback(domain: str, trials: int, on_progress: Callable[[str, str], None]):
    """A Ray Tune callback that reports trial k/n and the best validation so far."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self) -> None:
            self.finished: set[str] = set()
            self.best: float | None = None

        def _say(self) -> None:
            best = "-" if self.best is None else f"{self.best:.3f}"
            on_progress(domain, f"trial {len(self.finished)}/{trials} done, best validation {best}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("finished"):
                self.best = max(self.best or float("-inf"), float(result["value"]))
            self._say()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.finished.add(trial.trial_id)
            self._say()

        on_trial_error = on_trial_complete

    return Progress()


def search_on_ray(
    jobs: list[TuneJob],
    storage: Path | None = None,
    on_progress: Callable[[str, str], None] | None = None,
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
            early = spec.early_stopping and len(trials) > 1
            tuner = tune.Tuner(
                trainable,
                param_space={"params": tune.grid_search(trials)},
                tune_config=tune.TuneConfig(
                    num_samples=1,
                    max_concurrent_trials=max(1, gpus or int(resources["CPU"])),
                    scheduler=_scheduler(job, data["k"]) if early else None,
                ),
                run_config=tune.RunConfig(
                    name=f"search-{job.domain}-{os.getpid()}",
                    storage_path=str(storage),
                    verbose=0,
                    callbacks=[_progress_callback(job.domain, len(trials), on_progress)]
                    if on_progress
                    else None,
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
        if result.metrics.get("finished"):
            by_params[key] = TrialResult(dict(params), list(result.metrics["fold_values"]))
            specs[key] = TuneSpec.from_dict(result.metrics["spec"])
        else:  # stopped by the scheduler: its running value, never selected
            by_params[key] = TrialResult(dict(params), [result.metrics["value"]], stopped=True)
    if not by_params:
        raise RuntimeError(f"every trial failed: {errors[0] if errors else 'no results'}")
    ordered = [by_params[k] for k in (repr(sorted(t.items())) for t in trials) if k in by_params]
    return ordered, specs
