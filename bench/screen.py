"""Screen prompt configurations on the demo domains' VALIDATION splits (never test).

    python bench/screen.py '{"name": ["preset", {prompt overrides}, {train overrides}], ...}' \
        [--domains retail,manufacturing,medical] [--seeds 3]

How the `mpt` preset was chosen (docs/results-notes.md): every configuration is fitted
with each domain's tuning settings (the same as bench/results.py), and the best epoch's
validation metric is printed, mean over seeds; the test split is not read. Frozen stems
are computed once per domain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from methods.data import DOMAINS, load_splits
from methods.features import cached_prepare

from flows.domains import discover
from mpt_core import TrainConfig, build_prompts, fit, load_backbone

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", help="JSON: name -> [preset, prompt overrides, train overrides]")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--domains-dir", type=Path, default=REPO / "domains")
    args = parser.parse_args()
    torch.set_num_threads(1)
    configs = json.loads(args.configs)
    backbone = load_backbone("shipped")
    found = discover(args.domains_dir, args.domains.split(","))
    for name, domain in found.domains.items():
        data = load_splits(domain, None)
        data.pop("test")  # screening never sees test
        task = domain.config.build_task()
        for label, (preset, overrides, train_overrides) in configs.items():
            values, started = [], time.perf_counter()
            for seed in range(args.seeds):
                model = build_prompts(backbone, preset, task, seed=seed, **overrides)
                prepared = {s: cached_prepare(model, domain, s, data[s]) for s in data}
                config = TrainConfig(
                    **{
                        **domain.config.train_config(),
                        "seed": seed,
                        "progress": False,
                        **train_overrides,
                    }
                )
                result = fit(
                    model,
                    data["train"],
                    data["val"],
                    config,
                    prepared=(prepared["train"], prepared["val"]),
                )
                values.append(result.best_value)
            print(
                f"{name:13s} {label:28s} val {statistics.mean(values):.3f} "
                f"{[round(v, 3) for v in values]} ({model.num_trainable():,} params, "
                f"{time.perf_counter() - started:.0f}s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
