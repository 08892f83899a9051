"""What the pages show, computed from registry records only (pure functions, no HTTP):
metric and per-class deltas, confusion matrices and disagreements from stored
predictions, config diffs, lineage, the domains overview.

Which evidence a request page shows comes from what the task's contract says about the
stored predictions (`registry.TaskEvidence`, stored with them), never from a task's name:
predictions from a declared set get confusion matrices; generated text gets the references
and both versions' texts side by side, each example with its own score, those the
candidate lost most on first; the policy line states the rule the stored policy applies.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

from registry import (
    PRODUCTION,
    DataVersionInfo,
    HistoryEntry,
    PredictionSet,
    PromptRegistry,
    RequestInfo,
    TaskEvidence,
    VersionInfo,
)
from registry.metrics import main_metric, tuned_metric
from registry.policy import per_group, regresses

from .charts import training_curve_svg

MAX_SHOWN = 48
MAX_LABELS = 20
"""A confusion matrix shows the most frequent true labels; the rest count as '(other)'."""
OTHER = "(other)"
OPEN_ENDED = 50
"""More distinct true values than this (captions, open answers): no confusion matrix."""
DOCS_INDEX = "data_docs/index.html"
SHADES = 8


# ---------------------------------------------------------------------- small pieces
@dataclass(frozen=True)
class MetricRow:
    name: str
    production: float | None
    candidate: float | None
    primary: bool = False

    @property
    def delta(self) -> float | None:
        if self.production is None or self.candidate is None:
            return None
        return self.candidate - self.production


@dataclass(frozen=True)
class ClassRow:
    name: str
    production: float | None
    candidate: float
    regression: bool
    """Loses more than the policy's max_class_regression."""

    @property
    def delta(self) -> float | None:
        return None if self.production is None else self.candidate - self.production


@dataclass(frozen=True)
class Confusion:
    """Counts of (target, prediction); `shade[i][j]` in 0..SHADES for the cell colour."""

    title: str
    labels: list[str]
    counts: list[list[int]]
    shade: list[list[int]]
    correct: int
    total: int


PREDICTION_KEYS = ("image", "target", "prediction", "score", "quality")
"""What every stored prediction row has; any other key is one of the task's inputs (the
question of a VQA row), as the task's contract names them."""


def row_inputs(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The task inputs a stored prediction row was predicted from, besides the image."""
    return tuple((k, v) for k, v in row.items() if k not in PREDICTION_KEYS)


def inputs_text(row: dict[str, Any]) -> str | None:
    """The row's inputs as one line for a reader ('Is there a defect?'), None without any."""
    values = [str(v) for _, v in row_inputs(row)]
    return " · ".join(values) or None


@dataclass(frozen=True)
class ExampleCard:
    image: str
    inputs: str | None
    """What the example asked besides the image (its question), as one line."""
    target: str
    candidate: str
    production: str | None
    thumbnail: str | None
    """data: URI of the stored JPEG, or None if none was stored."""


@dataclass(frozen=True)
class Disagreements:
    kind: str
    """'disagree' (candidate vs production) or 'wrong' (candidate vs truth, no production)."""
    count: int
    total: int
    cards: list[ExampleCard]


def _numbers(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def metric_rows(
    candidate: dict[str, Any] | None, production: dict[str, Any] | None, primary: str | None
) -> list[MetricRow]:
    cand, prod = _numbers(candidate), _numbers(production)
    names = sorted(set(cand) | set(prod), key=lambda n: (n != primary, n))
    return [MetricRow(n, prod.get(n), cand.get(n), n == primary) for n in names]


def group_key(metrics: dict[str, Any] | None, declared: str | None) -> str | None:
    """The per-group metrics dict the policy checks: the one it names, else the only one."""
    if declared:
        return declared
    dicts = [k for k, v in (metrics or {}).items() if isinstance(v, dict)]
    return dicts[0] if len(dicts) == 1 else None


def class_rows(
    candidate: dict[str, Any] | None,
    production: dict[str, Any] | None,
    max_regression: float,
    group_metric: str | None = None,
) -> tuple[str | None, list[ClassRow]]:
    """Per-group (class, question) rows, a regression being a loss beyond the policy's
    threshold, read from the policy's group metric as the registry's policy reads it."""
    key = group_key(candidate, group_metric)
    cand = per_group(candidate or {}, key)
    prod = per_group(production or {}, key)
    rows = []
    for name, value in cand.items():
        base = prod.get(name)
        regressed = base is not None and regresses(value - base, max_regression)
        rows.append(ClassRow(name, base, value, regressed))
    return key, rows


def confusions(
    rows: list[dict[str, Any]] | None, title: str, task: TaskEvidence | None = None
) -> list[Confusion]:
    """One matrix per distinct input (per question on VQA), else one; labels: targets
    first, then predictions. None for generated text; for predictions from a declared
    (closed) set always; otherwise (candidates ranked, or rows stored without their task's
    evidence) not for open-ended groups (more than OPEN_ENDED distinct targets)."""
    if not rows or (task is not None and task.generates_text):
        return []
    closed = task is not None and task.closed
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row_inputs(row), []).append(row)
    out = []
    for items in groups.values():
        if not closed and len({r["target"] for r in items}) > OPEN_ENDED:
            continue
        seen = [r["target"] for r in items] + [r["prediction"] for r in items]
        labels = list(dict.fromkeys(seen))
        if len(labels) > MAX_LABELS:  # e.g. retrieval over hundreds of captions
            frequent = Counter(r["target"] for r in items).most_common(MAX_LABELS - 1)
            keep = {label for label, _ in frequent}
            labels = [label for label in labels if label in keep] + [OTHER]
        index = {label: i for i, label in enumerate(labels)}
        counts = [[0] * len(labels) for _ in labels]
        for r in items:
            t, p = index.get(r["target"], index.get(OTHER)), index.get(r["prediction"])
            counts[t][index[OTHER] if p is None else p] += 1
        peak = max(max(row) for row in counts) or 1
        shade = [[0 if c == 0 else max(1, round(SHADES * c / peak)) for c in row] for row in counts]
        correct = sum(counts[i][i] for i in range(len(labels)))
        asked = inputs_text(items[0])
        name = title if asked is None else f"{title}: {asked}"
        out.append(Confusion(name, labels, counts, shade, correct, len(items)))
    return out


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def disagreements(
    candidate: list[dict[str, Any]],
    production: list[dict[str, Any]] | None,
    thumbnails: dict[str, bytes],
) -> Disagreements:
    """Examples where the two versions predict differently (aligned by image and inputs),
    or, with no production predictions, where the candidate is wrong."""
    prod = None
    if production is not None:
        prod = {(r["image"], row_inputs(r)): r["prediction"] for r in production}
    cards = []
    for row in candidate:
        key = (row["image"], row_inputs(row))
        other = row["target"] if prod is None else prod.get(key)
        if other is None or row["prediction"] == other:
            continue
        thumb = thumbnails.get(row["image"])
        cards.append(
            ExampleCard(
                row["image"],
                inputs_text(row),
                row["target"],
                row["prediction"],
                None if prod is None else other,
                None if thumb is None else data_uri(thumb),
            )
        )
    kind = "wrong" if prod is None else "disagree"
    return Disagreements(kind, len(cards), len(candidate), cards[:MAX_SHOWN])


@dataclass(frozen=True)
class TextCard:
    """One input of a task that generates text: what the references say, what each version
    wrote, and how each scored on the task's per-example metric."""

    image: str
    inputs: str | None
    references: list[str]
    candidate: str
    production: str | None
    candidate_quality: float | None
    production_quality: float | None
    thumbnail: str | None = None

    @property
    def delta(self) -> float | None:
        if self.candidate_quality is None or self.production_quality is None:
            return None
        return self.candidate_quality - self.production_quality


@dataclass(frozen=True)
class TextComparison:
    """Generated text side by side, the inputs the candidate lost most on first (with no
    production: its lowest-scoring ones)."""

    metric: str | None
    """The task's per-example metric (`TaskEvidence.example_metric`) the order follows."""
    total: int
    """Distinct inputs (an image, or an image and its question) compared."""
    lost: int
    """How many the candidate scores lower on than production."""
    cards: list[TextCard]


def _by_input(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Rows grouped by what was asked (the image and the task's inputs), in first-seen order:
    a generative task writes one text per group, and every row's target is a reference."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["image"], row_inputs(row)), []).append(row)
    return groups


def text_comparison(
    task: TaskEvidence, candidate: list[dict[str, Any]], production: list[dict[str, Any]] | None
) -> TextComparison:
    """One card per input, production aligned by image and inputs (no thumbnails yet)."""
    prod = None if production is None else _by_input(production)
    cards = []
    for key, rows in _by_input(candidate).items():
        other = None if prod is None else (prod.get(key) or [None])[0]
        cards.append(
            TextCard(
                rows[0]["image"],
                inputs_text(rows[0]),
                list(dict.fromkeys(r["target"] for r in rows)),
                rows[0]["prediction"],
                None if other is None else other["prediction"],
                rows[0].get("quality"),
                None if other is None else other.get("quality"),
            )
        )

    def order(card: TextCard) -> tuple[float, float]:
        if card.delta is not None:
            return (0, card.delta)
        if card.candidate_quality is not None:
            return (1, card.candidate_quality)
        return (2, 0.0)

    ranked = sorted(cards, key=order)  # stable: ties keep the split's order
    lost = sum(1 for c in cards if c.delta is not None and c.delta < 0)
    return TextComparison(task.example_metric, len(cards), lost, ranked[:MAX_SHOWN])


@dataclass(frozen=True)
class PolicyRule:
    """The rule a request's stored policy applies, as the page states it."""

    metric: str
    min_improvement: float
    max_regression: float
    group_metric: str | None
    """The per-group metric the policy checks for regressions (from the task's contract)."""
    groups_checked: bool
    """Some per-group values were compared (a policy with no group metric of its own
    checks every dict-valued metric both versions report; a task may report none)."""

    @property
    def group_label(self) -> str | None:
        return None if self.group_metric is None else group_label(self.group_metric)


def group_label(key: str) -> str:
    """What a per-group metric groups by: 'per_question_type_accuracy' -> 'question type',
    'per_class_accuracy' -> 'class'."""
    return key.removeprefix("per_").rsplit("_", 1)[0].replace("_", " ")


def policy_rule(report: dict[str, Any]) -> PolicyRule | None:
    policy = report.get("policy") or {}
    if "metric" not in policy:
        return None
    return PolicyRule(
        policy["metric"],
        float(policy.get("min_improvement", 0.0)),
        float(policy.get("max_class_regression", 0.05)),
        policy.get("group_metric"),
        bool(report.get("per_class")),
    )


def with_thumbnails(
    found: Disagreements | TextComparison, thumbnails: dict[str, bytes]
) -> Disagreements | TextComparison:
    """The same cards, each with its stored thumbnail (if one was stored)."""
    cards = [
        replace(c, thumbnail=data_uri(thumbnails[c.image])) if c.image in thumbnails else c
        for c in found.cards
    ]
    return replace(found, cards=cards)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: value}


def config_diff(a: dict[str, Any] | None, b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, production value, candidate value) for every dotted key that differs."""
    fa, fb = flatten(a or {}), flatten(b)
    missing = object()
    rows = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, missing), fb.get(key, missing)
        if va != vb:
            rows.append((key, None if va is missing else va, None if vb is missing else vb))
    return rows


def local_report_dir(report_uri: str | None) -> Path | None:
    """The report directory if it is a path on this machine (not s3:// or similar)."""
    if not report_uri:
        return None
    scheme = urlsplit(report_uri).scheme
    if scheme and scheme != "file" and len(scheme) > 1:  # "C:" stays a path
        return None
    path = Path(urlsplit(report_uri).path if scheme == "file" else report_uri)
    return path if path.is_dir() else None


def docs_url(domain: str, data: DataVersionInfo | None) -> str | None:
    root = local_report_dir(data.report_uri) if data else None
    if root is None or not (root / DOCS_INDEX).is_file():
        return None
    return f"/domains/{domain}/data/{data.md5}/report/{DOCS_INDEX}"


def primary_metric(
    request: RequestInfo | None, version: VersionInfo | None, metrics: dict[str, Any] | None
) -> str | None:
    """registry.metrics.main_metric: the request's policy metric, else the version's stored
    primary metric (on versions registered before it was stored: the task metric its tuning
    validated on), else its first scalar metric."""
    policy = ((request.policy_report if request else {}) or {}).get("policy", {}).get("metric")
    task = (version.primary_metric or tuned_metric(version.training_history)) if version else None
    return main_metric(metrics, task, policy)


# ---------------------------------------------------------------------- the request page
@dataclass
class RequestView:
    request: RequestInfo
    candidate: VersionInfo
    production: VersionInfo | None
    current: int | None
    """Where the alias points now (it may have moved since the request was opened)."""
    split: str
    data: DataVersionInfo | None
    docs_url: str | None
    primary: str | None
    max_regression: float
    metrics: list[MetricRow]
    class_key: str | None
    classes: list[ClassRow]
    confusion_candidate: list[Confusion]
    confusion_production: list[Confusion]
    has_candidate_predictions: bool
    has_production_predictions: bool
    disagreements: Disagreements | None
    curve: Markup | None
    config_diff: list[tuple[str, Any, Any]]
    protected: bool
    notes: list[str] = field(default_factory=list)
    task: TaskEvidence | None = None
    """What the task's contract says about the stored predictions (None: not stored)."""
    texts: TextComparison | None = None
    """Generated text side by side (tasks that generate text)."""
    rule: PolicyRule | None = None

    @property
    def primary_row(self) -> MetricRow | None:
        return next((row for row in self.metrics if row.primary), None)

    @property
    def group_name(self) -> str:
        """What the per-group table groups by, from its metric: 'per_question_accuracy' ->
        'question', 'per_class_accuracy' -> 'class'."""
        return group_label(self.class_key or "per_class_accuracy")

    @property
    def superseded(self) -> bool:
        """Pending, but the alias moved since it was opened: approving it is refused."""
        return self.request.status == "pending" and self.current != self.request.base_version

    @property
    def renew_command(self) -> str:
        """The command that opens the request replacing this stale one."""
        r = self.request
        alias = "" if r.alias == PRODUCTION else f" --alias {r.alias}"
        return f"mpt promote request {r.domain} {r.version}{alias}"


def request_view(reg: PromptRegistry, request_id: int) -> RequestView:
    r = reg.get_request(request_id)
    cand = reg.get_version(r.domain, r.version)
    prod = reg.get_version(r.domain, r.base_version) if r.base_version else None
    report = r.policy_report or {}
    split = report.get("split", "test")
    md5 = report.get("data_version") or cand.data_version
    data = reg.data_version(r.domain, md5)
    cand_metrics = cand.metrics(split, md5)
    prod_metrics = prod.metrics(split, md5) if prod else None
    policy = report.get("policy", {})
    max_regression = float(policy.get("max_class_regression", 0.05))
    primary = primary_metric(r, cand, cand_metrics)
    class_key, classes = class_rows(
        cand_metrics, prod_metrics, max_regression, policy.get("group_metric")
    )
    cand_pred = reg.predictions(r.domain, cand.number, md5, split)
    prod_pred = reg.predictions(r.domain, prod.number, md5, split) if prod else None
    task = _task_of(cand_pred, prod_pred)
    found = texts = None
    if cand_pred is not None and task is not None and task.generates_text:
        prod_rows = prod_pred.rows if prod_pred else None
        texts = text_comparison(task, cand_pred.rows, prod_rows)
        thumbs = reg.thumbnails(r.domain, md5, split, [c.image for c in texts.cards])
        texts = with_thumbnails(texts, thumbs)
    elif cand_pred is not None:
        prod_rows = prod_pred.rows if prod_pred else None
        found = disagreements(cand_pred.rows, prod_rows, {})
        thumbs = reg.thumbnails(r.domain, md5, split, [c.image for c in found.cards])
        found = with_thumbnails(found, thumbs)
    notes = []
    if prod and prod_metrics is None:
        notes.append(
            f"v{prod.number} was not evaluated on {split} of data version {md5[:12]}; "
            "the policy could not compare like with like"
        )
    return RequestView(
        request=r,
        candidate=cand,
        production=prod,
        current=reg.resolve(r.domain, r.alias),
        split=split,
        data=data,
        docs_url=docs_url(r.domain, data),
        primary=primary,
        max_regression=max_regression,
        metrics=metric_rows(cand_metrics, prod_metrics, primary),
        class_key=class_key,
        classes=classes,
        confusion_candidate=confusions(
            cand_pred.rows if cand_pred else None, f"v{cand.number}", task
        ),
        confusion_production=confusions(
            prod_pred.rows if prod_pred else None, f"v{prod.number}" if prod else "", task
        ),
        has_candidate_predictions=cand_pred is not None,
        has_production_predictions=prod_pred is not None,
        disagreements=found,
        curve=training_curve_svg(cand.training_history),
        config_diff=config_diff(prod.config if prod else None, cand.config) if prod else [],
        protected=r.alias in reg.protected_aliases(r.domain),
        notes=notes,
        task=task,
        texts=texts,
        rule=policy_rule(report),
    )


def _task_of(*sets: PredictionSet | None) -> TaskEvidence | None:
    """What the task's contract says about the stored predictions, from whichever set kept it."""
    return next((p.task for p in sets if p is not None and p.task is not None), None)


# ---------------------------------------------------------------------- overview and history
@dataclass(frozen=True)
class DomainRow:
    name: str
    production: int | None
    metric: str | None
    value: float | None
    last_version: VersionInfo
    pending: list[RequestInfo]


def overview(reg: PromptRegistry) -> list[DomainRow]:
    versions = reg.list_versions()
    production = reg.alias_targets()
    requests = reg.requests()
    pending = [r for r in requests if r.status == "pending"]
    latest_request = {r.domain: r for r in requests}
    out = []
    for name in dict.fromkeys(v.domain for v in versions):  # the domains with a version
        mine = [v for v in versions if v.domain == name]
        prod_number = production.get(name)
        prod = next((v for v in mine if v.number == prod_number), None)
        test = prod.metrics("test") if prod else None
        judged = prod if test else mine[-1]
        metric = primary_metric(latest_request.get(name), judged, judged.metrics("test"))
        value = (test or {}).get(metric) if metric else None
        out.append(
            DomainRow(
                name,
                prod_number,
                metric,
                value if isinstance(value, int | float) else None,
                max(mine, key=lambda v: v.created_at),
                [r for r in pending if r.domain == name],
            )
        )
    return out


@dataclass(frozen=True)
class VersionRow:
    version: VersionInfo
    metric: str | None
    value: float | None
    was_production: bool


def version_rows(
    versions: list[VersionInfo], history: list[HistoryEntry], requests: list[RequestInfo]
) -> list[VersionRow]:
    """One domain's versions, newest first, from what the domain page already fetched:
    its versions, its alias history (every alias) and its requests."""
    ever = {h.to_version for h in history if h.alias == PRODUCTION}
    last = versions[-1]
    metric = primary_metric(requests[-1] if requests else None, last, last.metrics("test"))
    rows = []
    for v in reversed(versions):
        value = (v.metrics("test") or {}).get(metric) if metric else None
        rows.append(
            VersionRow(
                v, metric, value if isinstance(value, int | float) else None, v.number in ever
            )
        )
    return rows
