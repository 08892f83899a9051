"""The `mpt` command line, called in-process."""

from __future__ import annotations

import json

from cli import main
from mpt_core import FAMILIES, PRESETS


def test_presets_report_trainable_parameters_of_every_preset(capsys):
    assert main(["presets", "shipped:tiny", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["preset"] for r in rows] == PRESETS.names()  # shipped runs every preset
    assert all(r["trainable"] > 0 and r["fraction"].endswith("%") for r in rows)


def test_backbone_show_prints_identity_and_slots(capsys):
    assert main(["backbone", "hf-clip:tiny"]) == 0
    out = capsys.readouterr().out
    assert "weights_sha256" in out and "token depth=2 width=32" in out


def test_unknown_family_is_an_error_not_a_traceback(capsys):
    assert main(["backbone", "nope"]) == 2
    err = capsys.readouterr().err
    assert f"unknown backbone family 'nope'; known: {', '.join(FAMILIES.names())}" in err


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("mpt-platform ")
