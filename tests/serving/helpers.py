"""Requests and expected results for the serving tests."""

from __future__ import annotations

import base64
import io
import tempfile
import threading
import time
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


class Traffic:
    """A client posting the same items back to back until stopped, with `headers` (a
    bearer token, say); every response is kept as (sent, arrived, status, body)."""

    def __init__(self, server, items: list[dict], headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.items = items
        self.headers = headers or {}
        self.responses: list[tuple[float, float, int, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.server.client() as c:
            while not self._stop.is_set():
                sent = time.monotonic()
                r = c.post("/v1/predict", json={"items": self.items}, headers=self.headers)
                self.responses.append((sent, time.monotonic(), r.status_code, r.json()))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def statuses(self) -> set[int]:
        return {status for _, _, status, _ in self.responses}

    def first_with(self, version: int, after: float, timeout: float = 10) -> float:
        """When the first response from `version`, sent after `after`, arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for sent, at, status, body in list(self.responses):
                if sent > after and status == 200 and body["results"][0]["version"] == version:
                    return at
            time.sleep(0.02)
        raise AssertionError(f"no response from v{version} within {timeout} s")
