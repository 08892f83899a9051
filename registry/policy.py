"""Promotion policy: is a candidate good enough to replace production?

Both versions must have been evaluated on the same split of the same data version; the
report says why a check failed, and is stored with the promotion request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Policy:
    """From a domain's `promotion:` section."""

    metric: str
    min_improvement: float = 0.0
    max_class_regression: float = 0.05
    group_metric: str | None = None
    """The per-group metrics dict checked for regressions ({class: accuracy}), as the task's
    contract names it; None = every dict-valued metric both versions report."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_group(metrics: dict[str, Any], key: str | None = None) -> dict[str, float]:
    """{group: value} from the per-group metrics dict `key` (or from every dict-valued
    metric, keys prefixed by the metric name when there are several)."""
    if key is not None:
        found = metrics.get(key)
        return dict(found) if isinstance(found, dict) else {}
    dicts = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    if len(dicts) == 1:
        return dict(next(iter(dicts.values())))
    return {f"{k}:{g}": value for k, d in dicts.items() for g, value in d.items()}


def regresses(delta: float, max_regression: float) -> bool:
    """A group (class, question) whose metric changed by `delta` lost more than allowed.

    A small tolerance: 0.95 - 1.0 is -0.050000000000000044 in floating point, and a group
    that lost exactly the allowed amount has not regressed by more than it."""
    return -delta > max_regression + 1e-9


def evaluate_policy(
    policy: Policy,
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    *,
    data_version: str,
    split: str = "test",
) -> dict[str, Any]:
    """A JSON-able report; `report["passed"]` is the verdict, `report["reasons"]` why not."""
    report: dict[str, Any] = {
        "policy": policy.to_dict(),
        "data_version": data_version,
        "split": split,
        "reasons": [],
    }
    if policy.metric not in candidate:
        report["reasons"].append(
            f"the candidate has no {policy.metric!r} on {split} of data version {data_version}"
        )
        report["passed"] = False
        return report
    report["candidate"] = candidate[policy.metric]
    if production is None:
        report["production"] = None
        report["note"] = "no production version yet: the first promotion needs no baseline"
        report["passed"] = True
        return report
    if policy.metric not in production:
        report["reasons"].append(
            f"production has no {policy.metric!r} on {split} of data version {data_version}; "
            "evaluate it on this data version first"
        )
        report["passed"] = False
        return report
    delta = candidate[policy.metric] - production[policy.metric]
    report.update(production=production[policy.metric], delta=delta)
    if delta < policy.min_improvement:
        report["reasons"].append(
            f"{policy.metric} improves by {delta:+.4f}; the policy needs at least "
            f"{policy.min_improvement:+.4f}"
        )
    cand_classes = per_group(candidate, policy.group_metric)
    prod_classes = per_group(production, policy.group_metric)
    per_class = {
        name: {
            "candidate": cand_classes[name],
            "production": prod,
            "delta": cand_classes[name] - prod,
        }
        for name, prod in prod_classes.items()
        if name in cand_classes
    }
    report["per_class"] = per_class
    regressed = {
        n: v["delta"]
        for n, v in per_class.items()
        if regresses(v["delta"], policy.max_class_regression)
    }
    if regressed:
        worst = min(regressed, key=regressed.__getitem__)
        report["reasons"].append(
            f"{len(regressed)} class(es) regress by more than {policy.max_class_regression:.4f}; "
            f"worst: {worst!r} {regressed[worst]:+.4f}"
        )
    report["passed"] = not report["reasons"]
    return report
