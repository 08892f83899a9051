"""`mpt domain import` (flows.importers) on real sources in each format: the domain it writes
validates, splits are kept or made by the rule, appends leave every existing row as it was,
and a source that escapes or breaks half-way leaves nothing behind."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from flows.domains import get_domain
from flows.importers import FormatOptions, ImportFailed, ImportRequest, SplitRule, import_domain
from flows.importers.splits import Placed, assign_splits
from flows.validation import validate_domain
from mpt_core.data import SPLITS

from .domain_factory import folder_digest
from .import_sources import (
    CLASSES,
    fashion_imagefolder,
    fashion_parquet,
    manufacturing_vqa,
    medical_coco,
)


def _contents(folder: Path) -> dict[str, bytes | None]:
    """Every path below `folder` with its bytes (None for a folder): what a failed or empty
    import must leave as it was (a staging folder made and removed changes only mtimes)."""
    return {
        p.relative_to(folder).as_posix(): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Each real source once per module (they are only read)."""
    root = tmp_path_factory.mktemp("sources")
    return {
        "imagefolder": fashion_imagefolder(root / "fashion", per_class=6),
        "imagefolder-splits": fashion_imagefolder(
            root / "fashion-splits", per_class=2, splits=("train", "val", "test")
        ),
        "imagefolder-train-test": fashion_imagefolder(
            root / "fashion-train-test", per_class=5, splits=("train", "test")
        ),
        "week-2": fashion_imagefolder(root / "week-2", per_class=4, offset=50),
        "parquet": fashion_parquet(root / "fashion-parquet", per_class=5),
        "coco": medical_coco(root / "medical"),
        "coco-flat": medical_coco(root / "medical-flat", splits=False),
        "vqa": manufacturing_vqa(root / "fabric"),
    }


def _import(tmp_path: Path, name: str, fmt: str, source: Path | str, **kwargs):
    result = import_domain(tmp_path / "domains", ImportRequest(name, fmt, str(source), **kwargs))
    return result, get_domain(tmp_path / "domains", name)


def _rows(domain) -> list[dict[str, str]]:
    with domain.metadata_path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _splits_per(rows, field):
    return Counter((r[field], r["split"]) for r in rows)


# ------------------------------------------------------------------ each format
def test_an_image_folder_becomes_a_valid_classification_domain(tmp_path, sources):
    result, domain = _import(tmp_path, "shop", "imagefolder", sources["imagefolder"])
    assert result.task == "classification" == domain.config.task
    assert domain.config.labels == sorted(CLASSES)
    rows = _rows(domain)
    assert len(rows) == 18 == result.rows_added and result.added == {
        "train": 12,
        "val": 3,
        "test": 3,
    }
    # stratified: every label in every split, 4 / 1 / 1 of its 6 images
    assert set(_splits_per(rows, "label").values()) == {4, 1}
    assert len(_splits_per(rows, "label")) == 9
    image = domain.data_dir / rows[0]["image"]
    label = rows[0]["label"]
    assert (
        image.read_bytes()
        == (sources["imagefolder"] / rows[0]["image"].removeprefix("images/")).read_bytes()
    )
    assert rows[0]["image"].startswith(f"images/{label}/")
    report = validate_domain(domain)
    assert report.passed and not report.warnings, report.summary
    log = json.loads((domain.root / "imports.json").read_text())
    assert log[0]["rows_added"] == 18 and log[0]["source"] == str(sources["imagefolder"])
    md5 = hashlib.md5(domain.metadata_path.read_bytes()).hexdigest()
    assert log[0]["metadata_md5"] == md5
    assert "imported with `mpt domain import shop --from imagefolder" in (
        (domain.root / "README.md").read_text()
    )


def test_the_split_draw_is_seeded(tmp_path, sources):
    draws = []
    for name, seed in (("a", 0), ("b", 0), ("c", 7)):
        _, domain = _import(
            tmp_path, name, "imagefolder", sources["imagefolder"], rule=SplitRule(seed=seed)
        )
        draws.append([(r["image"], r["split"]) for r in _rows(domain)])
    assert draws[0] == draws[1] and draws[0] != draws[2]
    assert Counter(s for _, s in draws[0]) == Counter(s for _, s in draws[2])


def test_split_folders_are_kept(tmp_path, sources):
    _, domain = _import(tmp_path, "kept", "imagefolder", sources["imagefolder-splits"])
    rows = _rows(domain)
    assert all(r["image"].startswith(f"images/{r['split']}/") for r in rows)
    assert Counter(r["split"] for r in rows) == {"train": 6, "val": 6, "test": 6}


def test_a_missing_split_is_carved_out_of_train(tmp_path, sources):
    rule = SplitRule((0.6, 0.4, 0.0))
    _, domain = _import(
        tmp_path, "carved", "imagefolder", sources["imagefolder-train-test"], rule=rule
    )
    rows = _rows(domain)
    assert all(r["split"] == "test" for r in rows if r["image"].startswith("images/test/"))
    from_train = Counter(r["split"] for r in rows if r["image"].startswith("images/train/"))
    assert from_train == {"train": 9, "val": 6}  # 3 / 2 of each label's 5


def test_a_parquet_export_with_class_labels(tmp_path, sources):
    result, domain = _import(tmp_path, "pq", "parquet", sources["parquet"])
    assert result.task == "classification"
    assert domain.config.labels == sorted(CLASSES)  # ClassLabel indices read as their names
    rows = _rows(domain)
    assert Counter(r["split"] for r in rows) == {"train": 12, "val": 3, "test": 15}  # val: 1 in 5
    assert "images/data/train-00000-of-00001/000000.png" in {r["image"] for r in rows}
    assert validate_domain(domain).passed


def test_parquet_columns_are_mapped_with_options(tmp_path, sources):
    _, domain = _import(
        tmp_path,
        "captions",
        "parquet",
        sources["parquet"],
        task="retrieval",
        options=FormatOptions(columns={"caption": "label"}),
    )
    assert domain.config.task == "retrieval"
    assert {r["caption"] for r in _rows(domain)} == set(CLASSES)
    with pytest.raises(ImportFailed, match=r"no column\(s\) \['kind'\] \(--column\)"):
        _import(
            tmp_path,
            "bad",
            "parquet",
            sources["parquet"],
            options=FormatOptions(columns={"label": "kind"}),
        )


def test_an_arrow_file_with_a_split_column(tmp_path, sources):
    """`save_to_disk` writes Arrow streams (`data-00000-of-00001.arrow`, no split in the
    name); a `split` column says each row's split, an empty cell leaves it to the rule."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(sources["parquet"] / "data" / "train-00000-of-00001.parquet")
    splits = ["test", "validation", None] * (table.num_rows // 3)
    table = table.append_column("split", pa.array(splits, pa.string()))
    source = tmp_path / "saved"
    source.mkdir()
    with pa.ipc.new_stream(source / "data-00000-of-00001.arrow", table.schema) as writer:
        writer.write_table(table)
    _, domain = _import(tmp_path, "arrow", "parquet", source)
    rows = _rows(domain)
    assert domain.config.labels == sorted(CLASSES)
    assert [r["split"] for r in rows][:2] == ["test", "val"]
    assert {r["split"] for r in rows[2::3]} <= {"train", "val", "test"}
    bad = table.set_column(table.num_columns - 1, "split", pa.array(["dev2"] * table.num_rows))
    with pa.ipc.new_stream(source / "data-00000-of-00001.arrow", bad.schema) as writer:
        writer.write_table(bad)
    with pytest.raises(ImportFailed, match=r"row 0: split 'dev2' is not a split"):
        _import(tmp_path, "arrow-bad", "parquet", source)


def test_coco_captions_give_retrieval_or_captioning(tmp_path, sources):
    result, domain = _import(tmp_path, "scans", "coco-captions", sources["coco"])
    assert result.task == "retrieval"  # the default backbone runs it
    rows = _rows(domain)
    assert rows[0]["caption"] == rows[0]["caption"].strip() and len(rows) == 20
    assert Counter(r["split"] for r in rows) == {"train": 14, "val": 4, "test": 2}
    assert all(r["split"] == "val" for r in rows if r["image"].startswith("images/val/"))
    assert validate_domain(domain).passed, validate_domain(domain).summary
    _, captions = _import(
        tmp_path, "scans-gen", "coco-captions", sources["coco"], task="captioning"
    )
    assert captions.config.task == "captioning" and captions.config.backbone.family == "hf-blip2"
    assert validate_domain(captions).passed


def test_group_by_keeps_each_source_image_in_one_split(tmp_path, sources):
    _, domain = _import(
        tmp_path, "grouped", "coco-captions", sources["coco-flat"], group_by="source"
    )
    rows = _rows(domain)
    assert domain.config.data.group_column == "source"
    per_source = {}
    for r in rows:
        per_source.setdefault(r["source"], set()).add(r["split"])
    assert all(len(s) == 1 for s in per_source.values())
    assert sorted(len(s) for s in per_source.values()) == [1, 1, 1, 1]
    assert Counter(next(iter(s)) for s in per_source.values()) == {"train": 2, "val": 1, "test": 1}
    assert validate_domain(domain).passed
    with pytest.raises(ImportFailed, match=r"has no 'patient' to group by"):
        _import(tmp_path, "nope", "coco-captions", sources["coco-flat"], group_by="patient")


def test_group_by_refuses_groups_the_source_splits(tmp_path, sources):
    before = set((tmp_path / "domains").glob("*")) if (tmp_path / "domains").exists() else set()
    with pytest.raises(ImportFailed, match=r"source puts 4 group\(s\) in several of its splits"):
        _import(tmp_path, "torn", "coco-captions", sources["coco"], group_by="source")
    assert set((tmp_path / "domains").glob("*")) == before


def test_vqa_questions_give_closed_or_open_vqa(tmp_path, sources):
    result, domain = _import(tmp_path, "fabric", "vqa", sources["vqa"])
    assert result.task == "vqa"
    answers = domain.config.answers
    assert answers == {
        "Is there a defect on this fabric?": ["no", "yes"],
        "What kind of defect is visible?": ["global", "local", "none"],
    }
    rows = _rows(domain)
    assert len(rows) == 36 and result.skipped == 36 * 9  # the consensus answer, once
    assert Counter(r["split"] for r in rows) == {"train": 12, "val": 12, "test": 12}
    assert "images/train/COCO_train_000000000001.jpg" in {r["image"] for r in rows}
    report = validate_domain(domain)
    assert report.passed, report.summary
    _, open_vqa = _import(tmp_path, "fabric-open", "vqa", sources["vqa"], task="vqa-open")
    rows = _rows(open_vqa)
    assert len(rows) == 360  # every annotator's answer
    assert Counter(r["question_type"] for r in rows) == {"is there": 180, "what kind": 180}
    assert validate_domain(open_vqa).passed


def test_vqa_image_pattern(tmp_path, sources):
    options = FormatOptions(image_pattern="{data_subtype}/COCO_{data_subtype}_{image_id:012d}.jpg")
    _, domain = _import(tmp_path, "patterned", "vqa", sources["vqa"], options=options)
    assert len(_rows(domain)) == 36
    bad = FormatOptions(image_pattern="{image_id.__class__}.jpg")
    with pytest.raises(ImportFailed, match=r"may use only \{image_id\}"):
        _import(tmp_path, "bad", "vqa", sources["vqa"], options=bad)


def test_options_of_another_format_are_refused(tmp_path, sources):
    with pytest.raises(ImportFailed, match=r"--column not used by format 'imagefolder'"):
        _import(
            tmp_path,
            "x",
            "imagefolder",
            sources["imagefolder"],
            options=FormatOptions(columns={"a": "b"}),
        )
    with pytest.raises(ImportFailed, match=r"unknown import format 'yolo'; allowed: coco-captions"):
        _import(tmp_path, "x", "yolo", sources["imagefolder"])
    with pytest.raises(ImportFailed, match=r"task 'vqa' needs the field\(s\) question, answer"):
        _import(tmp_path, "x", "imagefolder", sources["imagefolder"], task="vqa")


def test_an_existing_domain_is_not_overwritten(tmp_path, sources):
    _import(tmp_path, "shop", "imagefolder", sources["imagefolder"])
    before = folder_digest(tmp_path / "domains")
    with pytest.raises(ImportFailed, match=r"already exists; add the new images with --append"):
        _import(tmp_path, "shop", "imagefolder", sources["imagefolder"])
    assert folder_digest(tmp_path / "domains") == before


def test_link_hard_links_the_images(tmp_path, sources):
    result, domain = _import(tmp_path, "linked", "imagefolder", sources["imagefolder"], link=True)
    assert result.linked == 18 and result.copied == 0
    row = _rows(domain)[0]
    source = sources["imagefolder"] / row["image"].removeprefix("images/")
    assert os.stat(domain.data_dir / row["image"]).st_ino == os.stat(source).st_ino


def test_identical_images_without_splits_land_in_one_split(tmp_path):
    source = fashion_imagefolder(tmp_path / "src", per_class=6)
    twin = source / "bag" / "copy.png"
    twin.write_bytes(next((source / "trouser").iterdir()).read_bytes())  # same bytes, other label
    _, domain = _import(tmp_path, "twins", "imagefolder", source)
    rows = _rows(domain)
    digest = {
        r["image"]: hashlib.sha256((domain.data_dir / r["image"]).read_bytes()).hexdigest()
        for r in rows
    }
    by_content = {}
    for r in rows:
        by_content.setdefault(digest[r["image"]], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_content.values())
    assert "image_leak" not in {f.check for f in validate_domain(domain).failures}


# ------------------------------------------------------------------ appends
def test_an_append_adds_rows_and_leaves_every_existing_row_as_it_was(tmp_path, sources):
    _, domain = _import(tmp_path, "shop", "imagefolder", sources["imagefolder"])
    old_table = domain.metadata_path.read_bytes()
    old_images = _contents(domain.data_dir / "images")
    result, domain = _import(tmp_path, "shop", "imagefolder", sources["week-2"], append=True)
    assert result.mode == "append" and result.number == 2 and result.rows_added == 12
    table = domain.metadata_path.read_bytes()
    assert table.startswith(old_table)  # byte for byte, then the new rows
    rows = _rows(domain)
    assert all(r["image"].startswith("images/append-2/") for r in rows[18:])
    images = _contents(domain.data_dir / "images")
    assert {k: v for k, v in images.items() if not k.startswith("append-2")} == old_images
    # same rule: each label's 6 + 4 images end at 8 / 1 / 1 (the first 4 / 1 / 1 kept)
    assert set(_splits_per(rows, "label").values()) == {8, 1}
    log = json.loads((domain.root / "imports.json").read_text())
    assert [e["mode"] for e in log] == ["import", "append"] and log[1]["rows_added"] == 12
    assert log[1]["metadata_md5"] == hashlib.md5(table).hexdigest()
    assert validate_domain(domain).passed
    assert not list(domain.root.glob(".append-*"))


def test_appending_the_same_images_again_adds_nothing(tmp_path, sources):
    _import(tmp_path, "shop", "imagefolder", sources["imagefolder"])
    _import(tmp_path, "shop", "imagefolder", sources["week-2"], append=True)
    before = _contents(tmp_path / "domains")
    result, _ = _import(tmp_path, "shop", "imagefolder", sources["week-2"], append=True)
    assert result.rows_added == 0 and result.skipped == 12
    assert _contents(tmp_path / "domains") == before


def test_an_append_keeps_groups_with_their_split(tmp_path, sources):
    _, domain = _import(
        tmp_path, "grouped", "coco-captions", sources["coco-flat"], group_by="source"
    )
    splits = {r["source"]: r["split"] for r in _rows(domain)}
    more = medical_coco(tmp_path / "more", sources=5, tiles=2, first=5, splits=False)
    result, domain = _import(tmp_path, "grouped", "coco-captions", more, append=True)
    rows = _rows(domain)[20:]
    assert result.rows_added == 10 == len(rows)
    for r in rows:
        assert r["split"] == splits.get(r["source"], r["split"])  # a known source keeps its split
    assert validate_domain(domain).passed


def test_an_append_with_an_undeclared_label_writes_nothing(tmp_path, sources):
    _import(tmp_path, "shop", "imagefolder", sources["imagefolder"])
    other = fashion_imagefolder(tmp_path / "coats", per_class=2)
    (other / "coat").mkdir()
    (other / "coat" / "x.png").write_bytes(
        (other / "bag" / os.listdir(other / "bag")[0]).read_bytes()
    )
    before = _contents(tmp_path / "domains")
    with pytest.raises(ImportFailed, match=r"label 'coat'; declare them there first"):
        _import(tmp_path, "shop", "imagefolder", other, append=True)
    assert _contents(tmp_path / "domains") == before


def test_an_append_to_a_missing_domain_says_to_import_first(tmp_path, sources):
    with pytest.raises(ImportFailed, match=r"import it first \(without --append\)"):
        _import(tmp_path, "ghost", "imagefolder", sources["imagefolder"], append=True)


def test_the_split_rule_tops_up_splits_without_moving_rows():
    old = [Placed(f"o{i}", None, "a", s) for i, s in enumerate(["train"] * 8 + ["val", "test"])]
    new = [Placed(f"n{i}", None, "a", None) for i in range(10)]
    splits = assign_splits(new, old, SplitRule())
    assert Counter(splits) == {"train": 8, "val": 1, "test": 1}
    # a new row with the bytes of an old one follows it
    twin = [Placed("o8", None, "a", None)]
    assert assign_splits(twin, old, SplitRule()) == ["val"]
    assert Counter(assign_splits(new[:4], [], SplitRule())) == {"train": 2, "val": 1, "test": 1}
    with pytest.raises(ImportFailed, match=r"add up to 1"):
        SplitRule((0.5, 0.1, 0.1))
    assert set(SPLITS) == {"train", "val", "test"}


# ------------------------------------------------------------------ containment
def test_an_annotation_path_that_escapes_is_refused_and_nothing_is_written(tmp_path, sources):
    source = tmp_path / "evil"
    medical_coco(source, sources=1, tiles=2, splits=False)
    path = source / "annotations" / "captions.json"
    document = json.loads(path.read_text())
    document["images"][1]["file_name"] = "../../../../etc/passwd"
    path.write_text(json.dumps(document))
    (tmp_path / "domains").mkdir()
    before = folder_digest(tmp_path / "domains")
    with pytest.raises(ImportFailed) as caught:
        _import(tmp_path, "evil", "coco-captions", source)
    message = str(caught.value)
    assert "'../../../../etc/passwd' leaves the source folder ('..'); refused" in message
    assert "annotations[1]" in message and str(path) in message
    assert folder_digest(tmp_path / "domains") == before


def test_a_symbolic_link_in_the_source_is_refused_by_name(tmp_path, sources):
    source = fashion_imagefolder(tmp_path / "src", per_class=2)
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    (source / "bag" / "link.png").symlink_to(outside)
    (tmp_path / "domains").mkdir()
    before = folder_digest(tmp_path / "domains")
    with pytest.raises(
        ImportFailed, match=r"symbolic link\(s\) or special file\(s\): bag/link.png"
    ):
        _import(tmp_path, "linked", "imagefolder", source)
    assert folder_digest(tmp_path / "domains") == before


def test_a_parquet_image_path_that_escapes_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "pq"
    source.mkdir()
    rows = [{"image": {"bytes": None, "path": "../outside.png"}, "label": "bag"}]
    pq.write_table(pa.Table.from_pylist(rows), source / "train.parquet")
    with pytest.raises(ImportFailed, match=r"train.parquet: row 0.*'../outside.png' leaves"):
        _import(tmp_path, "pq", "parquet", source)
    assert not (tmp_path / "domains" / "pq").exists()


def test_a_source_that_breaks_half_way_leaves_nothing(tmp_path, sources):
    source = medical_coco(tmp_path / "broken", sources=2, tiles=2)
    (source / "annotations" / "captions_val.json").write_text("{not json")
    with pytest.raises(ImportFailed, match=r"captions_val.json: not valid JSON"):
        _import(tmp_path, "broken", "coco-captions", source)
    assert list((tmp_path / "domains").iterdir()) == []  # the staged images went too


def test_an_import_from_s3(tmp_path, sources, s3_server, monkeypatch):
    from registry.s3 import s3_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    client = s3_client(s3_server.endpoint_url)
    prefix = f"imports-{os.getpid()}-{tmp_path.name}"
    root = sources["imagefolder"]
    for path in sorted(root.rglob("*.png")):
        key = f"{prefix}/fashion/{path.relative_to(root).as_posix()}"
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=path.read_bytes())
    client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/fashion-other/x.png", Body=b"x")
    url = f"s3://{s3_server.bucket}/{prefix}/fashion"
    result, domain = _import(
        tmp_path, "cloud", "imagefolder", url, s3_endpoint=s3_server.endpoint_url, link=True
    )
    assert result.rows_added == 18 and result.copied == 18 and result.linked == 0
    assert not any("fashion-other" in r["image"] for r in _rows(domain))  # only under the prefix
    assert validate_domain(domain).passed
    assert json.loads((domain.root / "imports.json").read_text())[0]["source"] == url
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(ImportFailed, match=r"cannot list .* AWS_ACCESS_KEY_ID"):
        _import(tmp_path, "denied", "imagefolder", url, s3_endpoint=s3_server.endpoint_url)


def test_the_scaffolded_yaml_is_the_declaration_found(tmp_path, sources):
    _, domain = _import(tmp_path, "fabric", "vqa", sources["vqa"])
    text = (domain.root / "domain.yaml").read_text()
    config = yaml.safe_load(io.StringIO(text))
    assert config["task"] == "vqa" and set(config["answers"]) == set(domain.config.answers)
    assert config["template"] == "question: {question} answer: {answer}"
