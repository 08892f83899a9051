"""Per-row image facts, computed in plain Python; the suite then expects on them with GX.

Each image goes through the checks in this order and stops at the first that fails, so a bad
row is reported once, for its first problem:

1. location: the path is relative and stays inside data/ (decided on the string alone; a
   path like `../../x.png` or `/etc/passwd` is never opened or even stat'ed), and no part
   of it is a symbolic link (checked with lstat; a link is never followed or opened);
2. file: it exists and is a regular file; its sha256 and md5 are taken from the bytes;
3. size: width and height come from the header only (PIL opens lazily) and are checked
   against `validation.images` before anything is decoded (decompression bombs);
4. decodes: the whole image decodes (truncated files fail: LOAD_TRUNCATED_IMAGES is off);
5. rgb: its mode converts to RGB; its perceptual hash (`phash`, 64-bit pHash from the
   `imagehash` library, as 16 hex digits) is taken from the decoded image.

Facts that compare rows (the same content in two splits, near-duplicates, groups) are
computed from these in `leakage`.

Status facts are "ok" or the reason, in words; None means "not checked" (an earlier check
failed), which GX's in-set and between expectations skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path, PureWindowsPath
from stat import S_ISREG
from typing import TYPE_CHECKING

import pandas as pd
from PIL import Image, ImageFile

from mpt_core.cache import atomic_write

from .containment import link_on_the_way

if TYPE_CHECKING:
    from flows.domains.schema import ImageBounds

OK = "ok"
PREFIX = "_image_"
"""Fact columns added to the table are named `_image_<fact>`."""
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True)
class ImageFacts:
    location: str | None = None
    file: str | None = None
    width: int | None = None
    height: int | None = None
    pixels: int | None = None
    decodes: str | None = None
    rgb: str | None = None
    sha256: str | None = None
    md5: str | None = None
    phash: str | None = None


FACTS = tuple(f.name for f in fields(ImageFacts))


def fact_column(fact: str) -> str:
    return PREFIX + fact


def image_facts(paths: pd.Series, data_dir: Path, bounds: ImageBounds) -> pd.DataFrame:
    """One row of facts per table row (same index), in columns named `fact_column(fact)`.
    The facts of a file unchanged since the last validation of this folder (same size,
    mtime and inode, under the same bounds and code) come from `FactsCache`: a retrain
    after new images reads and decodes only those."""
    cache: dict[str, ImageFacts] = {}
    known = FactsCache.open(data_dir, bounds)
    with pil_guard(bounds.max_pixels):
        for raw in paths.dropna().unique():
            cache[raw] = known.facts(raw, data_dir, bounds)
    known.save()
    empty = ImageFacts()
    facts = pd.DataFrame(
        [asdict(cache.get(raw, empty)) if isinstance(raw, str) else asdict(empty) for raw in paths],
        index=paths.index,
        columns=list(FACTS),
    )
    for number in ("width", "height", "pixels"):
        facts[number] = facts[number].astype("Int64")
    return facts.rename(columns=fact_column)


FACTS_VERSION = 1
"""Bumped when what `inspect_image` finds changes: cached facts of older code are dropped."""


class FactsCache:
    """The image facts of one data folder from its last validation, by table path and the
    file's (size, mtime, inode), in `$MPT_HOME/cache/image-facts/`. A path's location
    checks (it escapes the folder, a link lies on the way) run again every time; only the
    facts of a regular file are reused, so its bytes are not read and decoded again."""

    def __init__(self, path: Path, key: str, entries: dict[str, list]) -> None:
        self.path, self.key, self.entries = path, key, entries
        self.kept: dict[str, list] = {}

    @classmethod
    def open(cls, data_dir: Path, bounds: ImageBounds) -> FactsCache:
        from mpt_core import __version__

        home = Path(os.environ.get("MPT_HOME") or Path.home() / ".mpt").expanduser()
        name = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:32]
        path = home / "cache" / "image-facts" / f"{name}.json"
        key = json.dumps([FACTS_VERSION, __version__, bounds.model_dump(mode="json")])
        try:
            stored = json.loads(path.read_text())
            entries = stored["entries"] if stored.get("key") == key else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            entries = {}
        return cls(path, key, entries)

    def facts(self, raw: str, data_dir: Path, bounds: ImageBounds) -> ImageFacts:
        """The facts of `raw`: the cached ones if its file is unchanged, else inspected."""
        if location_problem(raw) is None:
            path = data_dir / posixpath.normpath(raw)
            try:
                stat = os.lstat(path)
                fresh = link_on_the_way(path, data_dir) is None
            except (OSError, RuntimeError):
                stat, fresh = None, False
            if stat is not None and fresh and S_ISREG(stat.st_mode):
                stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
                cached = self.entries.get(raw)
                if cached is not None and cached[:3] == stamp:
                    self.kept[raw] = cached
                    return ImageFacts(**cached[3])
                found = inspect_image(raw, data_dir, bounds)
                self.kept[raw] = [*stamp, asdict(found)]
                return found
        return inspect_image(raw, data_dir, bounds)

    def save(self) -> None:
        """Keep the facts of this validation's files (an unwritable cache costs only time)."""
        with suppress(OSError):
            atomic_write(self.path, json.dumps({"key": self.key, "entries": self.kept}).encode())


def inspect_image(raw: str, data_dir: Path, bounds: ImageBounds) -> ImageFacts:
    """The facts of one image path as written in the table (relative to `data_dir`).
    Call inside `pil_guard`."""
    problem = location_problem(raw)
    if problem:
        return ImageFacts(location=problem)
    path = data_dir / posixpath.normpath(raw)
    try:
        link = link_on_the_way(path, data_dir)
        if link is not None:
            return ImageFacts(
                location=f"{link.relative_to(data_dir).as_posix()} is a symbolic link; links "
                "are never followed: put the real file into data/"
            )
        if not path.is_file():
            missing = "a directory, not a file" if path.is_dir() else "no such file"
            return ImageFacts(location=OK, file=missing)
        sha256, md5 = _digests(path)
        facts = ImageFacts(location=OK, file=OK, sha256=sha256, md5=md5)
    except (OSError, RuntimeError) as exc:  # unreadable, name too long
        return ImageFacts(location=OK, file=f"cannot be read ({_reason(exc, path)})")
    return _inspect_pixels(path, facts, bounds)


def location_problem(raw: str) -> str | None:
    """Why a table path may not be used, judged on the string only; None if it is fine."""
    if not raw.strip():
        return "empty path"
    if "\x00" in raw:
        return "the path contains a NUL character"
    if raw.startswith(("/", "\\")) or PureWindowsPath(raw).drive:
        return "absolute path; write it relative to the data folder (e.g. images/a.png)"
    normal = posixpath.normpath(raw)
    if normal == ".." or normal.startswith("../"):
        return "the path escapes the data folder ('..'); keep images inside data/"
    if normal == ".":
        return "the path names the data folder itself, not an image"
    return None


@contextmanager
def pil_guard(max_pixels: int) -> Iterator[None]:
    """PIL's own decompression-bomb limit set to `max_pixels` and truncated files refused,
    restoring PIL's process-wide settings afterwards."""
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
    try:
        with warnings.catch_warnings():
            # Between max_pixels and 2x PIL only warns; our own bounds check refuses those.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of the file's bytes; md5 is what DVC records for it."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _inspect_pixels(path: Path, facts: ImageFacts, bounds: ImageBounds) -> ImageFacts:
    try:
        img = Image.open(path)  # lazy: parses the header only
    except Image.DecompressionBombError as exc:
        found = _BOMB_PIXELS.search(str(exc))
        if found:  # reported by the pixel-count check, like any other oversized image
            return replace(facts, pixels=int(found.group(1)))
        return replace(facts, decodes=f"refused before decoding ({_reason(exc, path)})")
    except Exception as exc:  # hostile bytes can make any PIL plugin raise anything
        return replace(facts, decodes=f"not an image PIL can read ({_reason(exc, path)})")
    with img:
        width, height = img.size
        facts = replace(facts, width=width, height=height, pixels=width * height)
        if not _within(width, height, bounds):
            return facts  # never decode an image whose declared size is out of bounds
        try:
            img.load()
        except Exception as exc:
            return replace(facts, decodes=f"truncated or corrupt ({_reason(exc, path)})")
        facts = replace(facts, decodes=OK)
        try:
            rgb = img.convert("RGB")
        except Exception as exc:
            return replace(facts, rgb=f"mode {img.mode!r} ({_reason(exc, path)})")
    return replace(facts, rgb=OK, phash=perceptual_hash(rgb))


def perceptual_hash(img: Image.Image) -> str:
    """The image's 64-bit pHash as 16 hex digits (`imagehash`, imported on first use)."""
    import imagehash

    return str(imagehash.phash(img))


def _within(width: int, height: int, bounds: ImageBounds) -> bool:
    sides_ok = all(bounds.min_side <= side <= bounds.max_side for side in (width, height))
    return sides_ok and width * height <= bounds.max_pixels


def _reason(exc: Exception, path: Path) -> str:
    message = str(exc).replace(f" {str(path)!r}", "").strip()  # the row already names the file
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
