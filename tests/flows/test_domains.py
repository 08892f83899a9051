"""domain.yaml schema, discovery with broken domains, scaffolding, demo data preparation."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest

from cli import main
from flows.domains import DomainConfigError, discover, get_domain, load_domain_config
from flows.domains.prepare import PREPARERS, prepare
from flows.domains.scaffold import scaffold_domain
from flows.validation import validate_domain
from mpt_core import PRESETS, TASKS
from mpt_core.spec import TuneSpec
from registry import MonitoringSettings
from registry.policy import ShadowRule

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "task: classifcation\nlabels: [a, b]\n",
            [
                f"task: unknown task 'classifcation'; allowed: {', '.join(TASKS.names())}",
                "got 'classifcation'",
            ],
        ),
        (
            "task: classification\nlabels: [0, 1, 2]\n",
            ["labels: YAML reads unquoted numbers as numbers (0)", 'quote them, e.g. ["0", "1"'],
        ),
        ("task: classification\n", ["task 'classification' needs 'labels'"]),
        ("task: vqa\nanswers: {'q?': ['yes']}\n", ["needs at least 2 distinct candidate answers"]),
        (
            "task: vqa\nanswers: {'q?': [yes, no]}\n",
            ["answers: YAML reads unquoted yes/no", '["yes", "no"]'],
        ),
        (
            "task: retrieval\nlabels: [a, b]\n",
            ["'labels' is not used by task 'retrieval'; remove it"],
        ),
        (
            "task: retrieval\ntuning: {epochs: 0, lrr: 1}\n",
            [
                "tuning.epochs: Input should be greater than or equal to 1",
                "tuning.lrr: unknown field",
            ],
        ),
        (
            "task: retrieval\nprompts: {preset: best}\n",
            [f"prompts.preset: unknown preset 'best'; allowed: {', '.join(PRESETS.names())}"],
        ),
        (
            "task: retrieval\nschedule: {cron: '* *'}\n",
            ["schedule.cron: cron '* *' must have 5 fields"],
        ),
        ("task: retrieval\nschedule: {timezone: Mars/Base}\n", ["unknown time zone 'Mars/Base'"]),
        (
            "task: retrieval\npromotion: {metric: accuracy}\n",
            ["promotion.metric 'accuracy' is not reported by task 'retrieval'; allowed: r1_mean"],
        ),
        (
            "task: retrieval\ndata: {metadata: ../../etc/passwd}\n",
            ["data.metadata: must be a path inside the domain's data/ folder"],
        ),
        (
            "task: retrieval\nmonitoring: {shadow_fraction: 10, window: 5, keep_image: true}\n",
            [
                "monitoring.shadow_fraction: must be a share from 0 to 1",
                "a percentage like 10 is written 0.1 (got 10)",
                "monitoring.window: Input should be greater than or equal to 50 (got 5)",
                "monitoring.keep_image: unknown field",
            ],
        ),
        (
            "task: retrieval\nmonitoring: {shadow_alias: production, drift_threshold: 0}\n",
            [
                "monitoring.shadow_alias: production cannot shadow itself; name another alias",
                "monitoring.drift_threshold: Input should be greater than 0 (got 0)",
            ],
        ),
        (
            "task: retrieval\npromotion: {shadow: {min_requests: -1, min_agreement: 90}}\n",
            [
                "promotion.shadow.min_requests: Input should be greater than or equal to 0",
                "promotion.shadow.min_agreement: Input should be less than or equal to 1 (got 90)",
            ],
        ),
        ("task: [unclosed\n", ["not valid YAML"]),
        ("- a list\n", ["expected a mapping of fields"]),
    ],
)
def test_schema_errors_name_the_file_field_and_fix(tmp_path, yaml_text, expected):
    path = write(tmp_path / "shop" / "domain.yaml", yaml_text)
    with pytest.raises(DomainConfigError) as err:
        load_domain_config(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message


def test_short_file_gets_sensible_defaults(tmp_path):
    config = load_domain_config(
        write(tmp_path / "shop" / "domain.yaml", "task: classification\nlabels: [a, b]\n")
    )
    assert config.name == "shop"
    assert config.prompts.preset == "mpt" and config.backbone.family == "shipped"
    assert config.primary_metric == "accuracy"
    assert config.build_task().class_names == ["a", "b"]
    assert config.monitoring.settings() == MonitoringSettings()  # no shadow, no retrain
    assert config.promotion_policy().shadow is None


def test_monitoring_and_the_shadow_rule_reach_the_registrys_records(tmp_path):
    text = (
        "task: classification\nlabels: [a, b]\n"
        "promotion: {shadow: {min_requests: 200, min_agreement: 0.9}}\n"
        "monitoring:\n  shadow_fraction: 0.25\n  shadow_alias: staging\n"
        "  keep_images: true\n  window: 500\n  drift_threshold: 0.3\n  cooldown_hours: 6\n"
    )
    config = load_domain_config(write(tmp_path / "shop" / "domain.yaml", text))
    assert config.monitoring.settings() == MonitoringSettings(
        shadow_fraction=0.25,
        shadow_alias="staging",
        keep_images=True,
        window=500,
        drift_threshold=0.3,
        cooldown_hours=6.0,
    )
    assert config.promotion_policy().shadow == ShadowRule(min_requests=200, min_agreement=0.9)


def test_tuning_final_reaches_the_spec_the_workers_get(tmp_path):
    """`tuning.final: swa` (the averaged fit) travels in the TuneSpec, through its dict form;
    the default keeps the best validation epoch; an unknown value names the allowed ones."""
    text = "task: classification\nlabels: [a, b]\n"
    default = load_domain_config(write(tmp_path / "a" / "domain.yaml", text)).tune_spec()
    assert default.train.final == "best"
    swa = load_domain_config(
        write(tmp_path / "b" / "domain.yaml", text + "tuning: {final: swa}\n")
    ).tune_spec()
    assert swa.train.final == "swa" and TuneSpec.from_dict(swa.to_dict()).train.final == "swa"
    assert swa.key() != default.key()
    with pytest.raises(DomainConfigError, match=r"tuning\.final"):
        load_domain_config(write(tmp_path / "c" / "domain.yaml", text + "tuning: {final: ema}\n"))
    folds = load_domain_config(
        write(tmp_path / "d" / "domain.yaml", text + "tuning: {final: refit, folds: 4}\n")
    ).tune_spec()
    again = TuneSpec.from_dict(folds.to_dict()).train
    assert (again.final, again.folds) == ("refit", 4) and folds.key() != default.key()
    with pytest.raises(DomainConfigError, match=r"tuning\.folds"):
        load_domain_config(write(tmp_path / "e" / "domain.yaml", text + "tuning: {folds: 1}\n"))


def test_discovery_reports_a_broken_domain_and_loads_the_others(tmp_path):
    write(tmp_path / "good" / "domain.yaml", "task: retrieval\n")
    write(tmp_path / "broken" / "domain.yaml", "task: nope\n")
    write(tmp_path / "renamed" / "domain.yaml", "name: other\ntask: retrieval\n")
    (tmp_path / "not-a-domain").mkdir()
    found = discover(tmp_path)
    assert list(found.domains) == ["good"]
    assert set(found.errors) == {"broken", "renamed"}
    assert "differs from its folder 'renamed'" in found.errors["renamed"]
    with pytest.raises(DomainConfigError, match="no domain 'missing' under"):
        get_domain(tmp_path, "missing")


def test_cli_list_shows_broken_domains_and_exits_nonzero(tmp_path, capsys):
    write(tmp_path / "good" / "domain.yaml", "task: retrieval\n")
    write(tmp_path / "broken" / "domain.yaml", "task: nope\n")
    assert main(["domain", "list", "--domains-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "good" in out and "broken: see below" in out and "unknown task 'nope'" in out


@pytest.mark.parametrize("task", TASKS.names())
def test_scaffold_writes_a_valid_commented_domain(tmp_path, task, capsys):
    assert main(["domain", "new", "widgets", "--task", task, "--domains-dir", str(tmp_path)]) == 0
    root = tmp_path / "widgets"
    assert (root / "README.md").exists() and (root / "data" / "images").is_dir()
    text = (root / "domain.yaml").read_text()
    assert text.count("#") > 10
    assert load_domain_config(root / "domain.yaml").task == task
    header = (root / "data" / "metadata.csv").read_text().strip().split(",")
    assert header[:2] == ["image", "split"]
    with pytest.raises(DomainConfigError, match="already exists"):
        scaffold_domain(tmp_path, "widgets", task)
    with pytest.raises(DomainConfigError, match="not a domain name"):
        scaffold_domain(tmp_path, "Bad Name", task)


def test_repository_demo_domains_load():
    found = discover(REPO / "domains")
    assert sorted(found.domains) == ["manufacturing", "medical", "retail"] and not found.errors
    assert {d.config.task for d in found.domains.values()} == {"classification", "retrieval", "vqa"}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("name", PREPARERS.names())
def test_demo_data_is_deterministic_and_matches_its_domain(tmp_path, name):
    first = prepare(name, tmp_path / "a")
    second = prepare(name, tmp_path / "b")
    assert first == second > 0
    assert _tree_digest(tmp_path / "a" / name / "data") == _tree_digest(
        tmp_path / "b" / name / "data"
    )
    config = load_domain_config(REPO / "domains" / name / "domain.yaml")
    with open(tmp_path / "a" / name / "data" / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    task = config.build_task()
    if config.task == "classification":
        assert {r["label"] for r in rows} == set(task.class_names)
    elif config.task == "vqa":
        assert all(r["answer"] in task.candidates(r["question"]) for r in rows)
    else:
        assert all(len(r["caption"]) >= config.validation.caption_length[0] for r in rows)
    shutil.copy(REPO / "domains" / name / "domain.yaml", tmp_path / "a" / name / "domain.yaml")
    report = validate_domain(get_domain(tmp_path / "a", name))
    assert report.passed, report.summary


def test_cli_version_tracks_and_pushes_to_the_local_remote(tmp_path, monkeypatch, capsys):
    import json
    import subprocess

    from PIL import Image

    repo = tmp_path / "repo"
    data = repo / "domains" / "shop" / "data"
    (data / "images").mkdir(parents=True)
    write(repo / "domains" / "shop" / "domain.yaml", "task: retrieval\n")
    Image.new("RGB", (16, 16), "red").save(data / "images" / "a.png")
    (data / "metadata.csv").write_text("image,split,caption\nimages/a.png,train,a red square\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.setenv("MPT_DVC_REMOTE", str(tmp_path / "remote"))
    args = ["domain", "version", "shop", "--push", "--json", "--domains-dir", str(repo / "domains")]
    assert main(args) == 0
    [first] = json.loads(capsys.readouterr().out)
    assert len(first["data_version"]) == 32 and first["files"] == 2
    assert (repo / "domains" / "shop" / "data.dvc").exists()
    assert any((tmp_path / "remote").rglob("*"))
    Image.new("RGB", (16, 16), "blue").save(data / "images" / "a.png")
    assert main(args) == 0
    [second] = json.loads(capsys.readouterr().out)
    assert second["data_version"] != first["data_version"]
    # several at once, as `mpt domain prepare` takes them
    other = repo / "domains" / "mall"
    write(other / "domain.yaml", "task: retrieval\n")
    (other / "data" / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16), "green").save(other / "data" / "images" / "b.png")
    (other / "data" / "metadata.csv").write_text("image,split,caption\nimages/b.png,train,x\n")
    both = ["domain", "version", "shop", "mall", "--json", "--domains-dir", str(repo / "domains")]
    assert main(both) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["domain"] for r in rows] == ["shop", "mall"] and (other / "data.dvc").exists()
    assert rows[0]["data_version"] == second["data_version"]


def test_cli_version_outside_git_is_a_clear_error(tmp_path, capsys):
    write(tmp_path / "domains" / "shop" / "domain.yaml", "task: retrieval\n")
    (tmp_path / "domains" / "shop" / "data").mkdir()
    assert main(["domain", "version", "shop", "--domains-dir", str(tmp_path / "domains")]) == 2
    assert "not inside a git repository" in capsys.readouterr().err


def test_cli_check_passes_a_good_domain_and_names_the_bad_row(tmp_path, capsys):
    from .domain_factory import make_domain, read_rows, write_rows

    domain = make_domain(tmp_path, "classification", name="shop")
    args = ["domain", "check", "shop", "--domains-dir", str(tmp_path / "domains")]
    assert main([*args, "--report-dir", str(tmp_path / "report")]) == 0
    assert "passed" in capsys.readouterr().out
    assert (tmp_path / "report" / "data_docs" / "index.html").exists()
    rows = read_rows(domain)
    rows[3]["label"] = "Sneakr"
    write_rows(domain, rows)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "row 4" in out and "'Sneakr'" in out
