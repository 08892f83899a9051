"""Promotion policy: is a candidate good enough to replace production?

Both versions must have been evaluated on the same split of the same data version; the
report says why a check failed, and is stored with the promotion request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PER_CLASS_KEYS = ("per_class_accuracy", "per_question_accuracy")


@dataclass(frozen=True)
class Policy:
    """From a domain's `promotion:` section."""

    metric: str
    min_improvement: float = 0.0
    max_class_regression: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_class(metrics: dict[str, Any]) -> dict[str, float]:
    for key in PER_CLASS_KEYS:
        if isinstance(metrics.get(key), dict):
            return metrics[key]
    return {}


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
    cand_classes, prod_classes = _per_class(candidate), _per_class(production)
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
        n: v["delta"] for n, v in per_class.items() if -v["delta"] > policy.max_class_regression
    }
    if regressed:
        worst = min(regressed, key=regressed.__getitem__)
        report["reasons"].append(
            f"{len(regressed)} class(es) regress by more than {policy.max_class_regression:.4f}; "
            f"worst: {worst!r} {regressed[worst]:+.4f}"
        )
    report["passed"] = not report["reasons"]
    return report
