"""Preflight: the services a retrain needs, checked in seconds before any work.

Registry database reachable and migrated, artifact store writable, DVC remote reachable and
writable. Each problem comes back as one line with the fix; nothing is left behind (the
probes write a tiny object and delete it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from registry import RegistrySettings

from .settings import PlatformSettings

PROBE = b"mpt-platform preflight probe\n"
TIMEOUT_S = 5


def check_database(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    from registry.migrate import current_revision, head_revision

    shown = make_url(url).render_as_string(hide_password=True)
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            folder = Path(database).expanduser().resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tempfile.TemporaryFile(dir=folder).close()
            except OSError as exc:
                return f"registry database {shown}: its folder is not writable ({exc.strerror})"
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

    try:
        store = open_store(url, endpoint_url)
        store.put(PROBE)
        store.delete(sha256_of(PROBE))
    except Exception as exc:
        return f"artifact store {url} is not writable: {exc}"
    return None


def check_dvc_remote(url: str, endpoint_url: str | None, repo_root: Path | None) -> str | None:
    if not url.startswith("s3://"):
        folder = Path(url).expanduser()
        if not folder.is_absolute() and repo_root is not None:
            folder = repo_root / folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            return f"DVC remote {folder} is not writable ({exc.strerror}); set MPT_DVC_REMOTE"
        return None
    import boto3
    from botocore.config import Config

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    key = "/".join(p for p in (prefix.strip("/"), f".mpt-preflight-{os.getpid()}") if p)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1" if endpoint_url else None,
        config=Config(
            connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 1}
        ),
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
