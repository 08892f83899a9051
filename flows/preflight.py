"""Preflight: the services a retrain needs, checked in seconds before any work.

Registry database reachable and migrated, artifact store writable, DVC remote reachable and
writable. Each problem comes back as one line with the fix. Local folders are checked
without creating anything; S3 probes write a tiny object and delete it.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry import RegistrySettings

from .settings import PlatformSettings

PROBE = b"mpt-platform preflight probe\n"
TIMEOUT_S = 5
PROBE_ATTEMPTS = 2
"""The DVC remote's probe: one retry, so a server that is down fails the check in seconds."""


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (or the folders to be made above it), or
    None; nothing is created to find out."""
    existing = folder.expanduser().resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def check_database(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    from registry.migrate import current_revision, head_revision

    shown = make_url(url).render_as_string(hide_password=True)
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            problem = _unwritable(Path(database).parent)
            if problem:
                return f"registry database {shown}: {problem}; set MPT_HOME or MPT_DATABASE_URL"
        return None  # the embedded SQLite registry migrates itself when opened
    try:
        revision = current_revision(url)
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return (
            f"registry database {shown} is not reachable: {reason}. Fix: start it, or set "
            "MPT_DATABASE_URL to a reachable database"
        )
    head = head_revision()
    if revision != head:
        return (
            f"registry database {shown} is at schema {revision or '(empty)'}, not {head}. "
            "Fix: run `mpt registry upgrade`"
        )
    return None


def check_store(url: str, endpoint_url: str | None) -> str | None:
    from registry.store import open_store, sha256_of

    if not url.startswith("s3://"):
        problem = _unwritable(Path(url))
        return f"artifact store {url}: {problem}; set MPT_ARTIFACT_STORE" if problem else None
    try:
        store = open_store(url, endpoint_url)
        store.put(PROBE)
        store.delete(sha256_of(PROBE))
    except Exception as exc:
        return f"artifact store {url} is not writable: {exc}"
    return None


def check_dvc_remote(url: str, endpoint_url: str | None, repo_root: Path | None) -> str | None:
    from .versioning import DEFAULT_S3_REGION, RemoteSpec

    if not url.startswith("s3://"):
        folder = RemoteSpec(url).local_path(repo_root) if repo_root else Path(url).expanduser()
        problem = _unwritable(folder)
        return f"DVC remote {folder}: {problem}; set MPT_DVC_REMOTE" if problem else None
    from registry.s3 import s3_client

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    key = "/".join(p for p in (prefix.strip("/"), f".mpt-preflight-{os.getpid()}") if p)
    client = s3_client(
        endpoint_url,
        DEFAULT_S3_REGION if endpoint_url else None,
        read_timeout_s=TIMEOUT_S,
        attempts=PROBE_ATTEMPTS,
    )
    try:
        client.put_object(Bucket=bucket, Key=key, Body=PROBE)
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        where = f" at {endpoint_url}" if endpoint_url else ""
        return (
            f"DVC remote {url}{where} is not reachable or not writable: {exc}. Fix: start the "
            "S3 server, check MPT_DVC_REMOTE / MPT_DVC_S3_ENDPOINT and the AWS_* credentials"
        )
    return None


def check_services(
    settings: PlatformSettings,
    registry_settings: RegistrySettings | None = None,
    repo_root: Path | None = None,
) -> list[str]:
    """Every problem found with the services `mpt run` uses; [] when all are ready."""
    reg = registry_settings or RegistrySettings()
    checks = (
        check_database(reg.database),
        check_store(reg.store_url, reg.artifact_s3_endpoint),
        check_dvc_remote(settings.dvc_remote_url, settings.dvc_s3_endpoint, repo_root),
    )
    return [c for c in checks if c]
