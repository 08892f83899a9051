"""`mpt user ...` and the CLI acting as the user of MPT_TOKEN once authentication is on."""

from __future__ import annotations

import json
import socket

import pytest

from cli import main
from registry import open_registry

from .test_registry_cli import (  # noqa: F401  (fixtures: the pets domain, its artifacts)
    artifacts,
    pets_domain,
    run,
    write_metrics,
)


def add(capsys, name, role, *extra):
    code, out, err = run(capsys, "user", "add", name, "--role", role, "--json", *extra)
    assert code == 0, err
    return json.loads(out)["token"]


def register_two(capsys, artifacts, tmp_path):  # noqa: F811
    for i, acc in enumerate((0.8, 0.9)):
        metrics = write_metrics(tmp_path / f"m{i}.json", acc, acc, acc)
        code, _, err = run(
            capsys,
            "registry",
            "register",
            "pets",
            str(artifacts[i]),
            "--data-version",
            "0" * 32,
            "--metrics",
            metrics,
        )
        assert code == 0, err


def test_add_list_rotate_revoke(capsys):
    code, out, _ = run(capsys, "user", "add", "ben", "--role", "reviewer")
    assert code == 0 and "added user ben (reviewer)" in out and "Shown once" in out
    token = out.split("token: ")[1].split()[0]
    code, out, _ = run(capsys, "user", "list")
    assert "ben" in out and "reviewer" in out and "active" in out and token not in out
    assert token not in run(capsys, "user", "list", "--json")[1]
    code, _, err = run(capsys, "user", "add", "ben", "--role", "reviewer")
    assert code == 2 and "already exists" in err
    again = add(capsys, "ben", "reviewer", "--if-exists", "rotate")  # make demo, re-run
    reg = open_registry()
    assert reg.authenticate(token) is None and reg.authenticate(again).name == "ben"
    code, out, _ = run(capsys, "user", "rotate", "ben")
    assert code == 0 and reg.authenticate(again) is None
    code, out, _ = run(capsys, "user", "revoke", "ben")
    assert code == 0 and "revoked ben" in out
    assert "revoked" in run(capsys, "user", "list")[1]


def test_with_auth_on_the_cli_acts_as_the_token_user(capsys, artifacts, tmp_path, monkeypatch):  # noqa: F811
    ana, ben = add(capsys, "ana", "requester"), add(capsys, "ben", "reviewer")
    code, _, err = run(capsys, "promote", "request", "pets", "1")
    assert code == 2 and "set MPT_TOKEN to your token" in err
    monkeypatch.setenv("MPT_TOKEN", ana)
    register_two(capsys, artifacts, tmp_path)
    assert open_registry().get_version("pets", 1).created_by == "ana"
    code, _, err = run(capsys, "promote", "request", "pets", "1", "--user", "ben")
    assert code == 2 and "--user ben: MPT_TOKEN is ana's token" in err
    monkeypatch.setenv("MPT_USER", "zed")
    code, _, err = run(capsys, "promote", "request", "pets", "1")
    assert code == 2 and "MPT_USER zed" in err
    monkeypatch.delenv("MPT_USER")
    code, out, _ = run(capsys, "promote", "request", "pets", "1", "--user", "ana")  # same name
    assert code == 0 and "ana" in out
    code, _, err = run(capsys, "promote", "approve", "1")
    assert code == 2 and "ana requested #1 and cannot review it" in err
    monkeypatch.setenv("MPT_TOKEN", ben + "x")
    code, _, err = run(capsys, "promote", "approve", "1")
    assert code == 2 and "MPT_TOKEN is not a valid token" in err
    monkeypatch.setenv("MPT_TOKEN", ben)
    code, out, _ = run(capsys, "promote", "approve", "1", "--comment", "ok")
    assert code == 0 and "pets:production -> v1" in out
    entry = next(e for e in open_registry().audit_log(domain="pets") if e.action == "approve")
    assert entry.actor == "ben" and entry.outcome == "ok" and entry.address.startswith("cli:")
    monkeypatch.setenv("MPT_TOKEN", ana)
    code, _, err = run(capsys, "promote", "rollback", "pets", "1", "--reason", "x")
    assert code == 2 and "ana is a requester" in err
    code, out, _ = run(capsys, "audit", "--domain", "pets")
    lines = out.splitlines()
    assert "rollback" in lines[2] and "refused" in lines[2] and "ana is a requester" in lines[2]
    assert any("approve" in line and "ben" in line and "ok" in line for line in lines)


def test_user_administration_with_a_token_needs_an_admin(capsys, monkeypatch):
    ben = add(capsys, "ben", "reviewer")
    root = add(capsys, "root", "admin")
    monkeypatch.setenv("MPT_TOKEN", ben)
    code, _, err = run(capsys, "user", "add", "cy", "--role", "viewer")
    assert code == 2 and "ben is a reviewer; adding a user needs the admin role" in err
    code, _, err = run(capsys, "registry", "protect", "pets", "staging")
    assert code == 2 and "ben is a reviewer" in err
    monkeypatch.setenv("MPT_TOKEN", root)
    assert run(capsys, "user", "add", "cy", "--role", "viewer")[0] == 0
    code, out, _ = run(capsys, "registry", "protect", "pets", "staging")
    assert code == 0 and "production, staging" in out
    assert open_registry().get_user("cy").created_by == "root"


def test_mpt_auth_required_before_any_user(capsys, monkeypatch):
    monkeypatch.setenv("MPT_AUTH", "required")
    code, _, err = run(capsys, "promote", "list")
    assert code == 0  # reading needs no identity
    code, _, err = run(capsys, "promote", "approve", "1")
    assert code == 2 and "authentication is on" in err
    assert run(capsys, "user", "add", "root", "--role", "admin")[0] == 0  # operator bootstrap


def test_review_refuses_a_busy_port(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["review", "--port", str(port)])
    assert code == 2 and f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["user", "add", "x", "--role", "boss"]])
def test_unknown_role_lists_the_roles(capsys, argv):
    with pytest.raises(SystemExit):
        main(argv)
    assert "viewer" in capsys.readouterr().err
