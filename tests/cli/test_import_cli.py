"""`mpt domain import` from the command line: an imported domain passes `mpt domain check`;
options, errors and the lineage an import leaves in `mpt registry show`."""

from __future__ import annotations

import json

import pytest

from cli import main
from cli.commands.domain import IMPORT_FORMATS
from flows.importers import FORMATS
from mpt_core import ClassificationTask, build_prompts, save_prompts, tiny_backbone

from ..flows.import_sources import CLASSES, fashion_imagefolder, medical_coco


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def source(tmp_path):
    return fashion_imagefolder(tmp_path / "fashion", per_class=6)


def test_an_imported_folder_passes_domain_check(tmp_path, source, capsys):
    code, out, err = run(capsys, "domain", "import", "shop", str(source), "--from", "imagefolder")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        f"{source} (imagefolder) imported as shop: 18 rows (train 12, val 3, test 3), task "
        "classification; 18 rows in domains/shop/data"
    )
    assert lines[1] == "images: 18 copied"
    assert lines[2] == "declared 3 labels in domains/shop/domain.yaml"
    assert "mpt domain check shop" in lines[3]
    code, out, err = run(capsys, "domain", "check", "shop")
    assert code == 0, out + err
    assert out.startswith("shop: passed: 18 rows (train 12, val 3, test 3)")


def test_options_reach_the_import_and_json_reports_it(tmp_path, source, capsys):
    argv = ["domain", "import", "shop", str(source), "--from", "imagefolder", "--json"]
    code, out, err = run(capsys, *argv, "--fractions", "0.5,0.25,0.25", "--seed", "3", "--link")
    assert code == 0, err
    result = json.loads(out)
    added = result["added"]  # 3 / 1.5 / 1.5 of each label's 6: the odd ones drawn
    assert added["train"] == 9 and added["val"] + added["test"] == 9 and result["linked"] == 18
    log = json.loads((tmp_path / "domains" / "shop" / "imports.json").read_text())
    assert log[0]["rule"] == {"fractions": [0.5, 0.25, 0.25], "seed": 3}
    assert result["declared"]["labels"] == sorted(CLASSES)
    more = fashion_imagefolder(tmp_path / "more", per_class=2, offset=40)
    code, out, err = run(
        capsys, "domain", "import", "shop", str(more), "--from", "imagefolder", "--append"
    )
    assert code == 0, err
    assert "appended to shop: 6 rows" in out and "24 rows in" in out
    log = json.loads((tmp_path / "domains" / "shop" / "imports.json").read_text())
    assert log[1]["rule"] == log[0]["rule"]  # an append keeps the domain's rule


def test_the_help_names_every_registered_format(capsys):
    assert set(IMPORT_FORMATS.split(", ")) == set(FORMATS.names())
    with pytest.raises(SystemExit):
        main(["domain", "import", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in FORMATS.names())


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--column", "label"], "--column 'label': write FIELD=COLUMN"),
        (["--fractions", "0.8,x,0.1"], "--fractions '0.8,x,0.1': give train,val,test as numbers"),
        (["--fractions", "0.8,0.3,0.1"], "add up to 1"),
        (["--image-pattern", "{image_id}.jpg"], "--image-pattern not used by format 'imagefolder'"),
        (["--task", "retrieval"], "task 'retrieval' needs the field(s) caption"),
    ],
)
def test_bad_options_are_one_line_errors(source, capsys, extra, words):
    code, _, err = run(
        capsys, "domain", "import", "x", str(source), "--from", "imagefolder", *extra
    )
    assert code == 2 and words in err and "Traceback" not in err, err


def test_an_escaping_annotation_is_refused_without_a_traceback(tmp_path, capsys):
    source = medical_coco(tmp_path / "evil", sources=1, tiles=2, splits=False)
    path = source / "annotations" / "captions.json"
    document = json.loads(path.read_text())
    document["images"][0]["file_name"] = "/etc/passwd"
    path.write_text(json.dumps(document))
    code, _, err = run(capsys, "domain", "import", "evil", str(source), "--from", "coco-captions")
    assert code == 2 and "'/etc/passwd' is absolute; refused" in err
    assert err.startswith("mpt: error: ") and not (tmp_path / "domains" / "evil").exists()


def test_registry_show_gives_the_rows_an_import_added(tmp_path, capsys):
    from registry import open_registry

    folder = tmp_path / "domains" / "pets"
    folder.mkdir(parents=True)
    (folder / "domain.yaml").write_text(
        "task: classification\nlabels: [cat, dog]\nbackbone: {family: shipped, name: tiny}\n"
    )
    md5 = "a" * 32
    model = build_prompts(tiny_backbone("shipped"), "coop", ClassificationTask(["cat", "dog"]))
    artifact = save_prompts(model, tmp_path / "artifact")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"test": {"accuracy": 0.5}}))
    argv = ["registry", "register", "pets", str(artifact), "--data-version", md5]
    assert run(capsys, *argv, "--metrics", str(metrics))[0] == 0
    open_registry().record_data_version(  # as `mpt run` records an imported table
        "pets",
        md5,
        rows=30,
        row_counts={"train": 20, "val": 5, "test": 5},
        validation_passed=True,
        rows_added=12,
        added_from="append 2: imagefolder /data/week-2",
    )
    code, out, _ = run(capsys, "registry", "show", "pets", "1")
    assert code == 0
    assert (
        f"data version  {md5}  (30 rows: train 20, val 5, test 5; +12 rows by append 2: "
        "imagefolder /data/week-2)"
    ) in out
    code, out, _ = run(capsys, "registry", "show", "pets", "1", "--json")
    assert json.loads(out)["data"]["rows_added"] == 12
