"""Every command with bad input: one `mpt: error:` message with the fix, never a traceback;
services that are down make `mpt run` fail in seconds, having written nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from cli import main

from ..flows.domain_factory import make_domain
from ..servers import free_port


@pytest.fixture
def workspace(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    make_domain(tmp_path, "classification", name="shop")
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "prompt_config.json").write_text("{broken")
    (tmp_path / "art" / "prompts.safetensors").write_bytes(b"\x80\x04pickle")
    return tmp_path


MD5 = "0" * 32
BAD = {
    "register: missing directory": (
        ["registry", "register", "shop", "nowhere", "--data-version", MD5, "--metrics", "m.json"],
        "is not a directory",
    ),
    "register: invalid prompt_config.json": (
        ["registry", "register", "shop", "art", "--data-version", MD5, "--metrics", "m.json"],
        "is not valid JSON",
    ),
    "history --at yesterday": (["registry", "history", "shop", "--at", "yesterday"], "ISO 8601"),
    "show: unknown domain": (["registry", "show", "nope", "1"], "has no registered versions"),
    "approve: unknown request": (["promote", "approve", "99", "--user", "ben"], "#99"),
    "reject: no comment": (["promote", "reject", "1", "--comment", " ", "--user", "b"], "comment"),
    "await: no Prefect server": (["promote", "await", "1"], "needs a Prefect server"),
    "domain check: unknown domain": (["domain", "check", "nope"], "no domain 'nope'"),
    "domain new: unknown task": (["domain", "new", "x", "--task", "dance"], "unknown task"),
    "domain new: bad name": (["domain", "new", "Bad Name", "--task", "vqa"], "not a domain name"),
    "backbone: unknown family": (["backbone", "nope"], "unknown backbone family 'nope'"),
    "backbone: missing checkpoint": (["backbone", "hf-clip:/no/such/dir"], "could not be loaded"),
    "serve --ray: a cluster that cannot be joined": (
        ["serve", "--ray", "--address", "not-an-address"],
        "cannot connect to the Ray cluster at not-an-address",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_message_and_no_traceback(case, workspace, capsys):
    argv, expected = BAD[case]
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, case
    assert err.startswith("mpt: error: ") and expected in err, err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(workspace, capsys):
    assert main(["--debug", "registry", "history", "shop", "--at", "yesterday"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_registry_upgrade_with_the_database_down(monkeypatch, capsys):
    monkeypatch.setenv("MPT_DATABASE_URL", f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x")
    assert main(["registry", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "is not reachable" in err and "MPT_DATABASE_URL" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MPT_DATABASE_URL", "postgresql+psycopg://x@127.0.0.1:{port}/x", "registry database"),
        ("MPT_ARTIFACT_STORE", "s3://bucket/prefix", "artifact store"),
        ("MPT_DVC_REMOTE", "s3://bucket/prefix", "DVC remote"),
    ],
)
def test_mpt_run_with_a_service_down_fails_fast_and_writes_nothing(
    workspace, monkeypatch, capsys, variable, value, expected
):
    port = free_port()
    monkeypatch.setenv(variable, value.format(port=port))
    monkeypatch.setenv("MPT_ARTIFACT_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MPT_DVC_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    before = sorted(p for p in workspace.rglob("*") if ".git" not in p.parts)
    started = time.monotonic()
    code = main(["run", "--domains-dir", str(workspace / "domains")])
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "nothing was written" in err, err
    assert seconds < 15
    after = sorted(p for p in workspace.rglob("*") if ".git" not in p.parts)
    assert after == before and not (workspace / "domains" / "shop" / "data.dvc").exists()


def test_the_cli_starts_without_torch_prefect_ray_or_the_database_layer():
    heavy = ("torch", "prefect", "ray", "great_expectations", "transformers")
    heavy += ("sqlalchemy", "alembic", "boto3")  # the registry's, until a command needs it
    code = (
        "import sys; from cli import main; main(['version']); "
        f"heavy = [m for m in {heavy!r} if m in sys.modules]; "
        "sys.exit(str(heavy) if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_domain_check_is_the_full_preflight(tmp_path, capsys):
    domain = make_domain(tmp_path, "classification", name="shop")
    config = domain.root / "domain.yaml"
    base = config.read_text()
    config.write_text(base + "backbone: {family: hf-clip, name: /no/such/checkpoint}\n")
    assert main(["domain", "check", "shop", "--domains-dir", str(tmp_path / "domains")]) == 1
    assert "does not load" in capsys.readouterr().out
    config.write_text(
        base + "backbone: {family: shipped, name: tiny}\n"
        "prompts: {preset: coop, overrides: {text_depth: 9}}\n"
    )
    assert main(["domain", "check", "shop", "--domains-dir", str(tmp_path / "domains")]) == 1
    assert "prompts.overrides: prompt config text_depth=9" in capsys.readouterr().out
    config.write_text(base + "schedule: {cron: '61 25 * * 9'}\n")
    assert main(["domain", "check", "shop", "--domains-dir", str(tmp_path / "domains")]) == 2
    err = capsys.readouterr().err
    assert "cron '61 25 * * 9': minute '61', hour '25', weekday '9' are not valid" in err
    assert "Fix: write minute as 0-59, hour as 0-23, weekday as 0-6 or sun-sat" in err
    config.write_text(base + "backbone: {family: shipped, name: tiny}\n")
    code = main(["domain", "check", "shop", "--json", "--domains-dir", str(tmp_path / "domains")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] and report["problems"] == []
    assert "max_class_regression" in report["warnings"][0]  # 4 test images per class


def test_a_new_task_is_one_mpt_core_module(tmp_path, monkeypatch):
    """A task registered in mpt_core is scaffolded, validated and read with no edit here."""
    from flows.dataset import layout_of, read_rows
    from flows.domains import get_domain
    from flows.domains.scaffold import scaffold_domain
    from flows.validation import validate_domain
    from mpt_core import TASKS
    from mpt_core.tasks import ClassificationTask, TaskContract, ValueSet

    class ColourTask(ClassificationTask):
        name = "colour-test"
        contract = TaskContract(
            fields=("answer",),
            metrics=("accuracy",),
            primary_metric="accuracy",
            target="answer",
            value_set=ValueSet("answer", "labels"),
            group_metric="per_class_accuracy",
            group_field="answer",
            declaration_help="labels: [red, blue]\n",
        )

    monkeypatch.setitem(TASKS._entries, "colour-test", ColourTask)
    root = scaffold_domain(tmp_path / "domains", "paint", "colour-test")
    assert (root / "data" / "metadata.csv").read_text() == "image,split,answer\n"
    from ..flows.domain_factory import write_png

    rows = ["image,split,answer"]
    for i, (split, colour) in enumerate(
        (s, c) for s in ("train", "val", "test") for c in ("red", "blue") for _ in range(2)
    ):
        write_png(root / "data" / "images" / f"{i}.png", seed=i)
        rows.append(f"images/{i}.png,{split},{colour}")
    (root / "data" / "metadata.csv").write_text("\n".join(rows) + "\n")
    domain = get_domain(tmp_path / "domains", "paint")
    assert validate_domain(domain).passed
    rows[3] = rows[3].replace("red", "green").replace("blue", "green")
    (root / "data" / "metadata.csv").write_text("\n".join(rows) + "\n")
    report = validate_domain(domain)
    assert not report.passed and "answer: 1 row not in the declared labels" in report.summary
    assert {r.fields["answer"] for r in read_rows(layout_of(domain.config), domain.data_dir)} >= {
        "red"
    }


def test_run_table_shows_the_failing_row_and_no_review_hint_without_candidates(capsys):
    from cli.commands.run import _print_table
    from flows.pipeline import DomainResult

    message = (
        "shop: FAILED: 1 problem(s) in domains/shop/data/metadata.csv, 24 rows\n"
        "  - label: 1 row not in the declared labels ['boot', 'shirt']: row 17 (images/a.png) "
        "'Sneakr'"
    )
    _print_table(
        [DomainResult("shop", "invalid", validation="FAILED", message=message).to_dict()], 1.0
    )
    out = capsys.readouterr().out
    assert "row 17 (images/a.png) 'Sneakr'" in out and "promote list" not in out
    assert "1 domain(s) failed" in out


@pytest.mark.parametrize(
    "tag",
    ["!!python/object/apply:os.system ['echo hi']", "!!python/name:os.system", "!include x.yaml"],
)
def test_a_yaml_tag_is_refused_with_the_fix(tmp_path, capsys, tag):
    domain = make_domain(tmp_path, "classification", name="shop")
    config = domain.root / "domain.yaml"
    config.write_text(config.read_text() + f"description: {tag}\n")
    assert main(["domain", "check", "shop", "--domains-dir", str(tmp_path / "domains")]) == 2
    err = capsys.readouterr().err
    shown = tag.split()[0]
    assert f"the tag {shown} is not allowed" in err and "Fix: remove the tag" in err, err
    assert "could not determine a constructor" not in err and "Traceback" not in err


DEEP_JSON = "[" * 100_000 + "]" * 100_000


def test_hostile_files_give_one_message_and_no_traceback(workspace, capsys):
    """Files nested deeper than a parser can follow, numbers JSON cannot carry, bytes that
    are not UTF-8: each named, with what to do, never `unexpected RecursionError`."""
    from mpt_core import ClassificationTask, build_prompts, save_prompts, tiny_backbone

    good = save_prompts(
        build_prompts(tiny_backbone("shipped"), "coop", ClassificationTask(["a", "b"])),
        workspace / "good",
    )
    deep_config = workspace / "deep"
    deep_config.mkdir()
    (deep_config / "prompt_config.json").write_text(DEEP_JSON)
    (deep_config / "prompts.safetensors").write_bytes((good / "prompts.safetensors").read_bytes())
    (workspace / "deep.json").write_text(DEEP_JSON)
    (workspace / "digits.json").write_text('{"test": {"accuracy": ' + "1" * 5000 + "}}")
    register = ["registry", "register", "elsewhere"]
    cases = {
        "metrics nested too deep": (
            [*register, "good", "--data-version", MD5, "--metrics", "deep.json"],
            "--metrics deep.json: not a JSON file (maximum recursion depth exceeded",
        ),
        "metrics with a 5,000-digit number": (
            [*register, "good", "--data-version", MD5, "--metrics", "digits.json"],
            "--metrics digits.json: not a JSON file (Exceeds the limit (4300 digits)",
        ),
        "an artifact config nested too deep": (
            [*register, "deep", "--data-version", MD5, "--metrics", "digits.json"],
            "prompt_config.json) is not valid JSON (maximum recursion depth exceeded",
        ),
    }
    config = workspace / "domains" / "shop" / "domain.yaml"
    for name, (argv, expected) in cases.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("mpt: error: ") and expected in err, (name, err)
        assert "unexpected" not in err and "Traceback" not in err
    for content, expected in (
        ("task: classification\nlabels: " + DEEP_JSON + "\n", "nests deeper than the parser"),
        (b"task: classification\nlabels: [caf\xe9]\n", "not UTF-8 text"),
    ):
        config.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert main(["domain", "check", "shop"]) == 2
        err = capsys.readouterr().err
        assert expected in err and "unexpected" not in err, err
