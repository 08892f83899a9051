"""Versions in and out of the registry from the CLI, on a tiny domain whose data versions
live on the DVC remote: register and evaluate here, a stale request superseded by a new
one whose policy compares production on the candidate's data (evaluated when the request
is opened), `mpt registry pull` (both layouts) and the notebook loader, each verified as
the prediction server verifies what it loads."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from PIL import Image

from cli import main
from flows.pull import fetch_version, load_prompts_from_registry, pull
from mpt_core import (
    ClassificationTask,
    Example,
    build_prompts,
    load_prompts,
    save_prompts,
    tiny_backbone,
)
from mpt_core.errors import ArtifactError, BackboneMismatchError
from mpt_core.export import ADAPTER_CONFIG, ADAPTER_WEIGHTS, load_pretrained, read_pretrained
from registry import open_registry
from registry.errors import ArtifactCorruptedError

from ..flows.domain_factory import LABELS, make_domain, read_rows


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def shop(tmp_path):
    """A tiny classification domain in a git repo (the cwd), its data versioned and pushed."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    domain = make_domain(tmp_path, "classification", per_class=3, name="shop")
    with (domain.root / "domain.yaml").open("a") as f:
        f.write("backbone: {family: shipped, name: tiny}\n")
    return domain


@pytest.fixture
def artifacts(tmp_path):
    backbone = tiny_backbone("shipped")
    return [
        save_prompts(
            build_prompts(backbone, "coop", ClassificationTask(list(LABELS)), seed=seed),
            tmp_path / f"artifact-{seed}",
        )
        for seed in (1, 2, 3)
    ]


def data_version(capsys) -> str:
    code, out, err = run(capsys, "domain", "version", "shop", "--push", "--json")
    assert code == 0, err
    return json.loads(out)[0]["data_version"]


def test_a_stale_request_is_superseded_and_production_is_evaluated_on_the_new_data(
    shop, artifacts, capsys
):
    first = data_version(capsys)
    code, out, err = run(capsys, "registry", "register", "shop", str(artifacts[0]), "--evaluate")
    assert code == 0, err
    assert "registered shop v1" in out and f"on data version {first}" in out
    assert "evaluated shop v1 on test of data version" in out and "accuracy=" in out
    assert run(capsys, "promote", "request", "shop", "1", "--user", "ana")[0] == 0
    assert run(capsys, "promote", "approve", "1", "--user", "ben")[0] == 0

    image = shop.data_dir / read_rows(shop)[-1]["image"]  # new data: one test image changed
    Image.new("RGB", (24, 24), (9, 9, 9)).save(image)
    second = data_version(capsys)
    assert second != first
    for artifact in artifacts[1:]:
        assert run(capsys, "registry", "register", "shop", str(artifact), "--evaluate")[0] == 0
    reg = open_registry()
    assert reg.get_version("shop", 1).metrics("test", second) is None

    # v3's request is opened while production is v1; production evaluated there first
    code, out, err = run(capsys, "promote", "request", "shop", "3", "--user", "ana", "--json")
    assert code == 0 and "shop:production v1 has no metrics on the test split" in err
    report = json.loads(out)["policy_report"]
    assert report["production_version"] == 1 and isinstance(report["production"], float)
    assert reg.get_version("shop", 1).metrics("test", second) is not None
    assert reg.predictions("shop", 1, second).task.closed  # its evidence too, for the page
    stale = json.loads(out)["id"]

    # production moves to v2: #stale can no longer be approved, and says what to do
    assert run(capsys, "promote", "request", "shop", "2", "--user", "ana")[0] == 0
    assert run(capsys, "promote", "approve", str(stale + 1), "--user", "ben")[0] == 0
    code, _, err = run(capsys, "promote", "approve", str(stale), "--user", "ben")
    assert code == 2 and "`mpt promote request shop 3`): it replaces" in err
    code, out, err = run(capsys, "promote", "request", "shop", "3", "--user", "ana", "--json")
    assert code == 0, err
    fresh = json.loads(out)
    assert fresh["base_version"] == 2 and fresh["policy_report"]["production_version"] == 2
    code, out, _ = run(capsys, "promote", "list", "shop", "--status", "superseded", "--json")
    [old] = json.loads(out)
    assert (old["id"], old["superseded_by"], old["status"]) == (stale, fresh["id"], "superseded")
    code, out, _ = run(capsys, "promote", "list", "--status", "all", "--json")
    assert code == 0 and len(json.loads(out)) == 4
    code, out, _ = run(capsys, "registry", "list", "shop", "--json")
    assert [v["state"] for v in json.loads(out)] == ["candidate", "production", "candidate"]
    assert "production" in run(capsys, "registry", "list", "shop")[1].splitlines()[3]
    code, out, _ = run(capsys, "audit", "--domain", "shop", "--json")
    actions = {e["action"] for e in json.loads(out)}
    assert {"register", "evaluate", "predictions", "supersede", "request", "approve"} <= actions


def test_evaluate_names_what_is_missing(shop, artifacts, capsys):
    data_version(capsys)
    assert run(capsys, "registry", "register", "shop", str(artifacts[0]), "--evaluate")[0] == 0
    code, _, err = run(capsys, "registry", "evaluate", "shop", "1", "--data-version", "f" * 32)
    assert code == 2 and f"data version {'f' * 32} of shop is not recorded" in err
    code, _, err = run(capsys, "registry", "register", "shop", str(artifacts[1]))
    assert code == 2 and "give --metrics FILE" in err and "--evaluate" in err


def test_pull_writes_a_verified_version_and_the_loader_rebuilds_it(
    shop, artifacts, tmp_path, capsys
):
    data_version(capsys)
    for artifact in artifacts[:2]:
        assert run(capsys, "registry", "register", "shop", str(artifact), "--evaluate")[0] == 0
    run(capsys, "promote", "request", "shop", "2", "--user", "ana")
    run(capsys, "promote", "approve", "1", "--user", "ben")

    code, out, _ = run(capsys, "registry", "pull", "shop", "@production", str(tmp_path / "prod"))
    assert code == 0 and "pulled shop v2 (production" in out and "verified" in out
    assert (tmp_path / "prod" / "prompts.safetensors").read_bytes() == (
        artifacts[1] / "prompts.safetensors"
    ).read_bytes()
    code, out, _ = run(
        capsys, "registry", "pull", "shop", "1", str(tmp_path / "peft"), "--format", "peft"
    )
    assert code == 0 and "save_pretrained layout" in out
    config = json.loads((tmp_path / "peft" / ADAPTER_CONFIG).read_text())
    assert (
        config["peft_type"] is None
        and config["revision"] == tiny_backbone("shipped").identity.weights_sha256
    )
    assert config["num_virtual_tokens"] == 4 and config["mpt"]["method"] == "coop"
    assert (tmp_path / "peft" / ADAPTER_WEIGHTS).read_bytes() == (
        artifacts[0] / "prompts.safetensors"
    ).read_bytes()
    assert read_pretrained(tmp_path / "peft").config == json.loads(
        (artifacts[0] / "prompt_config.json").read_text()
    )
    code, _, err = run(capsys, "registry", "pull", "shop", "@staging", str(tmp_path / "x"))
    assert code == 2 and "shop has no alias 'staging' (aliases: @production)" in err
    code, _, err = run(capsys, "registry", "pull", "shop", "1", str(tmp_path / "prod"))
    assert code == 2 and "is not an empty folder" in err

    backbone = tiny_backbone("shipped")
    model = load_prompts_from_registry("shop")  # production, on its lineage's backbone
    expected = load_prompts(tmp_path / "prod", backbone)
    assert not model.training and model.backbone.identity == backbone.identity
    for key, tensor in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    test = [Example(shop.data_dir / r["image"]) for r in read_rows(shop) if r["split"] == "test"]
    assert model.predict(test) == expected.predict(test)
    exported = load_pretrained(tmp_path / "peft", backbone)  # the PEFT-layout folder: v1
    assert exported.predict(test) == load_prompts(artifacts[0], backbone).predict(test)


def test_pulls_refuse_a_damaged_blob_and_an_artifact_the_lineage_disowns(artifacts, tmp_path):
    reg = open_registry()
    reg.record_data_version("shop", "d" * 32, rows=1, row_counts={}, validation_passed=True)
    config = json.loads((artifacts[0] / "prompt_config.json").read_text())
    for backbone in (config["backbone"], {**config["backbone"], "weights_sha256": "e" * 64}):
        reg.register_version(
            "shop",
            artifacts[0],
            method="coop",
            config={},
            data_version="d" * 32,
            backbone=backbone,
            metrics={},
        )
    with pytest.raises(
        BackboneMismatchError, match="shop v2: the artifact and the registry disagree"
    ):
        fetch_version(reg, "shop", 2)
    with pytest.raises(BackboneMismatchError, match="was tuned on backbone"):
        load_prompts_from_registry("shop", 1, registry=reg, backbone=tiny_backbone("hf-clip"))
    blob = reg.store.path(reg.get_version("shop", 1).artifact_sha256)
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(ArtifactCorruptedError, match="is corrupted"):
        fetch_version(reg, "shop", 1)
    with pytest.raises(ArtifactError, match="is not one of mpt, peft"):
        pull(reg, "shop", 1, tmp_path / "x", layout="onnx")
