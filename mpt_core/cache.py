"""Where mpt_core keeps what it derives once and reuses: backbone hashes, the shipped bridge.

`MPT_CACHE_DIR` if set, else `$MPT_HOME/cache`, else `~/.cache/mpt-platform`. Everything
in it is derived from files elsewhere and may be deleted at any time.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    explicit = os.environ.get("MPT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("MPT_HOME")
    if home:
        return Path(home).expanduser() / "cache"
    return Path.home() / ".cache" / "mpt-platform"


def read_json(name: str) -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a temp file in the same folder, then
    os.replace. The temp file is removed whatever happens; OSError propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def update_json(name: str, key: str, value: Any) -> None:
    """Set one key of a JSON cache file, written atomically (a lost race loses one entry).
    OSError (an unwritable cache) propagates: callers that can do without decide."""
    data = read_json(name)
    data[key] = value
    atomic_write(cache_dir() / name, json.dumps(data, indent=1, sort_keys=True).encode())


def file_stamp(paths: list[Path]) -> list[list[Any]]:
    """(path, size, mtime_ns) of each file: what a cached value derived from them is keyed by."""
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out
