"""The README's registry walk-through, from the CLI: register, request, approve as another
user, history, roll back."""

from __future__ import annotations

import json
import shutil

import pytest

from cli import main
from mpt_core import ClassificationTask, build_prompts, load_backbone, save_prompts, tiny_backbone
from mpt_core.artifacts import CONFIG

PETS = """\
task: classification
labels: [cat, dog]
backbone: {family: shipped, name: tiny}
promotion: {metric: accuracy, max_class_regression: 0.05}
"""


@pytest.fixture(autouse=True)
def pets_domain(tmp_path):
    """The domain folder whose promotion policy the CLI applies (the cwd is tmp_path)."""
    folder = tmp_path / "domains" / "pets"
    folder.mkdir(parents=True)
    (folder / "domain.yaml").write_text(PETS)
    return folder


@pytest.fixture
def artifacts(tmp_path):
    backbone = tiny_backbone("shipped")
    out = []
    for seed in (1, 2, 3):
        model = build_prompts(backbone, "mpt", ClassificationTask(["cat", "dog"]), seed=seed)
        out.append(save_prompts(model, tmp_path / f"artifact-{seed}"))
    return out


def write_metrics(path, accuracy, cat, dog):
    path.write_text(
        json.dumps({"test": {"accuracy": accuracy, "per_class_accuracy": {"cat": cat, "dog": dog}}})
    )
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def register(capsys, artifact, data_version, metrics, *more):
    """`mpt registry register pets ARTIFACT --data-version MD5 --metrics FILE [more...]`."""
    return run(
        capsys,
        *("registry", "register", "pets", str(artifact), "--data-version", data_version),
        *("--metrics", str(metrics), *more),
    )


def test_walk_through(artifacts, tmp_path, capsys):
    md5 = "0" * 32
    good = write_metrics(tmp_path / "m1.json", 0.80, 0.8, 0.8)
    better = write_metrics(tmp_path / "m2.json", 0.90, 0.9, 0.9)
    for artifact, metrics in zip(artifacts[:2], (good, better), strict=True):
        code, out, _ = register(capsys, artifact, md5, metrics, "--user", "trainer")
        assert code == 0 and "registered pets v" in out
    code, out, _ = run(capsys, "registry", "list", "pets")
    assert code == 0 and "accuracy=0.9000" in out

    assert run(capsys, "promote", "request", "pets", "1", "--user", "ana")[0] == 0
    code, _, err = run(capsys, "promote", "approve", "1", "--user", "ana")
    assert code == 2 and "cannot review it" in err
    code, out, _ = run(capsys, "promote", "approve", "1", "--user", "ben", "--comment", "ok")
    assert code == 0 and "pets:production -> v1" in out

    assert run(capsys, "promote", "request", "pets", "2", "--user", "ana")[0] == 0
    assert run(capsys, "promote", "approve", "2", "--user", "ben")[0] == 0
    code, out, _ = run(capsys, "registry", "show", "pets", "2")
    assert "aliases: production" in out and "per_class_accuracy: cat=0.900" in out
    code, out, _ = run(capsys, "registry", "diff", "pets", "1", "2")
    assert code == 0 and "+0.1000" in out

    code, out, _ = run(
        capsys, "promote", "rollback", "pets", "1", "--reason", "v2 broke checkout", "--user", "ops"
    )
    assert code == 0 and "v2 -> v1" in out
    code, out, _ = run(capsys, "registry", "history", "pets", "--json")
    kinds = [(h["kind"], h["from_version"], h["to_version"], h["actor"]) for h in json.loads(out)]
    assert kinds == [
        ("promotion", None, 1, "ben"),
        ("promotion", 1, 2, "ben"),
        ("rollback", 2, 1, "ops"),
    ]
    code, out, _ = run(capsys, "registry", "history", "pets", "--at", "2000-01-01T00:00")
    assert "not set" in out


def test_failed_policy_needs_an_override(artifacts, tmp_path, capsys):
    md5 = "1" * 32
    register(capsys, artifacts[0], md5, write_metrics(tmp_path / "a.json", 0.8, 0.9, 0.7))
    register(capsys, artifacts[1], md5, write_metrics(tmp_path / "b.json", 0.81, 0.6, 0.99))
    run(capsys, "promote", "request", "pets", "1", "--user", "ana")
    run(capsys, "promote", "approve", "1", "--user", "ben")
    code, out, _ = run(capsys, "promote", "request", "pets", "2", "--user", "ana")
    assert "policy: 1 class(es) regress" in out and "FAILED" in out
    code, _, err = run(capsys, "promote", "approve", "2", "--user", "ben")
    assert code == 2 and "--override" in err
    code, out, _ = run(
        capsys, "promote", "approve", "2", "--user", "ben", "--override", "cats matter less"
    )
    assert code == 0 and "(override)" in out
    assert run(capsys, "registry", "gc", "--dry-run")[1].startswith("would remove 0")


def test_the_policy_comes_from_domain_yaml_whoever_requests(artifacts, tmp_path, capsys):
    (tmp_path / "domains" / "pets" / "domain.yaml").write_text(
        PETS.replace("metric: accuracy", "metric: macro_f1")
    )
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"test": {"accuracy": 0.9, "macro_f1": 0.7}}))
    register(capsys, artifacts[0], "2" * 32, metrics)
    code, out, _ = run(capsys, "promote", "request", "pets", "1", "--user", "ana", "--json")
    assert code == 0 and json.loads(out)["policy_report"]["policy"]["metric"] == "macro_f1"


def test_a_request_for_a_domain_without_its_folder_says_where_the_policy_lives(capsys):
    code, _, err = run(capsys, "promote", "request", "nowhere", "1", "--user", "ana")
    assert code == 2 and "no domain 'nowhere'" in err and "promotion:" in err
    assert "Traceback" not in err


def test_register_refuses_broken_artifacts_and_other_backbones(artifacts, tmp_path, capsys):
    metrics = write_metrics(tmp_path / "m.json", 0.8, 0.8, 0.8)
    base = ["registry", "register", "pets", "--data-version", "3" * 32, "--metrics", metrics]
    other = build_prompts(tiny_backbone("shipped", seed=5), "coop", ClassificationTask(["a", "b"]))
    cases = {
        "missing": (tmp_path / "nowhere", "is not a directory"),
        "other backbone": (save_prompts(other, tmp_path / "other"), "declares shipped:tiny"),
    }
    for name, (artifact, expected) in cases.items():
        code, _, err = run(capsys, *base[:3], str(artifact), *base[3:])
        assert code == 2 and expected in err, name
        assert "Traceback" not in err
    code, _, err = run(capsys, *base[:3], str(artifacts[0]), *base[3:6], str(tmp_path / "x.json"))
    assert code == 2 and "--metrics" in err and "file not found" in err
    assert run(capsys, "registry", "list", "pets")[1].strip() == "(none)"


def test_list_judges_each_version_by_the_primary_metric_stored_with_it(artifacts, tmp_path, capsys):
    """A retrain stores its domain's primary metric with the version; a version without
    one (registered by hand, or before it was stored) is judged by its task's."""
    from mpt_core.artifacts import CONFIG
    from registry import open_registry

    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"test": {"accuracy": 0.9, "macro_f1": 0.7}}))
    register(capsys, artifacts[0], "4" * 32, metrics)
    open_registry().register_version(
        "pets",
        artifacts[1],
        method="mpt",
        config={},
        data_version="4" * 32,
        backbone=json.loads((artifacts[1] / CONFIG).read_text())["backbone"],
        metrics=json.loads(metrics.read_text()),
        created_by="retrain-flow",
        primary_metric="macro_f1",
    )
    code, out, _ = run(capsys, "registry", "list", "pets")
    rows = [line.split() for line in out.splitlines() if line.startswith("pets")]
    assert code == 0 and [(row[1], row[5]) for row in rows] == [
        ("1", "accuracy=0.9000"),
        ("2", "macro_f1=0.7000"),
    ]


def test_register_without_the_domain_folder_checks_the_weights_it_records(
    artifacts, tmp_path, capsys
):
    """No domain folder here and no cached weights hash: the hash of the backbone the
    artifact names is computed (by loading it), never assumed to match."""
    metrics = write_metrics(tmp_path / "m.json", 0.8, 0.8, 0.8)
    tampered = tmp_path / "tampered"
    shutil.copytree(artifacts[0], tampered)
    config = json.loads((tampered / CONFIG).read_text())
    config["backbone"]["weights_sha256"] = "f" * 64  # trained on other weights, it says
    (tampered / CONFIG).write_text(json.dumps(config))
    base = ["registry", "register", "shop", "--data-version", "5" * 32, "--metrics", metrics]
    code, _, err = run(capsys, *base[:3], str(tampered), *base[3:])
    assert code == 2 and "here has weights sha256" in err and "ffffffffffff" in err, err
    assert "re-tune it on these" in err and "Traceback" not in err
    code, out, _ = run(capsys, *base[:3], str(artifacts[0]), *base[3:])
    assert code == 0 and "registered shop v1" in out


def test_register_compares_identities_not_names(artifacts, tmp_path, capsys):
    """The domain declares a backbone by family and name; the artifact records the
    identity that declaration resolved to (its weights' sha256): same weights, accepted;
    another family, refused."""
    metrics = write_metrics(tmp_path / "m.json", 0.8, 0.8, 0.8)
    (tmp_path / "domains" / "pets" / "domain.yaml").write_text(
        PETS.replace("backbone: {family: shipped, name: tiny}", "backbone: {family: hf-clip}")
    )
    base = ["registry", "register", "pets", "--data-version", "6" * 32, "--metrics", metrics]
    code, _, err = run(capsys, *base[:3], str(artifacts[0]), *base[3:])
    assert code == 2 and "the backbone domain 'pets' declares: hf-clip:openai/" in err
    assert "cannot be loaded here" in err and "Fix: register on a machine where" in err
    clip = build_prompts(tiny_backbone("hf-clip"), "mpt", ClassificationTask(["cat", "dog"]))
    (tmp_path / "domains" / "pets" / "domain.yaml").write_text(PETS)
    code, _, err = run(capsys, *base[:3], str(save_prompts(clip, tmp_path / "clip")), *base[3:])
    assert code == 2 and "declares shipped:tiny" in err and "hf-clip:tiny" in err


@pytest.mark.slow
def test_register_accepts_what_a_run_on_the_default_backbone_produced(tmp_path, capsys):
    """A domain.yaml that names no backbone gets the shipped default, whose artifacts
    record its identity name (minilm-l6-v2+efficientnet-lite0@160px/...), not "default"."""
    folder = tmp_path / "domains" / "retail"
    folder.mkdir(parents=True)
    (folder / "domain.yaml").write_text(
        "task: classification\nlabels: [cat, dog]\npromotion: {metric: accuracy}\n"
    )
    backbone = load_backbone("shipped")  # as the run's worker does, for that domain
    model = build_prompts(backbone, "coop", ClassificationTask(["cat", "dog"]))
    artifact = save_prompts(model, tmp_path / "run-output")
    metrics = write_metrics(tmp_path / "m.json", 0.8, 0.8, 0.8)
    code, out, err = run(
        capsys,
        *("registry", "register", "retail", str(artifact), "--data-version", "7" * 32),
        *("--metrics", metrics),
    )
    assert code == 0 and "registered retail v1" in out, err
