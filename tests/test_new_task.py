"""A new task is one module and one registration line.

The task below exists only in this test: it declares two example fields of its own (the
`part` a question is about, and its `shade`), takes `part` as a prediction input, and is
registered for the test alone (`TASKS.temporarily`). Nothing else is written for it: the
test domain, validation, the tuning job, registration, the served request schema and the
review page all derive from its contract, which is what `docs/architecture.md` promises.
"""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from fastapi.testclient import TestClient

from mpt_core import TASKS, Example
from mpt_core.data import ExampleField, require
from mpt_core.errors import DataError
from mpt_core.tasks import Task, TaskContract, ValueSet
from mpt_core.tasks.base import Toy, take_declaration
from mpt_core.tasks.metrics import accuracy

PART = ExampleField("part", "the part of the object a question is about (top, edge)")
SHADE = ExampleField("shade", "the shade of that part")
PARTS = ("top", "edge")


class PartShadeTask(Task):
    """Which of the declared shades a part of the object has; `part` is asked."""

    name = "part-shade"
    contract = TaskContract(
        fields=("part", "shade"),
        metrics=("accuracy",),
        primary_metric="accuracy",
        value_set=ValueSet("shade", "shades"),
        group_metric="per_part_accuracy",
        group_field="part",
        row_key=("image", "part"),
        inputs=("part",),
        declares=(PART, SHADE),
        declaration_help="shades: [dark, light]\n",
    )

    def __init__(self, shades: Sequence[str]) -> None:
        self.shades = list(shades)

    def _logits(self, model, image_emb, examples) -> torch.Tensor:
        parts = require(examples, "part", self.name)
        unique = list(dict.fromkeys(parts))
        texts = [f"a {shade} {part}" for part in unique for shade in self.shades]
        sims = model.score(image_emb, model.embed_texts(texts))  # (B, parts * shades)
        n = len(self.shades)
        return torch.stack([sims[b, unique.index(p) * n : (unique.index(p) + 1) * n]
                            for b, p in enumerate(parts)])  # fmt: skip

    def targets(self, examples) -> torch.Tensor:
        shades = require(examples, "shade", self.name)
        for i, shade in enumerate(shades):
            if shade not in self.shades:
                raise DataError(f"example {i}: shade {shade!r} is not one of {self.shades}")
        return torch.tensor([self.shades.index(s) for s in shades])

    def check(self, examples) -> None:
        self.targets(examples)

    def loss(self, model, image_emb, examples):
        targets = self.targets(examples).to(image_emb.device)
        return F.cross_entropy(self._logits(model, image_emb, examples), targets)

    def evaluate(self, model, image_emb, examples):
        target, pred = self.targets(examples), self._logits(model, image_emb, examples).argmax(1)
        parts = [e.part for e in examples]
        per_part = {
            p: accuracy(pred[[i for i, x in enumerate(parts) if x == p]],
                        target[[i for i, x in enumerate(parts) if x == p]])
            for p in dict.fromkeys(parts)
        }  # fmt: skip
        return {"accuracy": accuracy(pred.cpu(), target), "per_part_accuracy": per_part}

    def predict(self, model, image_emb, examples) -> list[str]:
        return [self.shades[i] for i in self._logits(model, image_emb, examples).argmax(1)]

    def scores(self, model, image_emb, examples) -> list[dict[str, float]]:
        probs = self._logits(model, image_emb, examples).softmax(1).tolist()
        return [dict(zip(self.shades, row, strict=True)) for row in probs]

    def to_dict(self) -> dict[str, Any]:
        return {"shades": self.shades}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> PartShadeTask:
        return cls(spec["shades"])

    @classmethod
    def from_declaration(cls, declared: Mapping[str, Any]) -> PartShadeTask:
        return cls(take_declaration(cls, declared, template=False)["shades"])

    def declaration(self) -> dict[str, Any]:
        return {"shades": self.shades}

    def declared_values(self) -> dict[str | None, list[str]]:
        return {None: self.shades}

    @classmethod
    def toy(cls, classes: Sequence[str]) -> Toy:
        return Toy(cls(classes), lambda name, image: [Example(image, part=p, shade=name)
                                                      for p in PARTS])  # fmt: skip


@pytest.fixture
def part_shade():
    with TASKS.temporarily(PartShadeTask.name, PartShadeTask) as task:  # the registration line
        yield task


def _tiny_domain(root):
    from flows.domains import get_domain

    from .flows.domain_factory import make_domain

    subprocess.run(["git", "init", "-q", str(root)], check=True)
    domain = make_domain(root, "part-shade", per_class=3, name="paint")
    config = yaml.safe_load((domain.root / "domain.yaml").read_text())
    config |= {"backbone": {"family": "shipped", "name": "tiny"}, "tuning": {"epochs": 2}}
    (domain.root / "domain.yaml").write_text(yaml.safe_dump(config))
    return get_domain(root / "domains", "paint")


def test_a_task_registered_in_a_test_is_validated_tuned_registered_served_and_reviewed(
    part_shade, tmp_path
):
    from flows.datacache import DataCache, RemoteLocation
    from flows.pipeline import build_job, prepare, register_outcome
    from flows.validation import validate_domain
    from flows.versioning import DataVersioner, RemoteSpec
    from flows.worker import load_ref, run_tune_job
    from registry import open_registry
    from review import ReviewSettings
    from review import create_app as review_app
    from serving import ServeSettings
    from serving import create_app as serving_app

    from .flows.domain_factory import read_rows, write_rows
    from .flows.retrain_fixtures import TINY
    from .review.conftest import login
    from .serving.server import serve

    root = tmp_path / "repo"
    domain = _tiny_domain(root)
    assert "shades:" in (domain.root / "domain.yaml").read_text()  # under task_options

    # validation: the contract's value set and row key, with rows named
    rows = read_rows(domain)
    assert set(rows[0]) == {"image", "split", "part", "shade"}
    rows[1]["shade"] = "beige"
    write_rows(domain, rows)
    report = validate_domain(domain)
    assert not report.passed and "shade: 1 row not in the declared shades" in report.summary
    rows[1]["shade"] = "boot"
    write_rows(domain, rows)

    # tuning and registration through the flow's steps (a worker in-process)
    registry = open_registry()
    versioner = DataVersioner(root, RemoteSpec(str(root / "remote")))
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    job = build_job(prepared, TINY, registry, RemoteLocation(str(root / "remote")), "run-1")
    assert job.spec.task == "part-shade" and job.spec.task_options == {"shades": ["boot", "shirt"]}
    outcome = run_tune_job(load_ref(TINY), job, cache=DataCache(tmp_path / "cache"))
    result = register_outcome(prepared, outcome, registry, None, "run-1")
    assert result.status == "registered" and result.metric == "accuracy"
    version = registry.get_version("paint", result.version)
    assert version.primary_metric == "accuracy" and version.config["task"]["name"] == "part-shade"
    stored = registry.predictions("paint", result.version, prepared.data.md5, "test")
    assert {row["part"] for row in stored.rows} == set(PARTS)  # the task's input is kept
    registry.approve(result.request_id, reviewer="ben")

    # serving: the request schema takes the task's input, and requires it
    image = io.BytesIO()
    from PIL import Image

    Image.open(domain.data_dir / rows[0]["image"]).save(image, "PNG")
    encoded = base64.b64encode(image.getvalue()).decode()
    fast = ServeSettings(poll_seconds=0.2, retry_seconds=0.5, max_wait_ms=2.0)
    with serve(serving_app(fast, registry=registry)) as server, server.client() as client:
        listed = {d["domain"]: d for d in client.get("/v1/domains").json()["domains"]}
        assert listed["paint"]["inputs"] == ["part"] and listed["paint"]["version"] == 1
        answer = client.post(
            "/v1/predict", json={"items": [{"domain": "paint", "image": encoded, "part": "top"}]}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["prediction"] in ("boot", "shirt")
        missing = client.post(
            "/v1/predict", json={"items": [{"domain": "paint", "image": encoded}]}
        )
        assert missing.status_code == 422 and missing.json()["error"]["items"][0]["field"] == "part"
        assert "part" in client.get("/openapi.json").text

    # the review page: the per-part table, named from the task's group metric
    _, token = registry.add_user("vera", "viewer")
    app = review_app(registry, ReviewSettings(secret="s" * 48), home=tmp_path)
    with TestClient(app) as pages:
        login(pages, token)
        page = pages.get(f"/requests/{result.request_id}")
        assert page.status_code == 200, page.text
        assert "Per part" in page.text and all(f"<td>{p}</td>" in page.text for p in PARTS)
