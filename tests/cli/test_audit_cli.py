"""Every `mpt` command that changes the registry leaves an audit record; the others change
nothing. The commands are enumerated from the CLI's own parser: a new command fails the
first test until it is listed here, with a call or with the test that covers it.

(`tests/registry/test_audit.py` does the same for `PromptRegistry`'s public methods.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli import build_parser
from registry import open_registry

from ..registry.test_audit import audit_ids, state
from .test_pull_and_evaluate import artifacts, data_version, run, shop  # noqa: F401 (fixtures)

ACTS = {
    ("registry", "register"): "register",
    ("registry", "evaluate"): "evaluate",
    ("registry", "protect"): "alias_protect",
    ("registry", "gc"): "gc",
    ("promote", "request"): "request",
    ("promote", "approve"): "approve",
    ("promote", "reject"): "reject",
    ("promote", "rollback"): "rollback",
    ("user", "add"): "user_add",
    ("user", "rotate"): "user_rotate",
    ("user", "revoke"): "user_revoke",
}
"""Command -> the audit action it records. `test_each_command_that_acts_is_audited` runs
every one of them, in a sequence a team would."""

READS = {
    ("registry", "list"),
    ("registry", "show"),
    ("registry", "diff"),
    ("registry", "history"),
    ("registry", "pull"),
    ("promote", "list"),
    ("user", "list"),
    ("audit",),
}
"""Commands that only read the registry: run below, and checked to change nothing."""

ELSEWHERE = {
    ("run",): "the retrain flow registers through register_candidate: "
    "tests/flows/test_predictions.py checks its register and request records",
    ("promote", "await"): "the promotion flow decides through PromptRegistry.approve/reject: "
    "tests/flows/test_promotion_flow.py",
    ("review",): "the pages act through PromptRegistry: tests/review/test_decisions.py",
    ("serve",): "serving reads aliases and artifacts only",
    ("predict",): "batch prediction reads one version only",
    ("registry", "upgrade"): "migrates the schema itself, before there is an audit log to write",
}
"""Commands that reach the registry through a server or a flow, with where that is tested."""

NO_REGISTRY = {
    ("version",),
    ("backbones",),
    ("backbone",),
    ("presets",),
    ("domain", "new"),
    ("domain", "import"),
    ("domain", "list"),
    ("domain", "check"),
    ("domain", "prepare"),
    ("domain", "version"),
    ("schedule", "list"),
    ("schedule", "apply"),
    ("schedule", "serve"),
}


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set:
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= leaf_commands(sub, (*prefix, name))
    return found or {prefix}


def test_every_cli_command_is_listed():
    listed = set(ACTS) | READS | set(ELSEWHERE) | NO_REGISTRY
    commands = leaf_commands(build_parser())
    assert commands == listed, (
        f"not listed: {sorted(commands - listed)}; gone: {sorted(listed - commands)}"
    )
    root = Path(__file__).resolve().parents[1]
    for why in ELSEWHERE.values():  # the test named is there
        named = [w for w in why.split() if w.startswith("tests/")]
        assert all((root.parent / n.split("::")[0].rstrip(":")).exists() for n in named), why


def test_each_command_that_acts_is_audited(shop, artifacts, tmp_path, capsys, monkeypatch):  # noqa: F811
    reg = open_registry()
    data_version(capsys)
    run(capsys, "registry", "register", "shop", str(artifacts[0]), "--evaluate")  # the scene
    run(capsys, "promote", "request", "shop", "1", "--user", "ana")
    run(capsys, "promote", "approve", "1", "--user", "ben")
    reg.store.put_dir(artifacts[2])  # an orphan blob, for gc

    def acts(command, *argv):
        before, last = state(reg), audit_ids(reg)
        code, out, err = run(capsys, *command, *argv)
        assert code == 0, err
        assert state(reg) != before, f"{command} changed nothing"
        new = [e.action for e in reg.audit_log(limit=50) if e.id > last]
        assert ACTS[command] in new, f"{command} wrote {new}"
        return out

    def reads(command, *argv):
        before, last = state(reg), audit_ids(reg)
        code, _, err = run(capsys, *command, *argv)
        assert code == 0, err
        assert state(reg) == before and audit_ids(reg) == last, command

    sequence = [
        (acts, ("registry", "register"), ("shop", str(artifacts[1]), "--evaluate")),
        (acts, ("registry", "evaluate"), ("shop", "1")),
        (acts, ("promote", "request"), ("shop", "2", "--user", "ana")),
        (acts, ("promote", "reject"), ("2", "--user", "ben", "--comment", "not yet")),
        (acts, ("promote", "request"), ("shop", "2", "--user", "ana")),
        (acts, ("promote", "approve"), ("3", "--user", "ben")),
        (acts, ("promote", "rollback"), ("shop", "1", "--reason", "back", "--user", "ben")),
        (acts, ("registry", "gc"), ()),
        (reads, ("registry", "list"), ()),
        (reads, ("registry", "show"), ("shop", "1")),
        (reads, ("registry", "diff"), ("shop", "1", "2")),
        (reads, ("registry", "history"), ("shop",)),
        (reads, ("registry", "pull"), ("shop", "@production", str(tmp_path / "pulled"))),
        (reads, ("promote", "list"), ()),
        (reads, ("user", "list"), ()),
        (reads, ("audit",), ()),
        (acts, ("user", "add"), ("root", "--role", "admin")),
        (acts, ("user", "rotate"), ("root",)),
    ]
    for check, command, argv in sequence:
        check(command, *argv)
    monkeypatch.setenv("MPT_TOKEN", reg.add_user("boss", "admin")[1])  # auth is on now
    acts(("registry", "protect"), "shop", "staging")
    acts(("user", "revoke"), "root")
    covered = {command for _, command, _ in sequence} | {
        ("registry", "protect"),
        ("user", "revoke"),
    }
    assert set(ACTS) | READS <= covered
