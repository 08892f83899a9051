"""Containment, tried as an attacker would: links out of the domain, path escapes, YAML tags,
oversized text. Each case checks that nothing outside the domain was read (a FIFO blocks
whoever opens it), hashed or copied (the DVC cache and remote are unchanged), and that the
data folder itself is left as it was."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from flows.domains import DomainConfigError, get_domain, load_domain_config
from flows.jobs import StepFailed
from flows.pipeline import prepare
from flows.validation import validate_domain
from flows.versioning import DataVersioner, RemoteSpec, VersioningError
from registry import open_registry

from .domain_factory import folder_digest, make_domain, png_bytes, read_rows, write_rows

SECRET = "TOP-SECRET-CONTENT-0xC0FFEE"


def repo_domain(tmp_path: Path, task: str = "classification", **kwargs):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return make_domain(tmp_path, task, **kwargs)


def validate_within(domain, seconds: float = 60.0):
    """Validate in a thread: a FIFO opened by mistake blocks it, and the test fails."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(report=validate_domain(domain)))
    thread.daemon = True
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "validation blocked: it opened a file outside the domain"
    return out["report"]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def secret_file(path: Path) -> Path:
    path.write_text(SECRET)
    return path


def test_an_image_linked_to_a_file_outside_is_refused_and_never_opened(tmp_path):
    domain = make_domain(tmp_path, "classification")
    outside = fifo(tmp_path / "outside-pipe")
    rows = read_rows(domain)
    (domain.data_dir / "images" / "evil.png").symlink_to(outside)
    rows[0]["image"] = "images/evil.png"
    write_rows(domain, rows)
    report = validate_within(domain)
    assert not report.passed
    assert "row 1 (images/evil.png): images/evil.png is a symbolic link" in report.summary
    assert "data folder: 1 symbolic link(s)" in report.summary


def test_a_link_to_a_valid_png_outside_data_is_refused_too(tmp_path):
    domain = make_domain(tmp_path, "classification")
    (tmp_path / "nice.png").write_bytes(png_bytes(4242))
    rows = read_rows(domain)
    (domain.data_dir / "images" / "nice.png").symlink_to(tmp_path / "nice.png")
    rows[0]["image"] = "images/nice.png"
    write_rows(domain, rows)
    report = validate_domain(domain)
    assert not report.passed and "images/nice.png is a symbolic link" in report.summary


def test_a_linked_metadata_table_is_refused_unread(tmp_path):
    domain = make_domain(tmp_path, "classification")
    domain.metadata_path.unlink()
    domain.metadata_path.symlink_to(fifo(tmp_path / "table-pipe"))
    report = validate_within(domain)
    assert [f.check for f in report.failures] == ["read_table"]
    assert "is a symbolic link; refused, never read" in report.summary


def test_a_linked_data_folder_is_refused(tmp_path):
    domain = make_domain(tmp_path, "classification")
    real = tmp_path / "real-data"
    domain.data_dir.rename(real)
    domain.data_dir.symlink_to(real, target_is_directory=True)
    report = validate_within(domain)
    assert not report.passed and "is a symbolic link; the data folder must be a real folder" in (
        report.summary
    )


@pytest.mark.parametrize("how", ["relative escape", "link out of the domain"])
def test_extra_expectations_outside_the_domain_are_never_read(tmp_path, how):
    domain = make_domain(tmp_path, "classification")
    outside = secret_file(tmp_path / "outside.yaml")
    if how == "relative escape":
        name = "../../outside.yaml"
    else:
        (domain.root / "extra.yaml").symlink_to(outside)
        name = "extra.yaml"
    config = yaml.safe_load((domain.root / "domain.yaml").read_text())
    config["validation"]["extra_expectations"] = name
    (domain.root / "domain.yaml").write_text(yaml.safe_dump(config))
    report = validate_domain(get_domain(tmp_path / "domains", domain.name))
    assert not report.passed and "validation.extra_expectations" in report.summary
    assert SECRET not in report.summary


def test_a_refused_domain_leaves_data_cache_and_remote_byte_for_byte_unchanged(tmp_path):
    domain = repo_domain(tmp_path)
    versioner = DataVersioner(tmp_path, RemoteSpec(str(tmp_path / "remote")))
    versioner.track(domain.data_dir)
    versioner.push(domain.data_dir)
    outside = secret_file(tmp_path / "passwd")
    (domain.data_dir / "images" / "x.png").symlink_to(outside)
    rows = read_rows(domain)
    rows[0]["image"] = "images/x.png"
    write_rows(domain, rows)
    before = {
        p: folder_digest(p) for p in (domain.data_dir, tmp_path / ".dvc", tmp_path / "remote")
    }
    registry = open_registry()
    with pytest.raises(StepFailed) as failure:
        prepare(domain, versioner, registry, tmp_path / "reports")
    assert failure.value.failure.invalid and "symbolic link" in failure.value.failure.message
    after = {p: folder_digest(p) for p in before}
    assert after[domain.data_dir] == before[domain.data_dir]
    assert after[tmp_path / "remote"] == before[tmp_path / "remote"]
    cache = tmp_path / ".dvc" / "cache"
    assert all(SECRET.encode() not in p.read_bytes() for p in cache.rglob("*") if p.is_file())
    assert (domain.data_dir / "images" / "x.png").is_symlink()  # not replaced by a copy


def test_dvc_itself_refuses_to_version_a_folder_with_links(tmp_path):
    domain = repo_domain(tmp_path)
    (domain.data_dir / "sneaky").symlink_to(secret_file(tmp_path / "s"))
    versioner = DataVersioner(tmp_path, RemoteSpec(str(tmp_path / "remote")))
    with pytest.raises(VersioningError, match=r"refusing to version .*sneaky"):
        versioner.track(domain.data_dir)
    assert not (domain.root / "data.dvc").exists()


def test_yaml_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil" / "domain.yaml"
    path.parent.mkdir()
    path.write_text(f"task: !!python/object/apply:os.system ['touch {marker}']\nlabels: [a, b]\n")
    with pytest.raises(DomainConfigError, match="not valid YAML"):
        load_domain_config(path)
    assert not marker.exists()


def test_a_huge_caption_is_cut_in_the_summary_with_its_row(tmp_path):
    domain = make_domain(tmp_path, "retrieval")
    rows = read_rows(domain)
    rows[4]["caption"] = "x" * 100_000
    write_rows(domain, rows)
    report = validate_domain(domain)
    assert not report.passed and "row 5 (" in report.summary
    assert len(report.summary) < 3_000 and "(100000 chars)" in report.summary
