"""The README's registry walk-through, from the CLI: register, request, approve as another
user, history, roll back."""

from __future__ import annotations

import json

import pytest

from flows.cli import main
from mpt_core import ClassificationTask, build_prompts, save_prompts, tiny_backbone


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


def test_walk_through(artifacts, tmp_path, capsys):
    md5 = "0" * 32
    good = write_metrics(tmp_path / "m1.json", 0.80, 0.8, 0.8)
    better = write_metrics(tmp_path / "m2.json", 0.90, 0.9, 0.9)
    for artifact, metrics in zip(artifacts[:2], (good, better), strict=True):
        code, out, _ = run(
            capsys,
            "registry",
            "register",
            "pets",
            str(artifact),
            "--data-version",
            md5,
            "--metrics",
            metrics,
            "--user",
            "trainer",
        )
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
    run(
        capsys,
        "registry",
        "register",
        "pets",
        str(artifacts[0]),
        "--data-version",
        md5,
        "--metrics",
        write_metrics(tmp_path / "a.json", 0.8, 0.9, 0.7),
    )
    run(
        capsys,
        "registry",
        "register",
        "pets",
        str(artifacts[1]),
        "--data-version",
        md5,
        "--metrics",
        write_metrics(tmp_path / "b.json", 0.81, 0.6, 0.99),
    )
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
