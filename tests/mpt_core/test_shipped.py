"""The real `shipped` backbone on real Fashion-MNIST images (Debian dataset-fashion-mnist)."""

from __future__ import annotations

import pytest

from mpt_core import (
    FAMILIES,
    ClassificationTask,
    TrainConfig,
    build_prompts,
    evaluate,
    fit,
    load_backbone,
    load_prompts,
    save_prompts,
)
from mpt_core.samples import FASHION_MNIST_DIR, fashion_mnist
from mpt_core.support import family_presets

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not FASHION_MNIST_DIR.exists(),
        reason="apt-get install dataset-fashion-mnist (make setup does)",
    ),
]
CLASSES = ("trouser", "bag", "sneaker")


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("shipped")


def test_loads_offline_frozen_with_a_stable_identity(backbone):
    assert backbone.identity.family == "shipped"
    assert backbone.identity.name == FAMILIES.get("shipped").default_label  # `mpt backbones`
    assert len(backbone.identity.weights_sha256) == 64
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    assert 0.0 < backbone.bridge_heldout_identification <= 1.0
    for preset in family_presets("shipped"):
        model = build_prompts(backbone, preset, ClassificationTask(CLASSES))
        assert model.trainable_fraction() < 0.03, preset


def test_zero_shot_beats_chance_and_short_tuning_improves(backbone, tmp_path):
    task = ClassificationTask(CLASSES)
    train = fashion_mnist("train", 8, CLASSES, seed=0)
    val = fashion_mnist("train", 4, CLASSES, seed=1)
    test = fashion_mnist("test", 20, CLASSES, seed=0)
    model = build_prompts(backbone, "mpt", task)
    model.calibrate_center(model.prepare_images([e.image for e in train]))
    zero_shot = evaluate(model, test)["accuracy"]
    assert zero_shot > 1 / len(CLASSES) + 0.05  # 0.45 measured; chance is 0.33
    result = fit(model, train, val, TrainConfig(epochs=8, batch_size=8, progress=False))
    tuned = evaluate(model, test)["accuracy"]
    assert tuned > zero_shot + 0.15  # 0.87 measured
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    save_prompts(model, tmp_path / "retail")
    reloaded = load_prompts(tmp_path / "retail", backbone)
    assert reloaded.predict(test[:6]) == model.predict(test[:6])
