"""registry.metrics: one rule for the metric a version is judged by."""

from __future__ import annotations

from registry.metrics import main_metric, tuned_metric

RETRIEVAL = {"i2t_r1": 0.4, "i2t_r5": 0.8, "t2i_r1": 0.5, "r1_mean": 0.45}
CLASSIFICATION = {"accuracy": 0.9, "macro_f1": 0.8, "per_class_accuracy": {"bag": 1.0}}


def test_the_policy_metric_wins_when_reported_then_the_task_metric_then_the_first_scalar():
    assert main_metric(CLASSIFICATION, "accuracy", "macro_f1") == "macro_f1"
    assert main_metric(RETRIEVAL, "r1_mean") == "r1_mean"  # stored last, still the task's
    assert main_metric(RETRIEVAL, "r1_mean", "not_reported") == "r1_mean"
    assert main_metric(RETRIEVAL, None) == "i2t_r1"
    assert main_metric({"passed": True, "per_class": {}, "bleu4": 0.2}, "cider") == "bleu4"
    assert main_metric({"per_class": {"a": 1.0}}, None) is None
    assert main_metric(None, "accuracy", "accuracy") is None


def test_the_tuned_metric_is_the_validation_key_of_the_training_history():
    history = [{"epoch": 1, "train_loss": 0.3, "lr": 1e-3, "val_r1_mean": 0.4}]
    assert tuned_metric(history) == "r1_mean"
    assert tuned_metric([{"epoch": 1, "train_loss": 0.3}]) is None
    assert tuned_metric([]) is None and tuned_metric(None) is None
