"""Leakage between splits, for every domain: the same bytes in two splits (an error naming
both rows), near-duplicates by perceptual hash (a warning listing the pairs), a group in two
splits (an error); in the report and in the Data Docs."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from flows.domains import get_domain
from flows.validation import validate_domain
from flows.validation.leakage import close_pairs

from .domain_factory import image_of, make_domain, read_rows, write_rows


def _brute_force(hashes: np.ndarray, distance: int) -> set[tuple[int, int, int]]:
    bits = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    return {
        (i, j, int(bits[i, j]))
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if bits[i, j] <= distance
    }


@pytest.mark.parametrize("distance", [0, 1, 4, 7, 12])
def test_multi_index_hashing_finds_exactly_the_pairs_brute_force_finds(distance):
    rng = np.random.default_rng(distance)
    base = rng.integers(0, 2**63, size=300, dtype=np.uint64)
    # near copies of the first 100 with 0..distance+2 bits flipped (some out of reach), and
    # exact repeats of the first 5
    flipped = rng.integers(0, distance + 3, size=100)
    masks = [
        np.bitwise_or.reduce(np.uint64(1) << rng.choice(64, k, replace=False).astype(np.uint64))
        if k
        else np.uint64(0)
        for k in flipped
    ]
    hashes = np.r_[base, base[:100] ^ np.array(masks, dtype=np.uint64), base[:5]]
    a, b, d = close_pairs(hashes, distance)
    found = set(zip(a.tolist(), b.tolist(), d.tolist(), strict=True))
    assert found == _brute_force(hashes, distance)
    planted = {(i, 300 + i, int(k)) for i, k in enumerate(flipped) if k <= distance}
    assert planted <= found and {(i, 400 + i, 0) for i in range(5)} <= found


def _with_rows(domain, change):
    rows = read_rows(domain)
    write_rows(domain, change(rows) or rows)


def _row(rows, split, n=0):
    return [i for i, r in enumerate(rows) if r["split"] == split][n]


def test_the_same_image_in_two_splits_is_an_error_naming_both_rows(tmp_path):
    domain = make_domain(tmp_path, "vqa")  # two rows per image: both questions
    rows = read_rows(domain)
    train, test = _row(rows, "train"), _row(rows, "test")
    image_of(domain, test + 1).write_bytes(image_of(domain, train + 1).read_bytes())
    report = validate_domain(domain)
    assert not report.passed
    (failure,) = [f for f in report.failures if f.check == "image_leak"]
    # every row of both images is named, each with a row of the other split
    assert failure.count == 4
    line = failure.message
    assert f"row {train + 1} ({rows[train]['image']}): same image content as row {test + 1}" in line
    assert f"row {test + 1} ({rows[test]['image']}): same image content as row {train + 1}" in line
    assert not report.warnings  # identical bytes are the error, not also a near-duplicate


def test_a_near_copy_in_another_split_is_a_warning_listing_the_pair(tmp_path):
    domain = make_domain(tmp_path, "classification")
    rows = read_rows(domain)
    train, test = _row(rows, "train", 1), _row(rows, "test", 2)
    original = Image.open(image_of(domain, train + 1)).convert("RGB")
    brighter = Image.eval(original, lambda v: min(v + 6, 255))  # other bytes, same look
    brighter.save(image_of(domain, test + 1))
    report = validate_domain(domain)
    assert report.passed, report.summary  # a warning, not a failure
    (warning,) = report.warnings
    assert warning.check == "image_near_duplicate" and warning.count == 2
    assert [r["row"] for r in warning.rows] == [train + 1, test + 1]
    assert f"looks like row {test + 1} ({rows[test]['image']}, test)" in warning.message
    assert f"looks like row {train + 1} ({rows[train]['image']}, train)" in warning.message
    assert "validation.near_duplicate_distance" in warning.message
    assert f"  - warning: {warning.message}" in report.summary.splitlines()
    assert report.summary.splitlines()[0].endswith("checks passed, 1 warned")
    assert report.to_dict()["warnings"][0]["check"] == "image_near_duplicate"


def test_the_near_duplicate_threshold_comes_from_domain_yaml(tmp_path):
    domain = make_domain(tmp_path, "classification", validation={"near_duplicate_distance": None})
    rows = read_rows(domain)
    train, test = _row(rows, "train"), _row(rows, "test")
    original = Image.open(image_of(domain, train + 1)).convert("RGB")
    Image.eval(original, lambda v: min(v + 6, 255)).save(image_of(domain, test + 1))
    report = validate_domain(domain)
    assert report.passed and not report.warnings
    assert "image_near_duplicate" not in str(report.to_dict())


def _grouped(tmp_path, task="classification"):
    """A domain whose rows carry a `patient` column, each patient in one split."""
    domain = make_domain(tmp_path, task)
    config = yaml.safe_load((domain.root / "domain.yaml").read_text())
    config["data"] = {"group_column": "patient"}
    (domain.root / "domain.yaml").write_text(yaml.safe_dump(config))
    rows = read_rows(domain)
    write_rows(domain, [r | {"patient": f"{r['split']}-{i // 2}"} for i, r in enumerate(rows)])
    return get_domain(tmp_path / "domains", domain.name)


def test_a_group_in_two_splits_is_an_error_naming_its_rows(tmp_path):
    domain = _grouped(tmp_path)
    assert validate_domain(domain).passed
    rows = read_rows(domain)
    test = _row(rows, "test")
    rows[test]["patient"] = rows[0]["patient"]  # a train patient's image in test
    write_rows(domain, rows)
    report = validate_domain(domain)
    assert not report.passed
    (failure,) = report.failures
    assert failure.check == "group_split" and failure.column == "patient"
    assert failure.count == 3  # the patient's two train rows and the test row
    patient = rows[0]["patient"]
    assert f"row {test + 1} ({rows[test]['image']}): patient {patient!r} is also in row 1" in (
        failure.message
    )
    assert "data.group_column" in failure.message


def test_a_named_group_column_is_required(tmp_path):
    domain = _grouped(tmp_path)
    _with_rows(domain, lambda rows: [{k: v for k, v in r.items() if k != "patient"} for r in rows])
    report = validate_domain(domain)
    assert "missing required column(s) ['patient']" in report.summary


def test_leakage_checks_appear_in_the_data_docs(tmp_path):
    domain = _grouped(tmp_path)
    rows = read_rows(domain)
    test = _row(rows, "test")
    rows[test]["patient"] = rows[0]["patient"]
    write_rows(domain, rows)
    original = Image.open(image_of(domain, 2)).convert("RGB")
    Image.eval(original, lambda v: min(v + 6, 255)).save(image_of(domain, test + 2))
    report = validate_domain(domain, tmp_path / "report")
    pages = "".join(
        p.read_text() for p in (tmp_path / "report" / "data_docs" / "validations").rglob("*.html")
    )
    for column in ("_image_leak", "_image_near_duplicate", "_image_group"):
        assert column in pages
    assert "is also in row 1" in pages and "looks like row" in pages
    assert {f.check for f in report.failures} == {"group_split"}
    assert {w.check for w in report.warnings} == {"image_near_duplicate"}
