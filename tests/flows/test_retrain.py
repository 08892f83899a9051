"""The retrain flow end to end under Prefect's test harness, on a local Ray, with tiny
domains: registered with lineage, an invalid domain among valid ones, skip on no change,
a new data version after one image changed."""

from __future__ import annotations

import pytest
import yaml
from PIL import Image

from registry import MonitoringSettings, PromptRegistry, RegistrySettings

from .domain_factory import read_rows, write_rows
from .retrain_fixtures import local_ray, tiny_repo

pytestmark = pytest.mark.slow  # a Prefect test server and a local Ray: about 2 minutes


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def shared_ray():
    with local_ray(num_cpus=2):
        yield


@pytest.fixture
def run(harness, shared_ray):
    from flows.retrain import retrain_flow

    def _run(domains_dir, **kwargs):
        return {r["domain"]: r for r in retrain_flow(domains_dir=str(domains_dir), **kwargs)}

    return _run


def test_registers_each_domain_with_full_lineage_and_opens_requests(run, tmp_path):
    domains_dir = tiny_repo(tmp_path / "repo")
    results = run(domains_dir)
    assert {r["status"] for r in results.values()} == {"registered"}
    reg = PromptRegistry.from_settings(RegistrySettings())
    for name, result in results.items():
        v = reg.get_version(name, result["version"])
        assert v.data_version == result["data_version"] and v.backbone.name == "tiny"
        assert v.flow_run_id and v.created_by == "retrain-flow" and v.code_version
        assert v.metrics("test") is not None and v.metrics("val") is not None
        (request,) = reg.requests(name)
        assert request.id == result["request_id"] and request.status == "pending"
    assert (domains_dir / "test-vqa" / "data.dvc").exists()


def test_an_invalid_domain_stops_alone(run, tmp_path):
    domains_dir = tiny_repo(tmp_path / "repo")
    broken = domains_dir / "test-vqa"
    rows = read_rows_from(broken)
    rows[0]["answer"] = "maybe"
    write_rows_to(broken, rows)
    (domains_dir / "typo").mkdir()
    (domains_dir / "typo" / "domain.yaml").write_text("task: clasification\n")
    results = run(domains_dir)
    assert results["test-classification"]["status"] == "registered"
    assert (
        results["test-vqa"]["status"] == "invalid" and results["test-vqa"]["validation"] == "FAILED"
    )
    assert results["typo"]["status"] == "invalid"
    assert PromptRegistry.from_settings(RegistrySettings()).list_versions("test-classification")


def test_skips_when_nothing_changed_and_retunes_after_one_image_changed(run, tmp_path):
    domains_dir = tiny_repo(tmp_path / "repo", tasks=("classification",))
    first = run(domains_dir)["test-classification"]
    reg = PromptRegistry.from_settings(RegistrySettings())
    assert reg.monitoring("test-classification") == MonitoringSettings()  # the defaults
    config_path = domains_dir / "test-classification" / "domain.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["monitoring"] = {"shadow_fraction": 0.2, "keep_images": True}
    config_path.write_text(yaml.safe_dump(config))
    second = run(domains_dir)["test-classification"]
    assert second["status"] == "skipped" and second["version"] == first["version"]
    wanted = MonitoringSettings(shadow_fraction=0.2, keep_images=True)
    assert reg.monitoring("test-classification") == wanted  # applied without a retrain
    forced = run(domains_dir, force=True)["test-classification"]
    assert forced["status"] == "registered" and forced["version"] == first["version"] + 1

    image = next((domains_dir / "test-classification" / "data" / "images").rglob("*.png"))
    Image.new("RGB", (32, 32), (1, 2, 3)).save(image)
    changed = run(domains_dir)["test-classification"]
    assert changed["status"] == "registered"
    assert changed["data_version"] != first["data_version"]
    assert changed["production_version"] is None  # nothing approved yet


def read_rows_from(folder):
    from flows.domains import get_domain

    return read_rows(get_domain(folder.parent, folder.name))


def write_rows_to(folder, rows):
    from flows.domains import get_domain

    write_rows(get_domain(folder.parent, folder.name), rows)


def test_each_broken_domain_fails_alone_with_its_stage_and_reason(run, tmp_path):
    """A checkpoint that does not exist, an Excel CSV (byte-order mark) and a corrupted
    production blob: each domain gets its own status and reason; the rest are tuned."""
    import codecs

    import yaml

    from flows.domains import get_domain

    domains_dir = tiny_repo(tmp_path / "repo", tasks=("classification", "vqa", "retrieval"))
    clip = domains_dir / "test-retrieval" / "domain.yaml"
    config = yaml.safe_load(clip.read_text())
    config["backbone"] = {"family": "hf-clip", "name": str(tmp_path / "no-such-checkpoint")}
    clip.write_text(yaml.safe_dump(config))
    excel = get_domain(domains_dir, "test-vqa").metadata_path
    excel.write_bytes(codecs.BOM_UTF8 + excel.read_bytes())

    first = run(domains_dir)
    assert first["test-classification"]["status"] == "registered"
    assert first["test-vqa"]["status"] == "registered"  # the BOM is read like validation reads it
    failed = first["test-retrieval"]
    assert failed["status"] == "failed" and failed["stage"] == "plan"
    assert "could not be loaded" in failed["message"]

    reg = PromptRegistry.from_settings(RegistrySettings())
    reg.approve(first["test-classification"]["request_id"], reviewer="ben")
    blob = reg.store.path(reg.get_version("test-classification", 1).artifact_sha256)
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    second = run(domains_dir, force=True)
    broken = second["test-classification"]
    assert broken["status"] == "failed" and broken["stage"] == "job"
    assert "corrupted" in broken["message"]
    assert second["test-vqa"]["status"] == "registered"


def test_a_captioning_domain_on_a_generative_backbone_goes_through_the_same_flow(run, tmp_path):
    """`mpt domain new captions --task captioning`, pointed at (tiny) hf-blip2, tunes and
    registers with CIDEr as its metric, like any other domain."""
    import subprocess

    from cli import main

    from .domain_factory import write_csv, write_png

    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    domains = root / "domains"
    assert (
        main(["domain", "new", "captions", "--task", "captioning", "--domains-dir", str(domains)])
        == 0
    )
    folder = domains / "captions"
    text = (folder / "domain.yaml").read_text()
    assert "family: hf-blip2" in text and "columns: image,split,caption" in text
    rows = []
    for n, (split, thing) in enumerate(
        (s, t)
        for s in ("train", "val", "test")
        for t in ("red square", "blue circle")
        for _ in range(2)
    ):
        rel = f"images/{n}.png"
        write_png(folder / "data" / rel, seed=n)
        rows.append({"image": rel, "split": split, "caption": f"a {thing} on noise"})
    write_csv(folder / "data" / "metadata.csv", rows)
    text = text.replace("  family: hf-blip2 ", "  name: tiny\n  family: hf-blip2 ")
    (folder / "domain.yaml").write_text(text.replace("epochs: 15", "epochs: 1"))
    result = run(domains)["captions"]
    assert result["status"] == "registered" and result["metric"] == "cider", result
    version = PromptRegistry.from_settings(RegistrySettings()).get_version("captions", 1)
    assert version.backbone.family == "hf-blip2" and "bleu4" in version.metrics("test")


def test_a_domain_with_a_search_records_every_trial_in_its_lineage(run, tmp_path, capsys):
    import yaml

    from cli import main

    domains_dir = tiny_repo(tmp_path / "repo", tasks=("classification",))
    path = domains_dir / "test-classification" / "domain.yaml"
    config = yaml.safe_load(path.read_text())
    config["tuning"]["search"] = {"trials": 2, "folds": 1, "space": {"lr": {"choice": [0.01]}}}
    path.write_text(yaml.safe_dump(config))
    result = run(domains_dir)["test-classification"]
    assert result["status"] == "registered", result
    version = PromptRegistry.from_settings(RegistrySettings()).get_version(
        "test-classification", result["version"]
    )
    assert [t["params"] for t in version.search["trials"]] == [{}, {"lr": 0.01}]
    assert version.search["folds"] == 1 and "value" in version.search
    assert main(["registry", "show", "test-classification", str(result["version"])]) == 0
    assert "search        2 trial(s) on 1 fold(s)" in capsys.readouterr().out
