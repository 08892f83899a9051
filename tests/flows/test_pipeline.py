"""The retrain steps called directly: prepare (validate, then version), the worker's own
data materialisation, tuning, the candidate-vs-production path and the one-transaction,
idempotent registration."""

from __future__ import annotations

import codecs
import dataclasses
import pickle
import random
import subprocess

import pytest

from flows.datacache import DataCache, DataCacheError, RemoteLocation
from flows.dataset import layout_of, read_rows, rows_digest
from flows.domains import get_domain
from flows.jobs import StepFailed
from flows.pipeline import (
    DomainResult,
    backbone_ref,
    build_job,
    prepare,
    register_outcome,
    unchanged_result,
    unchanged_version,
)
from flows.run_report import summary_row
from flows.versioning import DataVersioner, RemoteSpec
from flows.worker import job_examples, load_ref, run_tune_job
from mpt_core import PromptedModel, backbones
from mpt_core.errors import DataError
from registry import InvalidRecord, open_registry

from .domain_factory import make_domain
from .domain_factory import read_rows as read_csv_rows
from .retrain_fixtures import TINY


def tiny_domain(root, task="classification", name=None, epochs=2):
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    domain = make_domain(root, task, per_class=3, name=name)
    text = (domain.root / "domain.yaml").read_text()
    text += f"backbone: {{family: shipped, name: tiny}}\ntuning: {{epochs: {epochs}}}\n"
    (domain.root / "domain.yaml").write_text(text)
    return get_domain(root / "domains", domain.name)


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    registry = open_registry()
    versioner = DataVersioner(root, RemoteSpec(str(tmp_path / "remote")))
    return root, registry, versioner, RemoteLocation(str(tmp_path / "remote"))


def tuned_once(world, tmp_path, run_id=None):
    """A one-epoch tiny domain, prepared and tuned (not registered)."""
    root, registry, versioner, location = world
    domain = tiny_domain(root, epochs=1)
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    backbone = backbones.load_backbone("shipped", "tiny")
    outcome = run_tune_job(
        backbone,
        build_job(prepared, backbone_ref(domain), registry, location, run_id),
        cache=DataCache(tmp_path / "cache"),
    )
    return domain, prepared, outcome


def test_prepare_validates_then_versions_and_records(world, tmp_path):
    root, registry, versioner, _ = world
    domain = tiny_domain(root)
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    assert prepared.validation == "passed" and (domain.root / "data.dvc").exists()
    record = registry.data_version(domain.name, prepared.data.md5)
    assert record.validation_passed and record.validation_key
    assert (tmp_path / "reports" / domain.name / prepared.data.md5 / "validation.json").exists()
    assert prepared.rows_sha256 == rows_digest(read_rows(layout_of(domain.config), domain.data_dir))
    again = prepare(domain, versioner, registry, tmp_path / "reports")
    assert again.validation == "unchanged" and again.data == prepared.data


def test_an_invalid_domain_is_refused_before_dvc_sees_it(world, tmp_path):
    root, registry, versioner, _ = world
    domain = tiny_domain(root)
    rows = read_csv_rows(domain)
    rows[3]["label"] = "Sneakr"
    (domain.metadata_path).write_text(
        "image,split,label\n" + "".join(f"{r['image']},{r['split']},{r['label']}\n" for r in rows)
    )
    with pytest.raises(StepFailed) as failure:
        prepare(domain, versioner, registry, tmp_path / "reports")
    result = DomainResult.of_failure(failure.value.failure)
    assert result.status == "invalid" and "row 4" in result.message and "'Sneakr'" in result.message
    assert (result.stage, result.validation) == ("validate", "FAILED")
    assert not (domain.root / "data.dvc").exists() and not (tmp_path / "remote").exists()


def test_an_excel_csv_with_a_byte_order_mark_validates_and_trains(world, tmp_path):
    root, registry, versioner, location = world
    domain = tiny_domain(root)
    domain.metadata_path.write_bytes(codecs.BOM_UTF8 + domain.metadata_path.read_bytes())
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    job = build_job(prepared, TINY, registry, location, None)
    splits = job_examples(job, DataCache(tmp_path / "cache"))
    assert len(splits["train"]) == 6 and splits["train"][0].label in ("boot", "shirt")


def test_the_worker_reads_exactly_the_validated_rows_from_the_remote(world, tmp_path):
    root, registry, versioner, location = world
    domain = tiny_domain(root)
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    job = build_job(prepared, TINY, registry, location, "run-1")
    shipped = pickle.dumps(job)  # what Ray sends to the worker: no image travels
    images = [p.read_bytes() for p in domain.data_dir.rglob("*.png")]
    assert images and len(shipped) < 5_000 and not any(i in shipped for i in images)
    cache = DataCache(tmp_path / "node-cache")
    examples = job_examples(job, cache)
    assert all(str(e.image).startswith(str(tmp_path / "node-cache")) for e in examples["test"])
    forged = dataclasses.replace(job, data=dataclasses.replace(job.data, rows_sha256="0" * 64))
    with pytest.raises(DataError, match="differ from the rows validated"):
        job_examples(forged, cache)


def test_a_damaged_remote_object_is_refused(world, tmp_path):
    root, registry, versioner, location = world
    domain = tiny_domain(root)
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    victim = next(
        p for p in (tmp_path / "remote").rglob("*") if p.is_file() and ".dir" not in p.name
    )
    victim.write_bytes(b"tampered")
    with pytest.raises(DataCacheError, match="does not match its md5"):
        DataCache(tmp_path / "c").materialise(location, prepared.data.md5)
    with pytest.raises(DataCacheError, match="was the data version pushed"):
        DataCache(tmp_path / "c").materialise(location, "f" * 32)


def test_materialise_from_an_s3_remote(s3_server, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    root = tmp_path / "repo"
    root.mkdir()
    url = f"s3://{s3_server.bucket}/dvc-{random.getrandbits(32):08x}"
    versioner = DataVersioner(root, RemoteSpec(url, s3_server.endpoint_url))
    domain = tiny_domain(root)
    data = versioner.track(domain.data_dir)
    versioner.push(domain.data_dir)
    folder = DataCache(tmp_path / "cache").materialise(
        RemoteLocation(url, s3_server.endpoint_url), data.md5
    )
    assert (folder / "metadata.csv").read_bytes() == domain.metadata_path.read_bytes()
    assert read_rows(layout_of(domain.config), folder) == read_rows(
        layout_of(domain.config), domain.data_dir
    )


def test_tune_register_and_compare_with_production_on_the_same_data(world, tmp_path):
    root, registry, versioner, location = world
    domain = tiny_domain(root, epochs=1)
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    ref = backbone_ref(domain)
    backbone = backbones.load_backbone("shipped", "tiny")
    cache = DataCache(tmp_path / "cache")
    first = run_tune_job(
        backbone, build_job(prepared, ref, registry, location, "run-1"), cache=cache
    )
    assert first.production_metrics is None and first.backbone == backbone.identity.to_dict()
    result = register_outcome(prepared, first, registry, None, "run-1")
    assert result.status == "registered" and result.version == 1 and result.request_id
    registry.approve(result.request_id, reviewer="ben")

    job = build_job(prepared, ref, registry, location, "run-2")
    assert job.production_version == 1 and job.production is not None
    test_images = {e.image for e in job_examples(job, cache)["test"]}
    embeds = []  # the test split, once per model: its metrics and its evidence share it
    real_prepare = PromptedModel.prepare_images

    def counting(model, images, *args, **kwargs):
        if {str(i) for i in test_images} <= {str(i) for i in images}:
            embeds.append(id(model))
        return real_prepare(model, images, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PromptedModel, "prepare_images", counting)
        second = run_tune_job(backbone, job, cache=cache)
    assert len(embeds) == 2 and len(set(embeds)) == 2, embeds  # candidate and production
    assert second.evidence.production is not None
    assert second.production_metrics == first.metrics["test"]  # same data, same prompts
    trigger = {"kind": "drift", "drift": 0.41, "threshold": 0.25}  # the drift check's reading
    result = register_outcome(
        prepared, second, registry, job.production_version, "run-2", trigger=trigger
    )
    assert result.production == first.metrics["test"]["accuracy"]
    assert registry.get_version(domain.name, 2).trigger == trigger
    assert registry.get_version(domain.name, 1).trigger is None
    prod = registry.get_version(domain.name, 1)
    assert prod.metrics("test", prepared.data.md5) == first.metrics["test"]
    (request,) = registry.requests(domain.name, "pending")
    assert request.policy_report["production_version"] == 1


def test_registration_is_one_idempotent_transaction(world, tmp_path):
    registry = world[1]
    domain, prepared, outcome = tuned_once(world, tmp_path, "run-9")
    rows = [{**row, "score": 2.0} for row in outcome.evidence.candidate]  # not a probability
    broken = dataclasses.replace(
        outcome, evidence=dataclasses.replace(outcome.evidence, candidate=rows)
    )
    with pytest.raises(InvalidRecord, match=r"row 0: score must be in \[0, 1\]"):
        register_outcome(prepared, broken, registry, None, "run-9")
    assert registry.list_versions() == []  # the version went with its refused evidence
    assert registry.requests() == []
    first = register_outcome(prepared, outcome, registry, None, "run-9")
    retry = register_outcome(prepared, outcome, registry, None, "run-9")
    assert (retry.version, retry.request_id) == (first.version, first.request_id)
    assert len(registry.list_versions(domain.name)) == 1 and len(registry.requests()) == 1
    stored = registry.predictions(domain.name, first.version, prepared.data.md5)
    assert stored.rows == outcome.evidence.candidate


def test_a_corrupted_candidate_artifact_is_refused_at_registration(world, tmp_path):
    registry = world[1]
    _, prepared, outcome = tuned_once(world, tmp_path)
    bad = type(outcome.artifact)(outcome.artifact.config_json, outcome.artifact.tensors[:-7])
    with pytest.raises(Exception, match="changed or damaged"):
        register_outcome(
            prepared, type(outcome)(**{**outcome.__dict__, "artifact": bad}), registry, None, None
        )
    assert registry.list_versions() == []


def test_nothing_changed_is_decided_without_loading_the_backbone(world, tmp_path, monkeypatch):
    registry, versioner = world[1], world[2]
    domain, prepared, outcome = tuned_once(world, tmp_path)
    registered = register_outcome(prepared, outcome, registry, None, None)
    registry.approve(registered.request_id, reviewer="ben")  # v1 is production
    # the tiny backbone has no weight files: give it some, as a checkpoint has, so that a
    # load remembers their sha256 (as the first `mpt run` after an install does)
    monkeypatch.setattr(
        backbones.BackboneFamily, "weight_files", lambda self, *a, **k: [domain.metadata_path]
    )
    backbones.forget_loaded_backbones()
    loaded = backbones.load_backbone("shipped", "tiny")
    assert loaded.identity.weights_sha256 == outcome.backbone["weights_sha256"]
    backbones.forget_loaded_backbones()  # the next run is a new process: nothing loaded
    loads = []
    monkeypatch.setattr(
        backbones.BackboneFamily, "load", lambda self, *a, **k: loads.append(a) or 1 / 0
    )
    assert unchanged_version(domain, versioner, registry) == (prepared.data.md5, 1)
    skipped = unchanged_result(domain, versioner, registry)
    assert loads == []
    accuracy = outcome.metrics["test"]["accuracy"]  # the run table shows production, v1
    assert (skipped.production_version, skipped.production, skipped.candidate) == (
        1,
        accuracy,
        accuracy,
    )
    assert summary_row(skipped)["production"] == f"{accuracy:.4f} (v1)"
    monkeypatch.undo()
    backbones.forget_loaded_backbones()  # what loaded with fake weight files stays here


def test_a_production_from_an_older_artifact_format_is_not_comparable_not_fatal(world, tmp_path):
    import json

    from mpt_core import build_prompts, save_prompts
    from mpt_core.artifacts import CONFIG

    root, registry, versioner, location = world
    domain = tiny_domain(root, epochs=1)
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    backbone = backbones.load_backbone("shipped", "tiny")
    old = save_prompts(
        build_prompts(backbone, "coop", domain.config.build_task()), tmp_path / "old"
    )
    config = json.loads((old / CONFIG).read_text())
    (old / CONFIG).write_text(json.dumps({**config, "format_version": 1}))
    registry.register_version(
        domain.name,
        old,
        method="coop",
        config={},
        data_version=prepared.data.md5,
        backbone=backbone.identity.to_dict(),
        metrics={"test": {"accuracy": 0.5}},
        created_by="ana",
    )
    request = registry.request_promotion(
        domain.name, 1, requested_by="ana", policy=domain.config.promotion_policy()
    )
    registry.approve(request.id, reviewer="ben")
    job = build_job(prepared, backbone_ref(domain), registry, location, "run-3")
    assert job.production_version == 1 and job.production is None
    outcome = run_tune_job(backbone, job, cache=DataCache(tmp_path / "cache"))
    result = register_outcome(prepared, outcome, registry, job.production_version, "run-3")
    assert result.status == "registered" and result.production is None
    # the policy compares with what production has on this data version (recorded before)
    assert result.policy_passed is False and "improves by" in result.message


def test_a_refit_domain_records_its_held_out_validation_metric(world, tmp_path):
    """`tuning.final: refit`: the worker chooses the epochs on k folds and refits on train +
    val; the refitted prompts have trained on val, so the version's val metric is the
    folds' held-out mean (one figure, the primary metric), not a score on images it
    trained on."""
    root, registry, versioner, location = world
    domain = tiny_domain(root, epochs=1)
    yaml = domain.root / "domain.yaml"
    text = yaml.read_text().replace("tuning: {epochs: 1}", "tuning: {epochs: 1, final: refit}")
    yaml.write_text(text)
    domain = get_domain(root / "domains", domain.name)
    prepared = prepare(domain, versioner, registry, tmp_path / "reports")
    backbone = backbones.load_backbone("shipped", "tiny")
    job = build_job(prepared, backbone_ref(domain), registry, location, "run-f")
    assert job.spec.train.final == "refit"
    outcome = run_tune_job(backbone, job, cache=DataCache(tmp_path / "cache"))
    assert [row["fold"] for row in outcome.history] == [0, 1, 2, "all"]
    assert list(outcome.metrics["val"]) == ["accuracy"] and len(outcome.metrics["test"]) > 1
    held_out = [row["val_accuracy"] for row in outcome.history[:3]]  # one epoch per fold
    assert outcome.metrics["val"]["accuracy"] == pytest.approx(sum(held_out) / 3)


def test_many_domains_are_prepared_together_each_failure_its_own(world, tmp_path):
    """Five domains: validated in parallel processes, tracked with one `dvc add` and pushed
    with one `dvc push`; a domain with a bad row is refused alone, and the next preparation
    finds the others unchanged without validating them again."""
    from flows.pipeline import prepare_many

    root, registry, versioner, _ = world
    domains = [tiny_domain(root, name=f"shop-{i}") for i in range(5)]
    rows = read_csv_rows(domains[0])
    rows[3]["label"] = "Sneakr"
    (domains[0].metadata_path).write_text(
        "image,split,label\n" + "".join(f"{r['image']},{r['split']},{r['label']}\n" for r in rows)
    )
    stages = []
    first = prepare_many(
        domains, versioner, registry, tmp_path / "reports", on_stage=lambda d, s: stages.append(s)
    )
    refused = first["shop-0"]
    assert refused.invalid and "'Sneakr'" in refused.message
    assert not (domains[0].root / "data.dvc").exists()  # refused before DVC saw it
    ready = [first[d.name] for d in domains[1:]]
    assert all(p.validation == "passed" and p.data.md5 for p in ready)
    assert {registry.data_version(p.domain.name, p.data.md5).validation_passed for p in ready} == {
        True
    }
    assert stages.count("validating") == 5 and stages.count("versioning") == 4
    again = prepare_many(domains[1:], versioner, registry, tmp_path / "reports")
    assert [again[p.domain.name].validation for p in ready] == ["unchanged"] * 4
    assert [again[p.domain.name].data.md5 for p in ready] == [p.data.md5 for p in ready]


def test_tracking_many_folders_refuses_a_linked_one_alone(world):
    root, _, versioner, _ = world
    domains = [tiny_domain(root, name=f"shop-{i}") for i in range(3)]
    (domains[1].data_dir / "images" / "link.png").symlink_to(domains[0].data_dir / "metadata.csv")
    tracked = versioner.track_many([d.data_dir for d in domains])
    by_name = {path.parent.name: result for path, result in tracked.items()}
    assert "symbolic link" in str(by_name["shop-1"]) and not (domains[1].root / "data.dvc").exists()
    assert by_name["shop-0"].md5 and by_name["shop-2"].md5


def test_the_shares_of_an_embedding_pass_cover_every_image_once(world, tmp_path):
    from flows.worker import embed_part
    from mpt_core.featurestore import FeatureStore

    from .retrain_fixtures import pushed_job

    job = pushed_job(tmp_path / "shared", "vqa", "fabric")  # two rows per image
    backbone = load_ref(TINY)
    store = FeatureStore(tmp_path / "features")
    cache = DataCache(tmp_path / "cache")
    counts = [embed_part(backbone, job, i, 3, cache=cache, store=store) for i in range(3)]
    images = {e.image for split in job_examples(job, cache).values() for e in split}
    assert sum(counts) == len(images) and all(counts)
    outcome = run_tune_job(backbone, job, cache=cache, store=store)
    assert (outcome.features["images"], outcome.features["embedded"]) == (len(images), 0)
