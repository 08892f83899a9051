"""Images as the towers see them, and backbones that never reach the network."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from mpt_core.data import load_image
from mpt_core.errors import BackboneLoadError


def test_a_16_bit_grayscale_png_is_scaled_not_clipped_to_white(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    rgb = np.asarray(load_image(tmp_path / "ramp.png"))
    assert rgb.shape == (64, 64, 3)
    assert rgb.min() == 0 and rgb.max() == 255 and 100 < rgb.mean() < 155
    assert np.asarray(Image.open(tmp_path / "ramp.png").convert("RGB")).mean() > 250  # PIL alone


def test_an_uncached_hub_id_fails_without_any_connection(monkeypatch):
    from mpt_core.backbones import hf_clip

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    attempts = []
    real = socket.socket.connect
    monkeypatch.setattr(
        socket.socket,
        "connect",
        lambda self, address: attempts.append(address) or real(self, address),
    )
    with pytest.raises(BackboneLoadError, match="neither a local directory"):
        hf_clip.load("nobody/no-such-clip-checkpoint")
    assert attempts == []
