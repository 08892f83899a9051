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


def test_preset_descriptions_say_what_each_preset_is_on_that_backbone(capsys):
    assert main(["presets", "hf-blip2:tiny", "--json"]) == 0
    about = {r["preset"]: r["about"] for r in json.loads(capsys.readouterr().out)}
    assert not any("CNN" in text or "pooling" in text for text in about.values()), about
    assert about["vpt"].endswith("4 visual tokens in 2 ViT layer(s)")
    assert "image-conditioned" not in about["mpt"] and "where the backbone reads" in about["mpt"]
    assert main(["presets", "shipped:tiny", "--json"]) == 0
    about = {r["preset"]: r["about"] for r in json.loads(capsys.readouterr().out)}
    assert about["vpt"].endswith("4 pooling queries over the CNN feature map")
    assert "4 image-conditioned tokens per image" in about["mpt"]


def test_backbones_name_each_default_as_its_identity_does(capsys):
    from mpt_core.backbones.shipped import identity_name

    assert main(["backbones", "--json"]) == 0
    defaults = {r["family"]: r["default"] for r in json.loads(capsys.readouterr().out)}
    # `mpt backbone shipped` loads it and prints this name; `mpt backbones` loads nothing
    assert defaults["shipped"] == identity_name(160) != "default"
    assert defaults["hf-clip"] == FAMILIES.get("hf-clip").default_name


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
