"""What a compared method is: one call per (backbone, domain, splits, train config, seed)
that returns a `Run`, so the runner, the table and the plot never name a method."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Protocol

from flows.domains import Domain
from mpt_core import Example, TrainConfig
from mpt_core.backbones.base import Backbone

Splits = dict[str, list[Example]]
"""A domain's examples per split ("train", "val", "test"), images loaded."""


def mean_std(values: list[float]) -> str:
    """ "mean ± std" of a method's test metrics over seeds or draws (std 0 for one value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


@dataclass
class Run:
    """One method and seed on one domain: the test metric and what training cost."""

    metric: float
    trainable: int
    seconds: float
    memory_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


class Method(Protocol):
    """Fit on `data["train"]`, keep the epoch best on `data["val"]`, score `data["test"]`
    once, with `cfg`'s budget (epochs, batch size) and `seed`."""

    def __call__(
        self, backbone: Backbone, domain: Domain, data: Splits, cfg: TrainConfig, seed: int
    ) -> Run: ...
