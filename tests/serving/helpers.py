"""Requests and expected results for the serving tests."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import torch
from PIL import Image

from mpt_core import Example, load_prompts
from mpt_core.model import PromptedModel
from registry import PromptRegistry

from . import factory


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def b64(image: Image.Image) -> str:
    return base64.b64encode(png(image)).decode()


def local_model(reg: PromptRegistry, domain: str, number: int) -> PromptedModel:
    """The version as the library loads it, outside the server."""
    version = reg.get_version(domain, number)
    with tempfile.TemporaryDirectory() as tmp:
        path = reg.fetch_artifact(domain, number, Path(tmp) / "a")
        return load_prompts(path, factory.tiny(version.backbone.family)).eval()


def local_scores(model: PromptedModel, examples: list[Example]) -> list[dict[str, float]]:
    with torch.no_grad():
        emb = model.encode_images([e.image for e in examples])
        return model.task.scores(model, emb, examples)


def assert_scores(got: dict[str, float], expected: dict[str, float], tol: float = 1e-5) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert abs(got[key] - value) <= tol, (key, got[key], value)
