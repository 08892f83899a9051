"""Domain data validation (flows.validation): valid domains pass with Data Docs; a corpus of bad
inputs each fails with a message naming the problem and the offending row or file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageFile

from flows.domains import Domain
from flows.validation import validate_domain
from mpt_core import TASKS as TASK_REGISTRY

from .domain_factory import (
    LABELS,
    folder_digest,
    image_of,
    make_domain,
    png_bytes,
    read_rows,
    with_declared_size,
    write_rows,
)

TASKS = TASK_REGISTRY.names()
QUESTION = next(iter(TASK_REGISTRY.get("vqa").toy(LABELS).task.declaration()["answers"]))
"""The first question of a test VQA domain (its rows answer it first)."""


@pytest.mark.parametrize("task", TASKS)
def test_valid_domain_passes_and_writes_report_and_data_docs(tmp_path, task):
    domain = make_domain(tmp_path, task)
    report_dir = tmp_path / "report"
    report = validate_domain(domain, report_dir)
    assert report.passed, report.summary
    assert report.failures == [] and report.checks > 10
    rows = read_rows(domain)
    per_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert report.counts == per_split and min(per_split.values()) > 0
    assert report.rows == len(rows)
    assert report.summary.startswith(f"{domain.name}: passed: {report.rows} rows")
    assert report.docs_path == report_dir / "data_docs" / "index.html"
    assert report.docs_path.is_file()
    assert list((report_dir / "data_docs" / "validations").rglob("*.html"))
    saved = json.loads((report_dir / "validation.json").read_text())
    assert saved == report.to_dict()
    assert (report_dir / "summary.txt").read_text() == report.summary + "\n"


# --- the corpus of bad inputs ----------------------------------------------------------------
# Each case: the task, a function that breaks a valid domain, and words the summary must hold.

Breaker = Callable[[Domain], None]


def _edit(change: Callable[[list[dict[str, str]]], list[dict[str, str]] | None]) -> Breaker:
    def breaker(domain: Domain) -> None:
        rows = read_rows(domain)
        write_rows(domain, change(rows) or rows)

    return breaker


def _set(row: int, **values: str) -> Breaker:
    """Data row `row` (1 = first below the header) gets `values`."""
    return _edit(lambda rows: rows[row - 1].update(values))


def _truncate(domain: Domain) -> None:
    path = image_of(domain, 1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _not_an_image(domain: Domain) -> None:
    image_of(domain, 2).write_bytes(b"this is a text file, not a PNG\n")


def _missing_file(domain: Domain) -> None:
    image_of(domain, 3).unlink()


def _traversal(domain: Domain) -> None:
    # A real image where the path points, to show it is refused, not merely missing.
    outside = domain.data_dir / "../../x.png"
    outside.write_bytes(png_bytes(999))
    _set(1, image="../../x.png")(domain)


def _symlinked_folder(domain: Domain) -> None:
    outside = domain.root.parent.parent / "elsewhere"
    outside.mkdir()
    (outside / "x.png").write_bytes(png_bytes(998))
    (domain.data_dir / "images" / "link").symlink_to(outside, target_is_directory=True)
    _set(2, image="images/link/x.png")(domain)


def _drop_column(column: str) -> Breaker:
    return _edit(lambda rows: [{k: v for k, v in r.items() if k != column} for r in rows])


def _duplicate_row(domain: Domain) -> None:
    _edit(lambda rows: [*rows, dict(rows[0])])(domain)


def _same_image_train_test(domain: Domain) -> None:
    # row 1 is train, the last row is test; give the test file the train file's bytes
    rows = read_rows(domain)
    train, test = domain.data_dir / rows[0]["image"], domain.data_dir / rows[-1]["image"]
    test.write_bytes(train.read_bytes())


def _huge_declared_size(domain: Domain) -> None:
    path = image_of(domain, 1)
    path.write_bytes(with_declared_size(path.read_bytes(), 100_000, 100_000))


def _empty_split(split: str) -> Breaker:
    return _edit(lambda rows: [r for r in rows if r["split"] != split])


def _drop_class(label: str, split: str) -> Breaker:
    return _edit(lambda rows: [r for r in rows if (r["label"], r["split"]) != (label, split)])


def _rewrite_csv(encode: Callable[[str], bytes]) -> Breaker:
    def breaker(domain: Domain) -> None:
        domain.metadata_path.write_bytes(encode(domain.metadata_path.read_text()))

    return breaker


def _latin1(text: str) -> bytes:
    return text.replace("boot", "bottine à lacets", 1).encode("latin-1")


def _remove_metadata(domain: Domain) -> None:
    domain.metadata_path.unlink()


def _too_many_fields(domain: Domain) -> None:
    with domain.metadata_path.open("a") as f:
        f.write("images/train/boot_0.png,train,boot,surplus\n")


CORPUS: list[tuple[str, str, Breaker, list[str]]] = [
    (
        "truncated image",
        "classification",
        _truncate,
        ["image does not decode: row 1 (images/train/boot_0.png): truncated or corrupt"],
    ),
    (
        "non-image bytes with a .png name",
        "classification",
        _not_an_image,
        ["image does not decode: row 2 (images/train/boot_1.png): not an image PIL can read"],
    ),
    (
        "missing file",
        "classification",
        _missing_file,
        ["image file not found: row 3 (images/train/boot_2.png): no such file"],
    ),
    (
        "a folder instead of a file",
        "vqa",
        _set(1, image="images/train"),
        ["image file not found: row 1 (images/train): a directory, not a file"],
    ),
    (
        "path traversal",
        "classification",
        _traversal,
        ["image path refused", "row 1 (../../x.png): the path escapes the data folder"],
    ),
    (
        "absolute path",
        "retrieval",
        _set(2, image="/etc/passwd"),
        ["image path refused", "row 2 (/etc/passwd): absolute path"],
    ),
    (
        "folder symlinked outside data/",
        "classification",
        _symlinked_folder,
        [
            "row 2 (images/link/x.png): images/link is a symbolic link; links are never followed",
            "data folder: 1 symbolic link(s)",
        ],
    ),
    (
        "unknown label",
        "classification",
        _set(2, label="Sneakr"),
        [
            "label: 1 row not in the declared labels ['boot', 'shirt']: "
            "row 2 (images/train/boot_1.png) 'Sneakr'"
        ],
    ),
    (
        "empty caption",
        "retrieval",
        _set(3, caption=""),
        ["caption: 1 row empty (no value): row 3 (images/train/boot_2.png)"],
    ),
    (
        "caption too short",
        "retrieval",
        _set(4, caption="ab"),
        ["caption: 1 row with caption length outside 3..500 characters", "row 4", "'ab'"],
    ),
    (
        "NaN label",
        "classification",
        _set(5, label="NaN"),
        ["label: 1 row empty (no value): row 5 (images/train/shirt_0.png)"],
    ),
    (
        "empty answer",
        "vqa",
        _set(2, answer=""),
        ["answer: 1 row empty (no value): row 2 (images/train/boot_0.png)"],
    ),
    (
        "answer not declared for its question",
        "vqa",
        _set(1, answer="maybe"),
        [f"answer: 1 row not a declared answer to {QUESTION!r}", "row 1", "'maybe'"],
    ),
    (
        "missing column",
        "classification",
        _drop_column("label"),
        ["missing required column(s) ['label']", "the table has ['image', 'split']"],
    ),
    (
        "duplicate rows",
        "classification",
        _duplicate_row,
        [
            "table: 2 rows duplicated (every column equal)",
            "image: 2 rows repeat an image path",
            "row 1 (images/train/boot_0.png), row 25 (images/train/boot_0.png)",
        ],
    ),
    (
        "same image in train and test",
        "classification",
        _same_image_train_test,
        [
            "image: 2 rows with the same image content in another split",
            "row 1 (images/train/boot_0.png): same image content as row 24 "
            "(images/test/shirt_3.png, test)",
            "row 24 (images/test/shirt_3.png): same image content as row 1 "
            "(images/train/boot_0.png, train)",
        ],
    ),
    (
        "huge declared dimensions",
        "classification",
        _huge_declared_size,
        [
            "more than 40000000 pixels",
            "decompression-bomb guard",
            "row 1 (images/train/boot_0.png) 10000000000",
        ],
    ),
    (
        "empty split",
        "classification",
        _empty_split("val"),
        ["split: split 'val' has 0 rows; needs at least 1 (validation.min_per_split)"],
    ),
    (
        "too few examples of a class",
        "classification",
        _drop_class("shirt", "train"),
        [
            "label 'shirt' in split 'train' has 0 rows; "
            "needs at least 2 (validation.min_per_class.train)"
        ],
    ),
    (
        "unknown split value",
        "retrieval",
        _set(1, split="training"),
        ["split: 1 row not one of the splits ['train', 'val', 'test']", "'training'"],
    ),
    (
        "semicolon delimiter",
        "classification",
        _rewrite_csv(lambda text: text.replace(",", ";").encode()),
        ["metadata.csv", "semicolon-separated (';')", "must be comma-separated"],
    ),
    (
        "tab delimiter",
        "vqa",
        _rewrite_csv(lambda text: text.replace(",", "\t").encode()),
        ["metadata.csv", "tab-separated", "must be comma-separated"],
    ),
    (
        "UTF-16 CSV",
        "classification",
        _rewrite_csv(lambda text: text.encode("utf-16")),
        ["metadata.csv", "encoded as UTF-16", "re-save it as UTF-8"],
    ),
    (
        "latin-1 CSV",
        "classification",
        _rewrite_csv(_latin1),
        ["metadata.csv", "not valid UTF-8: byte 0xe0 at line 2", "bottine à lacets"],
    ),
    (
        "missing metadata file",
        "retrieval",
        _remove_metadata,
        ["metadata.csv: metadata file not found", "data.metadata"],
    ),
    (
        "empty metadata file",
        "vqa",
        _rewrite_csv(lambda text: b""),
        ["metadata.csv: the file is empty", "header line"],
    ),
    (
        "header but no rows",
        "retrieval",
        _rewrite_csv(lambda text: text.splitlines(keepends=True)[0].encode()),
        ["0 rows (train 0, val 0, test 0)", "split 'train' has 0 rows; needs at least 1"],
    ),
    (
        "row with too many fields",
        "classification",
        _too_many_fields,
        ["metadata.csv: not a valid CSV table", "line 26"],
    ),
]


@pytest.mark.parametrize(
    ("task", "breaker", "words"),
    [pytest.param(task, breaker, words, id=name) for name, task, breaker, words in CORPUS],
)
def test_bad_input_fails_with_a_message_naming_it(tmp_path, task, breaker, words):
    domain = make_domain(tmp_path, task)
    breaker(domain)
    report = validate_domain(domain)
    assert report.passed is False
    assert report.failures
    for expected in words:
        assert expected in report.summary, f"{expected!r} not in:\n{report.summary}"
    json.dumps(report.to_dict())  # JSON-able, numpy scalars included


def test_summary_has_one_line_per_failed_check_in_suite_order(tmp_path):
    domain = make_domain(tmp_path, "classification")
    _set(2, label="Sneakr")(domain)
    _set(6, label="")(domain)
    _not_an_image(domain)
    report = validate_domain(domain)
    lines = report.summary.splitlines()
    assert lines[0].startswith(f"{domain.name}: FAILED: 3 problem(s)")
    assert [f.check for f in report.failures] == ["not_null", "label_in_set", "image_decodes"]
    assert lines[1:] == [f"  - {f.message}" for f in report.failures]
    failure = report.failures[1]
    assert (failure.column, failure.count) == ("label", 1)
    assert failure.rows == [{"row": 2, "image": "images/train/boot_1.png", "value": "Sneakr"}]
    assert failure.expectation == "expect_column_values_to_be_in_set"


def test_first_rows_are_listed_and_the_rest_counted(tmp_path):
    domain = make_domain(tmp_path, "classification")
    _edit(lambda rows: [r | {"label": "Sneakr"} if r["split"] == "test" else r for r in rows])(
        domain
    )
    failure = next(f for f in validate_domain(domain).failures if f.check == "label_in_set")
    assert failure.count == 8 and [r["row"] for r in failure.rows] == [17, 18, 19, 20, 21]
    assert failure.message.endswith("... and 3 more")


def test_size_bounds_come_from_domain_yaml(tmp_path):
    domain = make_domain(tmp_path, "retrieval", validation={"images": {"min_side": 32}})
    report = validate_domain(domain)
    assert not report.passed
    assert "image width outside 32..8192 px (validation.images)" in report.summary
    assert "24 rows" in report.summary  # every image is 24 x 24


def test_truncated_image_fails_even_if_pil_is_set_to_accept_truncated_files(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 123)
    domain = make_domain(tmp_path, "classification")
    _truncate(domain)
    report = validate_domain(domain)
    assert [f.check for f in report.failures] == ["image_decodes"]
    # PIL's process-wide settings are restored afterwards
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True and Image.MAX_IMAGE_PIXELS == 123


def test_validation_never_modifies_the_data_dir_nor_writes_outside_report_dir(tmp_path):
    domain = make_domain(tmp_path, "classification")
    _truncate(domain)
    _huge_declared_size(make_domain(tmp_path, "classification", name="other"))
    before_data = folder_digest(domain.data_dir)
    before_all = {p for p in tmp_path.rglob("*")}
    report_dir = tmp_path / "out" / "report"
    report = validate_domain(domain, report_dir)
    assert not report.passed and report.docs_path.is_file()
    assert folder_digest(domain.data_dir) == before_data
    new = {p for p in tmp_path.rglob("*")} - before_all
    cache = Path(os.environ["MPT_HOME"]) / "cache" / "image-facts"  # the platform's own
    assert all(
        p == tmp_path / "out"
        or p.is_relative_to(report_dir)
        or cache.is_relative_to(p)
        or p.is_relative_to(cache)
        for p in new
    )


def test_report_of_an_unreadable_table_is_written_too(tmp_path):
    domain = make_domain(tmp_path, "classification")
    _remove_metadata(domain)
    report = validate_domain(domain, tmp_path / "report")
    assert report.docs_path is None and report.rows == 0 and report.counts == {}
    assert [f.check for f in report.failures] == ["read_table"]
    saved = json.loads((tmp_path / "report" / "validation.json").read_text())
    assert saved["passed"] is False and saved["failures"][0]["check"] == "read_table"


def test_results_are_deterministic(tmp_path):
    domain = make_domain(tmp_path, "vqa")
    _set(3, answer="maybe")(domain)
    _missing_file(domain)
    first, second = validate_domain(domain), validate_domain(domain)
    assert first.to_dict() == second.to_dict()


def _with_extra(tmp_path: Path, entries: list, task: str = "classification") -> Domain:
    domain = make_domain(tmp_path, task, validation={"extra_expectations": "extra.yaml"})
    (domain.root / "extra.yaml").write_text(yaml.safe_dump(entries))
    return domain


PNG = r"\.png$"


def test_extra_expectations_from_yaml_are_checked(tmp_path):
    entries = [
        {
            "type": "expect_column_values_to_match_regex",
            "kwargs": {"column": "image", "regex": PNG},
        },
        {"type": "ExpectTableRowCountToBeBetween", "kwargs": {"max_value": 100}},  # CamelCase too
    ]
    domain = _with_extra(tmp_path, entries)
    report = validate_domain(domain)
    assert report.passed, report.summary
    _set(4, image="images/train/boot_3.jpg")(domain)
    report = validate_domain(domain)
    [extra] = [f for f in report.failures if f.check.startswith("extra:")]
    assert extra.message == (
        "image: 1 row fail expect_column_values_to_match_regex(regex='\\\\.png$') from "
        "extra.yaml: row 4 (images/train/boot_3.jpg) 'images/train/boot_3.jpg'"
    )


def test_aggregate_extra_expectation_reports_the_observed_value(tmp_path):
    entries = [{"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 10}}]
    report = validate_domain(_with_extra(tmp_path, entries))
    [extra] = report.failures
    assert extra.message == (
        "table: fail expect_table_row_count_to_be_between(max_value=10) from extra.yaml "
        "(observed: 24)"
    )


def test_unknown_extra_expectation_type_names_the_file_and_closest_names(tmp_path):
    domain = _with_extra(tmp_path, [{"type": "expect_column_values_to_match_regexp", "kwargs": {}}])
    report = validate_domain(domain)
    assert not report.passed
    [failure] = report.failures
    assert failure.check == "extra_expectations"
    assert "extra.yaml: entry 1: unknown expectation type" in failure.message
    assert "did you mean expect_column_values_to_match_regex" in failure.message
    assert "allowed: expect_column_distinct_values_to_be_in_set" in failure.message


def test_extra_expectation_with_bad_kwargs_is_a_clear_error(tmp_path):
    kwargs = {"column": "image", "regexp": "x"}
    entries = [{"type": "expect_column_values_to_match_regex", "kwargs": kwargs}]
    report = validate_domain(_with_extra(tmp_path, entries))
    assert "extra.yaml: entry 1 (expect_column_values_to_match_regex): invalid kwargs" in (
        report.summary
    )
    assert "regexp extra fields not permitted" in report.summary


def test_importing_the_package_does_not_import_great_expectations(tmp_path):
    code = (
        "import sys, flows.validation; "
        "sys.exit('great_expectations' in sys.modules or 'pandas' not in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == 0


def test_a_second_validation_decodes_only_the_new_and_changed_images(tmp_path, monkeypatch):
    """Image facts of files unchanged since the last validation (size, mtime, inode) are
    reused: a retrain after new images reads and decodes only those."""
    domain = make_domain(tmp_path, "classification")
    assert validate_domain(domain).passed
    rows = read_rows(domain)
    changed = domain.data_dir / rows[0]["image"]
    changed.write_bytes(png_bytes(seed=999))
    new = {**rows[1], "image": "images/train/new.png"}
    (domain.data_dir / new["image"]).write_bytes(png_bytes(seed=1000))
    write_rows(domain, [*rows, new])
    opened = []
    real = Image.open
    monkeypatch.setattr(
        Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real(fp, *a, **k)
    )
    report = validate_domain(domain)
    assert report.passed and report.rows == len(rows) + 1
    assert sorted(opened) == sorted(
        str(domain.data_dir / p) for p in (rows[0]["image"], new["image"])
    )
