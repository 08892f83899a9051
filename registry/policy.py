"""Promotion policy: is a candidate good enough to replace production?

Both versions must have been evaluated on the same split of the same data version; the
report says why a check failed, and is stored with the promotion request. The shadow rule
is checked when the request is approved, on what the candidate answered of production's
traffic since the request was opened (`check_shadow`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Z_95 = 1.959964
"""The normal quantile of a two-sided 95 % interval."""


@dataclass(frozen=True)
class ShadowRule:
    """From `promotion.shadow`: what the candidate must have shown on production's traffic
    before a reviewer may approve it (without an override)."""

    min_requests: int = 0
    """Items of production's traffic the candidate must have answered as a shadow."""
    min_agreement: float = 0.0
    """Share of them on which it must agree with production (top-1 / exact match)."""


@dataclass(frozen=True)
class Policy:
    """From a domain's `promotion:` section."""

    metric: str
    min_improvement: float = 0.0
    max_class_regression: float = 0.05
    group_metric: str | None = None
    """The per-group metrics dict checked for regressions ({class: accuracy}), as the task's
    contract names it; None = every dict-valued metric both versions report."""
    shadow: ShadowRule | None = None
    """Live evidence required at approval; None: none."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default): unlike the normal
    approximation it stays inside [0, 1] and is honest for small samples and for
    proportions near 0 or 1. None without observations."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def check_shadow(rule: dict[str, Any] | ShadowRule | None, requests: int, agreed: int) -> dict:
    """The shadow rule against what the candidate answered: a JSON-able report with
    `passed` and, where it failed, `reasons` that say what is missing and what to do."""
    if isinstance(rule, dict):
        rule = ShadowRule(**rule)
    agreement = agreed / requests if requests else None
    report: dict[str, Any] = {
        "rule": asdict(rule) if rule else None,
        "requests": requests,
        "agreed": agreed,
        "agreement": agreement,
        "interval": wilson_interval(agreed, requests),
        "reasons": [],
    }
    if rule is None:
        report["passed"] = True
        return report
    if requests < rule.min_requests:
        report["reasons"].append(
            f"the candidate answered {requests} shadow request(s) of production's traffic; "
            f"the policy needs at least {rule.min_requests}: wait for more traffic (or raise "
            "monitoring.shadow_fraction in domain.yaml)"
        )
    if requests and agreement is not None and agreement < rule.min_agreement:
        report["reasons"].append(
            f"the candidate agrees with production on {agreement:.1%} of {requests} shadow "
            f"request(s); the policy needs at least {rule.min_agreement:.1%}"
        )
    report["passed"] = not report["reasons"]
    return report


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
