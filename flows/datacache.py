"""A worker's own copy of a data version, read from the DVC remote by md5.

A tuning worker (on any node) gets a domain's data version as an md5, not as image bytes:
it reads DVC's `.dir` listing and the files it names straight from the remote (a local
directory or S3; DVC 3 layout `files/md5/<2>/<30>[.dir]`), verifies every object against
its md5, and keeps them in a per-node, content-addressed cache. A version is materialised
once per node as a folder of hard links (or copies) to cached objects, so the driver never
holds an image and a second domain or run sharing files fetches nothing again.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mpt_core.errors import MptError

from .locking import flocked

if TYPE_CHECKING:
    from .settings import PlatformSettings

READY = ".complete"
_LOCK = threading.Lock()


class DataCacheError(MptError):
    """A data version could not be read from the remote or fails its md5."""


@dataclass(frozen=True)
class RemoteLocation:
    """Where a worker reads DVC objects: an absolute local directory or s3://bucket/prefix
    (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY on the worker)."""

    url: str
    endpoint_url: str | None = None

    def describe(self) -> str:
        return self.url + (f" at {self.endpoint_url}" if self.endpoint_url else "")


def remote_location(settings: PlatformSettings, repo_root: Path) -> RemoteLocation:
    """Where workers read data versions: the DVC remote, a local path made absolute."""
    from .versioning import RemoteSpec

    url = settings.dvc_remote_url
    if not url.startswith("s3://"):
        url = str(RemoteSpec(url).local_path(repo_root))
    return RemoteLocation(url, settings.dvc_s3_endpoint)


def _object_key(md5: str, is_dir: bool = False) -> str:
    return f"files/md5/{md5[:2]}/{md5[2:]}" + (".dir" if is_dir else "")


class _Reader:
    def __init__(self, location: RemoteLocation) -> None:
        self.location = location
        self._s3 = None
        if location.url.startswith("s3://"):
            from registry.s3 import s3_client

            from .versioning import DEFAULT_S3_REGION

            endpoint = location.endpoint_url
            self._s3 = s3_client(endpoint, DEFAULT_S3_REGION if endpoint else None)
            bucket, _, prefix = location.url.removeprefix("s3://").partition("/")
            self._bucket, self._prefix = bucket, prefix.strip("/")

    def get(self, key: str) -> bytes:
        try:
            if self._s3 is None:
                return (Path(self.location.url) / key).read_bytes()
            full = f"{self._prefix}/{key}" if self._prefix else key
            return self._s3.get_object(Bucket=self._bucket, Key=full)["Body"].read()
        except Exception as exc:  # OSError, botocore errors: all mean "not readable there"
            raise DataCacheError(
                f"cannot read {key} from the DVC remote {self.location.describe()}: "
                f"{type(exc).__name__}: {exc}. HINT: was the data version pushed "
                "(`mpt domain version NAME --push`), and can this node reach the remote?"
            ) from None


def _md5(blob: bytes) -> str:
    return hashlib.md5(blob, usedforsecurity=False).hexdigest()


def _verified(blob: bytes, md5: str, what: str) -> bytes:
    if _md5(blob) != md5:
        raise DataCacheError(f"{what} read from the DVC remote does not match its md5 {md5}")
    return blob


def _safe_relpath(relpath: str, md5: str) -> str:
    normal = posixpath.normpath(relpath)
    if normal.startswith(("../", "/")) or normal in (".", "..") or "\x00" in normal:
        raise DataCacheError(f"data version {md5} lists an unsafe path {relpath!r}; refused")
    return normal


class DataCache:
    """Per-node cache of DVC objects and materialised data versions under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _object_path(self, md5: str) -> Path:
        return self.root / "objects" / md5[:2] / md5[2:]

    def materialise(self, location: RemoteLocation, md5: str) -> Path:
        """A folder holding exactly data version `md5` (fetched once per node)."""
        target = self.root / "versions" / md5
        if (target / READY).exists():
            return target
        with _LOCK, flocked(self.root / ".lock"):
            if (target / READY).exists():
                return target
            reader = _Reader(location)
            listing = json.loads(_verified(reader.get(_object_key(md5, True)), md5, "listing"))
            tmp = Path(tempfile.mkdtemp(prefix=f".{md5}-", dir=self.root))
            try:
                for entry in listing:
                    rel = _safe_relpath(entry["relpath"], md5)
                    obj = self._fetch(reader, entry["md5"], rel)
                    dest = tmp / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(obj, dest)
                    except OSError:
                        shutil.copyfile(obj, dest)
                (tmp / READY).write_text(f"{len(listing)}\n")
                shutil.rmtree(target, ignore_errors=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _fetch(self, reader: _Reader, md5: str, relpath: str) -> Path:
        path = self._object_path(md5)
        if path.exists():
            return path
        blob = _verified(reader.get(_object_key(md5)), md5, relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
        return path
