"""A domain's import log, `domains/<name>/imports.json`: one entry per `mpt domain import`
(the first import and every append), committed with domain.yaml.

Each entry ends with the md5 of the metadata table the import wrote. When `mpt run`
records a data version whose validated table has that md5, the version's lineage gets the
entry's row count and origin (`flows.pipeline.prepare`): "+12 rows (append 2: imagefolder
/data/week-32)". A table edited by hand afterwards matches no entry and records none.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .source import ImportFailed

LOG_FILE = "imports.json"


def read_log(root: Path) -> list[dict[str, Any]]:
    """The entries of the domain folder `root` ([] when it has no import log)."""
    path = root / LOG_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path}: not a readable import log ({exc}); restore it from git"
        ) from None
    return entries if isinstance(entries, list) else []


def write_log(root: Path, entries: list[dict[str, Any]]) -> None:
    """Replace the log atomically (a temp file renamed over it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{LOG_FILE}-", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, root / LOG_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def entry_for(root: Path, metadata_md5: str) -> dict[str, Any] | None:
    """The import that wrote the metadata table with this md5, if one did."""
    try:
        entries = read_log(root)
    except ImportFailed:
        return None
    return next((e for e in reversed(entries) if e.get("metadata_md5") == metadata_md5), None)


def origin(entry: dict[str, Any]) -> str:
    """An entry in words, for the lineage: `append 2: imagefolder /data/week-32`."""
    what = f"{entry.get('mode', 'import')} {entry.get('number')}"
    return f"{what}: {entry.get('format')} {entry.get('source')}"
