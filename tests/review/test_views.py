"""The pure view functions behind the pages."""

from __future__ import annotations

from registry import Policy
from registry.policy import evaluate_policy
from review.charts import training_curve_svg
from review.views import (
    MAX_LABELS,
    OTHER,
    class_rows,
    config_diff,
    confusions,
    disagreements,
    with_thumbnails,
)


def test_confusion_counts_per_question_and_caps_many_labels():
    rows = [
        {"image": "a", "question": "q1", "target": "yes", "prediction": "no"},
        {"image": "a", "question": "q2", "target": "red", "prediction": "red"},
        {"image": "b", "question": "q1", "target": "no", "prediction": "no"},
    ]
    q1, q2 = confusions(rows, "v1")
    assert q1.title == "v1: q1" and q1.labels == ["yes", "no"]
    assert q1.counts == [[0, 1], [0, 1]] and (q1.correct, q1.total) == (1, 2)
    assert q2.counts == [[1]] and q2.shade == [[8]]
    many = [
        {"image": str(i), "target": f"caption {i}", "prediction": f"caption {(i + 1) % 60}"}
        for i in range(60)
    ]
    (capped,) = confusions(many[:40], "v2")
    assert len(capped.labels) == MAX_LABELS and capped.labels[-1] == OTHER
    assert sum(map(sum, capped.counts)) == 40  # every example still counted
    assert confusions(many, "v2") == []  # 60 distinct captions: open-ended, no matrix


def test_disagreements_align_by_image_and_question():
    cand = [
        {"image": "a", "question": "q1", "target": "x", "prediction": "x"},
        {"image": "a", "question": "q2", "target": "y", "prediction": "z"},
    ]
    prod = list(reversed([{**cand[0]}, {**cand[1], "prediction": "y"}]))  # other order
    found = disagreements(cand, prod, {"a": b"\xff\xd8\xff"})
    assert (found.kind, found.count, found.total) == ("disagree", 1, 2)
    card = found.cards[0]
    assert (card.inputs, card.candidate, card.production) == ("q2", "z", "y")
    assert card.thumbnail.startswith("data:image/jpeg;base64,")
    alone = disagreements(cand, None, {})
    assert alone.kind == "wrong" and alone.count == 1 and alone.cards[0].thumbnail is None
    filled = with_thumbnails(disagreements(cand, prod, {}), {"a": b"\xff\xd8\xff"})
    assert filled == found  # thumbnails filled in afterwards: the same cards


def test_config_diff_flattens_nested_keys():
    a = {"preset": "coop", "tuning": {"epochs": 10, "lr": 0.002}, "old": 1}
    b = {"preset": "mpt", "tuning": {"epochs": 10, "lr": 0.004}, "new": {"x": 2}}
    assert config_diff(a, b) == [
        ("new.x", None, 2),
        ("old", 1, None),
        ("preset", "coop", "mpt"),
        ("tuning.lr", 0.002, 0.004),
    ]


def test_training_curve_draws_loss_and_the_validation_metric():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": 0.1 * e} for e in range(1, 6)]
    svg = str(training_curve_svg(history))
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 10
    assert training_curve_svg([]) is None
    only_loss = str(training_curve_svg([{"epoch": 1, "train_loss": 0.5}]))
    assert only_loss.count("<polyline") == 1 and "val_" not in only_loss


def test_class_rows_mark_exactly_the_classes_the_policy_says_regress():
    """0.95 - 1.0 is -0.050000000000000044 in floating point: a class that lost exactly the
    allowed 0.05 passes the policy, and the page must not mark it either."""
    production = {"accuracy": 0.9, "per_class_accuracy": {"cat": 1.0, "dog": 0.9, "owl": 0.8}}
    candidate = {"accuracy": 0.92, "per_class_accuracy": {"cat": 0.95, "dog": 0.8, "owl": 0.9}}
    report = evaluate_policy(
        Policy("accuracy", max_class_regression=0.05), candidate, production, data_version="d"
    )
    _, rows = class_rows(candidate, production, 0.05)
    marked = {r.name for r in rows if r.regression}
    assert marked == {"dog"}
    assert "1 class(es) regress" in " ".join(report["reasons"]) and "'dog'" in report["reasons"][-1]
