"""Code version for lineage: the installed package version and, when available, git HEAD."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def package_version() -> str:
    try:
        return version("mpt-platform")
    except PackageNotFoundError:
        return "unknown"


def git_commit(where: Path | None = None) -> str | None:
    """HEAD of the git checkout holding `where` (default: this package), if any."""
    where = where or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if len(commit) == 40 else None


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config (key order and spacing do not matter)."""
    return hashlib.sha256(
        json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
