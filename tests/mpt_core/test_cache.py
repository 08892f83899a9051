"""The derived-value cache: whole-file writes, and a cache folder that cannot be written."""

from __future__ import annotations

import os

import pytest

from mpt_core import backbones, load_backbone
from mpt_core.cache import atomic_write, cache_dir, read_json


def test_atomic_write_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "value.bin"
    atomic_write(path, b"first")
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["value.bin"]


def test_atomic_write_removes_its_temp_file_when_the_replace_fails(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError("replace refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        atomic_write(tmp_path / "value.bin", b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def unwritable_cache(tmp_path, monkeypatch):
    """MPT_CACHE_DIR where nothing can be written: a read-only folder, or (as root, whom
    chmod does not stop) a path below a regular file."""
    if os.geteuid() == 0:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        where = blocker / "cache"
    else:
        where = tmp_path / "read-only"
        where.mkdir()
        where.chmod(0o500)
    monkeypatch.setenv("MPT_CACHE_DIR", str(where))
    yield where
    if where.is_dir():
        where.chmod(0o700)


@pytest.fixture
def fresh_tiny_with_weight_files(tmp_path, monkeypatch):
    """load_backbone loads anew, and the tiny backbone has weight files, so loading it
    remembers their sha256 as the default backbone's load does."""
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights")
    backbones.forget_loaded_backbones()
    monkeypatch.setattr(backbones.BackboneFamily, "weight_files", lambda self, *a, **k: [weights])
    yield
    backbones.forget_loaded_backbones()  # what loaded with fake weight files stays here


def test_an_unwritable_cache_does_not_stop_a_backbone_from_loading(
    unwritable_cache, fresh_tiny_with_weight_files
):
    with pytest.raises(OSError):  # the cache really cannot be written
        atomic_write(cache_dir() / "probe", b"x")
    backbone = load_backbone("shipped", "tiny")
    assert backbone.identity.family == "shipped"
    assert read_json(backbones.IDENTITY_CACHE) == {}


def test_a_writable_cache_remembers_the_sha256(tmp_path, monkeypatch, fresh_tiny_with_weight_files):
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))
    backbone = load_backbone("shipped", "tiny")
    sha = backbone.identity.weights_sha256
    assert list(read_json(backbones.IDENTITY_CACHE).values()) == [backbone.identity.to_dict()]
    assert backbones.backbone_sha256("shipped", "tiny") == sha
    backbones.forget_loaded_backbones()

    def no_loading(*args, **kwargs):
        raise AssertionError("the identity must come from the cache")

    monkeypatch.setattr(backbones.BackboneFamily, "load", no_loading)
    assert backbones.backbone_identity("shipped", "tiny") == backbone.identity
