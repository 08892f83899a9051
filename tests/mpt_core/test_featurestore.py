"""The frozen-feature store: stored features equal recomputed ones, damaged shards are never
used, concurrent writers leave it consistent, the size cap holds, and new images are the
only ones embedded."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from mpt_core import TrainConfig, build_prompts, fit, tiny_backbone
from mpt_core.featurestore import FeatureStore, FeatureView

from .synthetic import examples, make_task


def _files(tmp_path: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` distinct PNG files (seeded noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = tmp_path / "images" / f"{seed}-{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone("shipped")


def _model(backbone, preset: str = "mpt"):
    return build_prompts(backbone, preset, make_task("classification"))


@pytest.mark.parametrize("preset", ["mpt", "coop"])  # stems, and finished embeddings
def test_a_stored_feature_equals_a_recomputed_one_and_is_computed_once(backbone, tmp_path, preset):
    model = _model(backbone, preset)
    images = _files(tmp_path, 70)
    store = FeatureStore(tmp_path / "store")
    view = model.prepare_images(images, store=store)
    assert isinstance(view, FeatureView) and len(view) == 70 and store.embedded == 70
    assert torch.equal(view[:], model.prepare_images(images))
    again = FeatureStore(tmp_path / "store").view(
        model.feature_key, [store.digest(p) for p in images]
    )
    assert torch.equal(again[list(range(69, -1, -1))], view[:].flip(0))
    more = model.prepare_images(images[:10] + _files(tmp_path, 3, seed=1), store=store)
    assert store.embedded == 73 and len(more) == 13  # only the three new images


def test_training_on_stored_features_is_bit_identical_to_training_in_memory(backbone, tmp_path):
    data = examples("classification", 3)
    val = examples("classification", 2, seed=1)
    config = TrainConfig(epochs=3, batch_size=4, progress=False)
    in_memory = _model(backbone)
    streamed = _model(backbone)
    first = fit(in_memory, data, val, config)
    second = fit(streamed, data, val, config, store=FeatureStore(tmp_path / "store"))
    assert first.history == second.history
    ours, theirs = in_memory.state_dict(), streamed.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_damaged_shard_is_detected_deleted_and_recomputed(backbone, tmp_path):
    model = _model(backbone)
    images = _files(tmp_path, 5)
    store = FeatureStore(tmp_path / "store")
    expected = model.prepare_images(images, store=store)[:]
    (shard,) = store.namespace(model.feature_key).glob("*.safetensors")
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the stored features
    shard.write_bytes(bytes(data))
    fresh = FeatureStore(tmp_path / "store")  # a new process: shards are verified on open
    view = model.prepare_images(images, store=fresh)
    assert fresh.embedded == 5 and not shard.exists()
    assert torch.equal(view[:], expected)


def _fill(root: str, paths: list[str], seed: int) -> int:
    backbone = tiny_backbone("shipped", seed=0)
    model = build_prompts(backbone, "mpt", make_task("classification"))
    store = FeatureStore(root)
    model.prepare_images([Path(p) for p in paths], store=store)
    return store.embedded


def test_two_processes_filling_the_same_store_leave_it_consistent(backbone, tmp_path):
    images = _files(tmp_path, 40)
    root = tmp_path / "store"
    halves = ([str(p) for p in images[:30]], [str(p) for p in images[10:]])  # 20 shared
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        counts = pool.starmap(_fill, [(str(root), paths, i) for i, paths in enumerate(halves)])
    assert sum(counts) >= 40
    model = _model(backbone)
    store = FeatureStore(root)
    view = model.prepare_images(images, store=store)
    assert store.embedded == 0  # every image is there, intact
    assert torch.equal(view[:], model.prepare_images(images))


def test_eviction_keeps_the_cap_dropping_the_least_recently_used(backbone, tmp_path):
    model = _model(backbone)
    groups = [_files(tmp_path, 8, seed=s) for s in range(4)]
    probe = FeatureStore(tmp_path / "probe")
    model.prepare_images(groups[0], store=probe)
    one = probe.size_bytes()
    store = FeatureStore(tmp_path / "store", cap_gb=2.5 * one / 2**30)  # room for two groups
    for group in groups[:2]:
        model.prepare_images(group, store=store)
    model.prepare_images(groups[0], store=store)  # used again: group 1 is now the oldest
    for group in groups[2:]:
        model.prepare_images(group, store=store)
        assert store.size_bytes() <= store.cap_bytes
    before = store.embedded
    model.prepare_images(groups[3], store=store)
    assert store.embedded == before  # the most recent group is still stored
    model.prepare_images(groups[1], store=store)
    assert store.embedded == before + 8  # the least recently used group was evicted


def test_the_cap_comes_from_the_environment_with_a_clear_error(monkeypatch, tmp_path):
    from mpt_core.errors import DataError

    monkeypatch.setenv("MPT_FEATURE_CACHE_GB", "1.5")
    store = FeatureStore.from_env(tmp_path)
    assert store.root == tmp_path / "cache" / "features" and store.cap_bytes == int(1.5 * 2**30)
    monkeypatch.setenv("MPT_FEATURE_CACHE_GB", "lots")
    with pytest.raises(DataError, match="MPT_FEATURE_CACHE_GB='lots' is not a number"):
        FeatureStore.from_env(tmp_path)


def test_a_digest_ending_in_zero_bytes_is_found(backbone, tmp_path):
    """Keys are raw sha256 bytes: one in 256 ends in a NUL, which fixed-width byte strings
    would drop."""
    model = _model(backbone)
    images = _files(tmp_path, 2)
    store = FeatureStore(tmp_path / "store")
    digests = [b"\x01" * 31 + b"\x00", b"\x00" * 32]
    store.features(model.feature_key, images, model.prepare_chunk, digests=digests)
    assert set(FeatureStore(tmp_path / "store").lookup(model.feature_key, digests)) == set(digests)


def test_damaged_features_under_intact_keys_are_recomputed_when_read(backbone, tmp_path):
    """A lookup verifies a shard's keys only; its features are verified the first time a
    process reads from it, and a shard that fails is never used."""
    import json
    import struct

    model = _model(backbone)
    images = _files(tmp_path, 5)
    store = FeatureStore(tmp_path / "store")
    expected = model.prepare_images(images, store=store)[:]
    (shard,) = store.namespace(model.feature_key).glob("*.safetensors")
    data = bytearray(shard.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    start = 8 + length + json.loads(data[8 : 8 + length])["features"]["data_offsets"][0]
    data[start + 10] ^= 0xFF  # a byte of the first image's features
    shard.write_bytes(bytes(data))
    fresh = FeatureStore(tmp_path / "store")
    assert len(fresh.lookup(model.feature_key, [fresh.digest(p) for p in images])) == 5
    view = model.prepare_images(images, store=fresh)
    assert fresh.embedded == 5 and not shard.exists()
    assert torch.equal(view[:], expected)
