"""Which of a version's metrics it is judged by: one rule for the CLI and the pages.

The registry knows no tasks (importing mpt_core's task registry would import torch), so
the task contract's primary metric comes in as an argument: the CLI takes it from the
contract, the review pages from the version's stored training history (the trainer
validates every epoch on the contract's primary metric, `val_<metric>`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

VALIDATED = "val_"
"""Prefix of the per-epoch validation metric in a version's training history."""


def scalars(metrics: Mapping[str, Any] | None) -> list[str]:
    """The scalar metrics (numbers, not flags or per-group dicts), in stored order."""
    return [
        k
        for k, v in (metrics or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]


def main_metric(
    metrics: Mapping[str, Any] | None,
    task_metric: str | None = None,
    policy_metric: str | None = None,
) -> str | None:
    """The metric a version is judged by: the promotion policy's metric if `metrics`
    reports it, else the task contract's primary metric (`task_metric`) if reported, else
    the first scalar metric in stored order; None if there is no scalar metric."""
    reported = scalars(metrics)
    for wanted in (policy_metric, task_metric):
        if wanted and wanted in reported:
            return wanted
    return reported[0] if reported else None


def tuned_metric(history: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The metric a version's tuning run validated on (its task's primary metric), from
    the `val_<metric>` key of its stored training history; None without one."""
    for row in history or ():
        for key in row:
            if key.startswith(VALIDATED):
                return key.removeprefix(VALIDATED)
    return None
