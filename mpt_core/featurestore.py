"""The frozen-feature store: what the frozen backbone computes for an image, computed once,
kept on disk, and read back a batch at a time.

A feature is keyed by what decides it: the backbone's identity (weights sha256), which
frozen output it is (`stem`: what visual prompts start from; `embedding`: a finished image
embedding; `pixels`, `queries` on a generative backbone), the preprocessing, and the sha256
of the image's own bytes. One namespace (directory) per (backbone, output, preprocessing)
holds shards: standard safetensors files with two tensors, `features` (n, ...) and `keys`
(n, 32) (the images' sha256), and the sha256 of each in their metadata. A shard is
written whole (temp file, then rename), so readers never see half of one, and two
processes filling the same namespace at once leave it consistent (at worst an image is
stored twice, and either copy is the same). A lookup reads and verifies only a shard's
keys; the first time a process reads features from a shard, the whole shard is verified
(streamed, so a process verifies what it uses, not the store); a shard that fails either
check is deleted and its images recomputed.

Reads are positional (`os.preadv` of the rows a batch needs) through a `FeatureView`, so
training holds one batch of features in memory, not the data set. The store keeps its
size under a cap, dropping the least recently used shards first (`MPT_FEATURE_CACHE_GB`);
a view keeps its shards open, so a shard evicted under it is still read whole.

Features are computed in chunks of a fixed size, the last one padded (`frozen_chunks`): a
CPU kernel may round differently for another batch size, and this keeps a stored feature
bit-identical to a recomputed one, whichever images it was computed with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import ImageSource, load_image
from .errors import DataError

FORMAT = "mpt-features/1"
CPU_CHUNK, GPU_CHUNK = 16, 64
"""Images per forward pass of the frozen tower (the last chunk padded to it): on the CPU a
batch of 8-16 ran fastest per image here (14-16 ms against 26 ms at 64, EfficientNet-Lite0
at 160 px, one thread), a GPU wants larger ones."""
SHARD_BYTES = 64 * 2**20
"""Target size of one shard; a shard holds at least one image."""
DEFAULT_CAP_GB = 50.0
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.int16}
"""How a row is read: bfloat16 has no numpy type, its 2-byte words are read as int16."""

Progress = Callable[[int, int], None]
"""(images embedded so far, images to embed) after each chunk."""


def content_digest(source: ImageSource) -> bytes:
    """sha256 of an image's content: a file's bytes, or a PIL image's mode, size and pixels."""
    digest = hashlib.sha256()
    if isinstance(source, Image.Image):
        digest.update(f"pil:{source.mode}:{source.size}".encode())
        digest.update(source.tobytes())
        return digest.digest()
    try:
        with open(source, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"cannot read image {source}: {exc}") from exc
    return digest.digest()


def chunk_size(device: torch.device) -> int:
    return GPU_CHUNK if device.type == "cuda" else CPU_CHUNK


def frozen_chunks(
    compute: Callable[[list[Image.Image]], torch.Tensor],
    images: Sequence[ImageSource],
    chunk: int = CPU_CHUNK,
) -> Iterator[torch.Tensor]:
    """`compute` over `images` (paths are read) in chunks of `chunk` images, the last one
    padded with its own last image and cut back: every image is computed at one batch size.
    Outputs come in the standard contiguous layout (a convolution may return channels-last
    strides, and later kernels round differently on them), as they are stored."""
    for start in range(0, len(images), chunk):
        part = [load_image(x) for x in images[start : start + chunk]]
        n = len(part)
        with torch.no_grad():
            out = compute(part + [part[-1]] * (chunk - n))
        yield out[:n].contiguous()


@dataclass(frozen=True)
class FeatureKey:
    """What decides a stored feature besides the image: the backbone's weights, the output,
    and the preprocessing (the backbone's own description of it)."""

    backbone_sha256: str
    output: str
    preprocessing: str

    @property
    def digest(self) -> str:
        text = f"{FORMAT}|{self.backbone_sha256}|{self.output}|{self.preprocessing}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Shard:
    path: Path
    offset: int
    """Byte offset of the first feature row in the file."""
    row_bytes: int
    shape: tuple[int, ...]
    dtype: str


class DamagedShard(Exception):
    """A shard whose bytes do not match their checksum (never used; deleted)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: damaged (checksum mismatch)")
        self.path = path


def _read_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 64 * 2**20:
            raise ValueError("header too large")
        return json.loads(f.read(length)), 8 + length


class FeatureStore:
    """Frozen features on disk, by `FeatureKey` and image content (see the module docstring).

    >>> store = FeatureStore(Path("~/.mpt/cache/features").expanduser(), cap_gb=20)
    >>> view = store.features(key, images, compute)   # missing ones computed and added
    >>> batch = view[[0, 5, 9]]                        # (3, ...) read from disk
    """

    def __init__(self, root: str | Path, cap_gb: float | None = None) -> None:
        self.root = Path(root)
        self.cap_bytes = int((DEFAULT_CAP_GB if cap_gb is None else cap_gb) * 2**30)
        self._keys: dict[Path, tuple[tuple[int, int], list[bytes]]] = {}
        self._verified: set[tuple[Path, int, int]] = set()
        self._digests: dict[tuple[str, int, int], bytes] = {}
        self.embedded = 0
        """Images this store object computed (not found stored), for reports and lineage."""

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> FeatureStore:
        """The node's store: `$MPT_HOME/cache/features` (default ~/.mpt), capped at
        `MPT_FEATURE_CACHE_GB` (default 50)."""
        home = Path(home or os.environ.get("MPT_HOME") or Path.home() / ".mpt").expanduser()
        raw = os.environ.get("MPT_FEATURE_CACHE_GB")
        try:
            cap = float(raw) if raw else None
        except ValueError:
            raise DataError(
                f"MPT_FEATURE_CACHE_GB={raw!r} is not a number of gigabytes, e.g. 20"
            ) from None
        if cap is not None and cap <= 0:
            raise DataError(f"MPT_FEATURE_CACHE_GB={raw!r} must be above 0 (gigabytes)")
        return cls(home / "cache" / "features", cap)

    # --- reading ------------------------------------------------------------------------
    def digest(self, source: ImageSource) -> bytes:
        """`content_digest`, remembered for a file while its size and mtime stay the same."""
        if isinstance(source, Image.Image):
            return content_digest(source)
        try:
            stat = os.stat(source)
        except OSError as exc:
            raise DataError(f"cannot read image {source}: {exc}") from exc
        stamp = (str(source), stat.st_size, stat.st_mtime_ns)
        if stamp not in self._digests:
            self._digests[stamp] = content_digest(source)
        return self._digests[stamp]

    def namespace(self, key: FeatureKey) -> Path:
        return self.root / key.digest

    def _shards(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == ".safetensors")

    def _shard_keys(self, path: Path) -> list[bytes] | None:
        """The 32-byte keys of a shard's rows (their checksum verified); None when the
        shard is gone or damaged (a damaged one is deleted, its images computed again)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self._keys.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            keys = self._read_keys(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            self.forget(path)  # damaged: never used, recomputed by the caller
            return None
        self._keys[path] = (stamp, keys)
        return keys

    def _read_keys(self, path: Path) -> list[bytes]:
        header, start = _read_header(path)
        meta, keys = header["__metadata__"], header["keys"]
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a feature shard: {meta.get('format')!r}")
        a, b = keys["data_offsets"]
        with open(path, "rb") as f:
            f.seek(start + a)
            data = f.read(b - a)
        if hashlib.sha256(data).hexdigest() != meta["keys_sha256"]:
            raise ValueError("checksum mismatch of the keys")
        return [data[i : i + 32] for i in range(0, len(data), 32)]  # numpy's S32 drops NULs

    def check_features(self, path: Path) -> None:
        """Raise DamagedShard unless the shard's features match their checksum; streamed,
        once per process and shard (while its size and mtime stay the same)."""
        stat = path.stat()
        stamp = (path, stat.st_size, stat.st_mtime_ns)
        if stamp in self._verified:
            return
        try:
            header, start = _read_header(path)
            expected = header["__metadata__"]["sha256"]
            a, b = header["features"]["data_offsets"]
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                f.seek(start + a)
                left = b - a
                while left > 0:
                    block = f.read(min(left, 8 * 2**20))
                    if not block:
                        break
                    digest.update(block)
                    left -= len(block)
        except (ValueError, KeyError, TypeError, struct.error):
            raise DamagedShard(path) from None
        if digest.hexdigest() != expected:
            raise DamagedShard(path)
        self._verified.add(stamp)

    def forget(self, path: Path) -> None:
        """Delete a damaged shard and what this process knows of it."""
        path.unlink(missing_ok=True)
        self._keys.pop(path, None)

    def lookup(self, key: FeatureKey, digests: Sequence[bytes]) -> dict[bytes, tuple[Path, int]]:
        """digest -> (shard, row) for the wanted digests that are stored (and intact)."""
        wanted = set(digests)
        found: dict[bytes, tuple[Path, int]] = {}
        for path in self._shards(self.namespace(key)):
            if len(found) == len(wanted):
                break
            keys = self._shard_keys(path)
            if keys is None:
                continue
            for row, digest in enumerate(keys):
                if digest in wanted:
                    found.setdefault(digest, (path, row))
        return found

    def view(self, key: FeatureKey, digests: Sequence[bytes]) -> FeatureView:
        """A view of stored features, in the order of `digests`; all must be stored."""
        where = self.lookup(key, digests)
        missing = [d for d in digests if d not in where]
        if missing:
            raise KeyError(f"{len(missing)} feature(s) not stored, e.g. {missing[0].hex()[:16]}")
        return FeatureView([where[d] for d in digests], self)

    # --- filling --------------------------------------------------------------------------
    def features(
        self,
        key: FeatureKey,
        images: Sequence[ImageSource],
        compute: Callable[[list[Image.Image]], torch.Tensor],
        *,
        on_progress: Progress | None = None,
        digests: Sequence[bytes] | None = None,
        chunk: int = CPU_CHUNK,
    ) -> FeatureView:
        """The features of `images` (in order), computing and adding the missing ones in
        chunks of `chunk` (each missing image once, however often it is given)."""
        digests = list(digests) if digests is not None else [self.digest(x) for x in images]
        for attempt in range(2):
            stored = self.lookup(key, digests)
            todo: dict[bytes, ImageSource] = {}
            for digest, image in zip(digests, images, strict=True):
                if digest not in stored:
                    todo.setdefault(digest, image)
            keep = {path for path, _ in stored.values()}
            if todo:
                added = self.add(
                    key, list(todo.values()), compute, list(todo), on_progress=on_progress,
                    chunk=chunk,
                )  # fmt: skip
                keep |= set(added)
            elif on_progress is not None:
                on_progress(0, 0)
            self.evict(keep=keep)
            try:
                return self.view(key, digests)
            except DamagedShard as exc:  # features damaged under intact keys: recompute them
                self.forget(exc.path)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def add(
        self,
        key: FeatureKey,
        images: Sequence[ImageSource],
        compute: Callable[[list[Image.Image]], torch.Tensor],
        digests: Sequence[bytes],
        *,
        on_progress: Progress | None = None,
        chunk: int = CPU_CHUNK,
    ) -> list[Path]:
        """Compute the features of `images` and write them as shards; returns the shards.
        (The caller evicts: `features` does, keeping what the request uses.)"""
        folder = self.namespace(key)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        pending: list[torch.Tensor] = []
        pending_keys: list[bytes] = []
        done = 0
        for out in frozen_chunks(compute, images, chunk):
            out = out.detach().cpu().contiguous()
            n = len(out)
            pending.append(out)
            pending_keys += digests[done : done + n]
            done += n
            self.embedded += n
            if on_progress is not None:
                on_progress(done, len(images))
            if sum(t.numel() * t.element_size() for t in pending) >= SHARD_BYTES:
                written.append(self._write(folder, key, torch.cat(pending), pending_keys))
                pending, pending_keys = [], []
        if pending:
            written.append(self._write(folder, key, torch.cat(pending), pending_keys))
        return written

    def _write(self, folder: Path, key: FeatureKey, features: torch.Tensor, keys: list[bytes]):
        from safetensors.torch import save_file

        if features.dtype not in _DTYPES:
            features = features.float()
        key_tensor = torch.from_numpy(np.frombuffer(b"".join(keys), dtype=np.uint8).copy())
        key_tensor = key_tensor.reshape(len(keys), 32)
        raw = features.view(torch.int16) if features.dtype == torch.bfloat16 else features
        meta = {
            "format": FORMAT,
            "sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest(),
            "keys_sha256": hashlib.sha256(key_tensor.numpy().tobytes()).hexdigest(),
            "backbone_sha256": key.backbone_sha256,
            "output": key.output,
            "preprocessing": key.preprocessing,
        }
        final = folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.safetensors"
        temp = folder / f".{final.name}.tmp"
        save_file({"features": features, "keys": key_tensor}, str(temp), metadata=meta)
        os.replace(temp, final)
        return final

    # --- size -----------------------------------------------------------------------------
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._all_shards())

    def _all_shards(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [
            p for folder in self.root.iterdir() if folder.is_dir() for p in self._shards(folder)
        ]

    def evict(self, keep: set[Path] | None = None) -> list[Path]:
        """Delete the least recently used shards until the store is under its cap (never
        those in `keep`); returns what was deleted."""
        shards = []
        for path in self._all_shards():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            shards.append((stat.st_atime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in shards)
        deleted = []
        for _, size, path in sorted(shards):
            if total <= self.cap_bytes:
                break
            if keep and path in keep:
                continue
            path.unlink(missing_ok=True)
            self._keys.pop(path, None)
            deleted.append(path)
            total -= size
        return deleted


class FeatureView:
    """Stored features as a read-only sequence: `view[rows]` reads those rows from disk into
    a tensor ((len(rows), ...) float), `len(view)`; what `fit`, `evaluate` and the search take
    in place of a tensor of prepared images. Its shards stay open while it lives."""

    def __init__(self, rows: Sequence[tuple[Path, int]], store: FeatureStore | None = None):
        shards: dict[Path, int] = {}
        self._shards: list[_Shard] = []
        self._fds: list[int] = []
        index = []
        now = time.time_ns()
        for path, row in rows:
            if path not in shards:
                if store is not None:
                    store.check_features(path)
                header, start = _read_header(path)
                feats = header["features"]
                shape = tuple(feats["shape"][1:])
                dtype = feats["dtype"]
                row_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_NUMPY[dtype]).itemsize
                shards[path] = len(self._shards)
                self._shards.append(
                    _Shard(path, start + feats["data_offsets"][0], row_bytes, shape, dtype)
                )
                self._fds.append(os.open(path, os.O_RDONLY))
                os.utime(path, ns=(now, path.stat().st_mtime_ns))  # used: last to be evicted
            index.append((shards[path], row))
        shapes = {(s.shape, s.dtype) for s in self._shards}
        if len(shapes) > 1:
            raise ValueError(f"a view mixes feature shapes {sorted(shapes)}")
        self._owner: FeatureView | None = None
        self._index = np.array(index, dtype=np.int64).reshape(-1, 2)
        self.shape = (len(index), *(self._shards[0].shape if self._shards else ()))
        self._dtype = self._shards[0].dtype if self._shards else "F32"

    def __len__(self) -> int:
        return len(self._index)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __getitem__(self, rows) -> torch.Tensor:
        if isinstance(rows, slice):
            picked = self._index[rows]
        else:
            if isinstance(rows, torch.Tensor):
                rows = rows.cpu().numpy()
            picked = self._index[np.asarray(rows, dtype=np.int64).reshape(-1)]
        out = np.empty((len(picked), *self.shape[1:]), dtype=_NUMPY[self._dtype])
        for i, (shard, row) in enumerate(picked.tolist()):
            s = self._shards[shard]
            buffer = memoryview(out[i]).cast("B")
            if os.preadv(self._fds[shard], [buffer], s.offset + row * s.row_bytes) != s.row_bytes:
                raise OSError(f"{s.path}: short read of row {row}")
        tensor = torch.from_numpy(out)
        return tensor.view(torch.bfloat16) if self._dtype == "BF16" else tensor

    def take(self, rows: Sequence[int]) -> FeatureView:
        """A view of some of these rows (nothing read): a fold of a split, a batch's items."""
        view = object.__new__(FeatureView)
        view._shards, view._fds, view._owner = self._shards, self._fds, self
        view._index = self._index[np.asarray(rows, dtype=np.int64).reshape(-1)]
        view.shape = (len(view._index), *self.shape[1:])
        view._dtype = self._dtype
        return view

    @staticmethod
    def concat(views: Sequence[FeatureView]) -> FeatureView:
        """One view of the rows of `views`, in order (nothing read): train and val as one
        pool for k-fold fits. The views stay open as long as it lives."""
        if not views:
            raise ValueError("concat needs at least one view")
        shapes = {(v.shape[1:], v._dtype) for v in views}
        if len(shapes) > 1:
            raise ValueError(f"a view mixes feature shapes {sorted(shapes)}")
        view = object.__new__(FeatureView)
        view._shards, view._fds, index = [], [], []
        for part in views:
            index.append(part._index + np.array([len(view._shards), 0], dtype=np.int64))
            view._shards += part._shards
            view._fds += part._fds
        view._owner, view._parts = views[0], list(views)
        view._index = np.concatenate(index)
        view.shape = (len(view._index), *views[0].shape[1:])
        view._dtype = views[0]._dtype
        return view

    def __del__(self) -> None:
        if getattr(self, "_owner", None) is not None:
            return  # a `take` of another view: the files are that view's to close
        for fd in getattr(self, "_fds", []):
            with contextlib.suppress(OSError):
                os.close(fd)
