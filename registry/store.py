"""Content-addressed artifact store for prompt artifacts: a local directory or S3.

A prompt artifact is a directory (`prompts.safetensors`, `prompt_config.json`, ...). The
store keeps it as one blob, a deterministic tar made by `pack_dir`, so the sha256 of the
blob is the artifact's identity. Blobs live under `<store>/sha256/<first 2 hex>/<sha256>`;
every read is verified against the sha256 it was asked for.

    store = open_store("~/.mpt/artifacts")              # or "s3://bucket/prefix"
    stored = store.put_dir("out/retail")                 # StoredArtifact(sha256, size, uri)
    store.get_dir(stored.sha256, "cache/retail-v3", label="retail v3")
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from .errors import ArtifactCorruptedError, ArtifactNotFoundError, StoreError
from .s3 import s3_client

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FANOUT_NAME = re.compile(r"([0-9a-f]{2})/([0-9a-f]{64})")
_FANOUT = "sha256"
_TMP_PREFIX = ".tmp-"
_TAR_FORMAT = tarfile.PAX_FORMAT
_FILE_MODE = 0o644


@dataclass(frozen=True)
class StoredArtifact:
    """Where a blob landed: its sha256 (the identity), size in bytes and URI."""

    sha256: str
    size: int
    uri: str


# ---------------------------------------------------------------- messages and checks


def sha256_of(blob: bytes) -> str:
    """Hex sha256 of `blob`."""
    return hashlib.sha256(blob).hexdigest()


def _describe(sha256: str, label: str | None) -> str:
    return f"artifact {label!r} (sha256 {sha256})" if label else f"artifact sha256 {sha256}"


def check_sha256(sha256: str) -> str:
    """Return `sha256` lower-cased if it is 64 hex digits, else raise StoreError."""
    normal = sha256.lower() if isinstance(sha256, str) else ""
    if not _SHA256.fullmatch(normal):
        raise StoreError(
            f"{sha256!r} is not a sha256: expected 64 hex digits, as in "
            "StoredArtifact.sha256 or the registry's artifact_sha256"
        )
    return normal


def _verified(blob: bytes, sha256: str, label: str | None, uri: str) -> bytes:
    actual = sha256_of(blob)
    if actual != sha256:
        raise ArtifactCorruptedError(
            f"{_describe(sha256, label)} at {uri} is corrupted: its {len(blob)} bytes hash to "
            f"{actual}. Do not use it. Fix: put the original artifact again (put/put_dir "
            "replaces a corrupted blob) or restore the blob from a backup"
        )
    return blob


def _not_found(sha256: str, label: str | None, url: str, uri: str) -> ArtifactNotFoundError:
    return ArtifactNotFoundError(
        f"{_describe(sha256, label)} is not in the artifact store {url} (looked for {uri}). "
        "Fix: check that the store URL is the one the artifact was registered in; if the "
        "blob was deleted (e.g. by gc), put the artifact's directory again"
    )


# ---------------------------------------------------------------- pack / unpack


def _artifact_files(directory: Path) -> list[tuple[str, Path]]:
    """(posix name relative to `directory`, path) of every file, sorted; links refused."""
    if not directory.is_dir():
        raise StoreError(
            f"cannot pack {directory}: not a directory. Pass the folder that "
            "save_prompts wrote (prompts.safetensors + prompt_config.json)"
        )
    files = []
    for path in directory.rglob("*"):
        name = path.relative_to(directory).as_posix()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise StoreError(
                f"cannot pack {directory}: {name} is a link or special file; an artifact "
                "holds regular files only. Copy the real file into the folder instead"
            )
        if path.is_file():
            files.append((name, path))
    if not files:
        raise StoreError(f"cannot pack {directory}: it holds no files; save the prompts first")
    return sorted(files)


def _tar_member(name: str, size: int) -> tarfile.TarInfo:
    # Fixed metadata so identical file contents give identical bytes anywhere, any time.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = _FILE_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_dir(directory: str | os.PathLike[str]) -> bytes:
    """Pack the files of `directory` (recursively) into a deterministic, uncompressed tar.

    Names sorted, mtime 0, uid/gid 0, mode 0644, regular files only (empty folders are
    not kept): the same files give the same bytes, hence the same sha256.
    """
    return pack_files({name: path.read_bytes() for name, path in _artifact_files(Path(directory))})


def pack_files(files: dict[str, bytes]) -> bytes:
    """`pack_dir` for files in memory ({posix name: bytes}): the same bytes for the same
    files, so an artifact packed from memory or from its directory has one sha256."""
    if not files:
        raise StoreError("cannot pack an artifact with no files; save the prompts first")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=_TAR_FORMAT) as tar:
        for name in sorted(files):
            if name.startswith("/") or ".." in name.split("/"):
                raise StoreError(f"cannot pack {name!r}: names are relative, without '..'")
            tar.addfile(_tar_member(name, len(files[name])), io.BytesIO(files[name]))
    return buffer.getvalue()


def unpack_files(blob: bytes, label: str | None = None) -> dict[str, bytes]:
    """The {name: bytes} of a packed blob, checked like `unpack` (no links, no escapes)."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        members = _safe_members(tar, sha256_of(blob), label)
        out = {}
        for member in members:
            if member.isfile():
                handle = tar.extractfile(member)
                out[member.name] = handle.read() if handle is not None else b""
        return out


def _unsafe_reason(member: tarfile.TarInfo, seen: set[str]) -> str | None:
    """Why `member` may not be extracted, or None when it is a plain file inside the target."""
    parts = member.name.split("/")
    if not member.isreg():
        return "is not a regular file (links, folders and devices are refused)"
    if member.name.startswith("/"):
        return "has an absolute path"
    if ".." in parts:
        return "escapes the target folder ('..')"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' path component"
    if member.name in seen:
        return "appears twice"
    return None


def _safe_members(tar: tarfile.TarFile, sha256: str, label: str | None) -> list[tarfile.TarInfo]:
    members, seen = [], set()
    for member in tar.getmembers():
        reason = _unsafe_reason(member, seen)
        if reason:
            raise ArtifactCorruptedError(
                f"{_describe(sha256, label)} is not a safe artifact: tar member "
                f"{member.name!r} {reason}; nothing was extracted. Fix: only unpack blobs "
                "made by pack_dir; re-register the artifact from its directory"
            )
        seen.add(member.name)
        members.append(member)
    return members


def _prepare_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StoreError(
            f"cannot unpack into {target}: it exists and is not an empty folder. "
            "Choose a new folder or remove it first (files of two artifacts must not mix)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], target: Path) -> None:
    """Write checked members to a temporary sibling of `target`, then rename it into place."""
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
    try:
        for member in members:
            path = staging.joinpath(*member.name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        with contextlib.suppress(FileNotFoundError):
            target.rmdir()  # empty (checked before); the rename needs it gone
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def unpack(blob: bytes, target_dir: str | os.PathLike[str], label: str | None = None) -> Path:
    """Extract a `pack_dir` blob into `target_dir` (missing or empty); return its path.

    Every member is checked before anything is written: regular files only, relative
    paths without `..`. Files go to a temporary sibling folder that is renamed into
    place, so `target_dir` never holds half an artifact.
    """
    target = Path(target_dir)
    sha256 = sha256_of(blob)
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
            members = _safe_members(tar, sha256, label)
            _prepare_target(target)
            _extract(tar, members, target)
    except tarfile.TarError as exc:
        raise ArtifactCorruptedError(
            f"{_describe(sha256, label)} is not a readable tar archive ({exc}). Fix: only "
            "unpack blobs made by pack_dir; re-register the artifact from its directory"
        ) from exc
    return target


# ---------------------------------------------------------------- the store interface


class ArtifactStore(ABC):
    """A content-addressed blob store. Blobs are named by their sha256 and never change."""

    url: str

    def uri(self, sha256: str) -> str:
        """Where the blob with this sha256 lives (or would live) in this store."""
        sha256 = check_sha256(sha256)
        return f"{self.url}/{_FANOUT}/{sha256[:2]}/{sha256}"

    @abstractmethod
    def put(self, blob: bytes) -> StoredArtifact:
        """Store `blob` under its sha256, atomically; a blob already stored is not rewritten."""

    @abstractmethod
    def get(self, sha256: str, label: str | None = None) -> bytes:
        """The blob's bytes, verified against `sha256`.

        `label` (e.g. "retail v3") only makes error messages name the artifact.
        Raises ArtifactNotFoundError, ArtifactCorruptedError or StoreError.
        """

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether a blob with this sha256 is stored (its content is not verified)."""

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob; deleting a blob that is not there does nothing."""

    @abstractmethod
    def list(self) -> Iterator[str]:
        """Every sha256 stored, in no particular order (for garbage collection)."""

    def put_dir(self, directory: str | os.PathLike[str]) -> StoredArtifact:
        """`put(pack_dir(directory))`."""
        return self.put(pack_dir(directory))

    def get_dir(
        self, sha256: str, target_dir: str | os.PathLike[str], label: str | None = None
    ) -> Path:
        """Verified `get`, then `unpack` into `target_dir` (missing or empty); its path."""
        return unpack(self.get(sha256, label), target_dir, label=label)

    def get_files(self, sha256: str, label: str | None = None) -> dict[str, bytes]:
        """Verified `get`, unpacked in memory: {file name: bytes}."""
        return unpack_files(self.get(sha256, label), label=label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# ---------------------------------------------------------------- local directory


class LocalStore(ArtifactStore):
    """Blobs as files under `root/sha256/ab/abcdef...`, written by temp file + rename."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()

    def path(self, sha256: str) -> Path:
        """The file that holds (or would hold) the blob."""
        sha256 = check_sha256(sha256)
        return self.root / _FANOUT / sha256[:2] / sha256

    def _io_error(self, action: str, what: str, exc: OSError) -> StoreError:
        return StoreError(
            f"cannot {action} {what} in the artifact store {self.url}: {exc}. Fix: check "
            f"that {self.root} is writable and the disk has space"
        )

    def _holds(self, path: Path, sha256: str) -> bool:
        try:
            return sha256_of(path.read_bytes()) == sha256
        except FileNotFoundError:
            return False

    def put(self, blob: bytes) -> StoredArtifact:
        sha256 = sha256_of(blob)
        path = self.path(sha256)
        stored = StoredArtifact(sha256, len(blob), self.uri(sha256))
        try:
            if not self._holds(path, sha256):  # absent or corrupted: (re)write it
                _write_atomic(path, blob)
        except OSError as exc:
            raise self._io_error("write", _describe(sha256, None), exc) from exc
        return stored

    def get(self, sha256: str, label: str | None = None) -> bytes:
        path = self.path(sha256)
        sha256 = path.name
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise _not_found(sha256, label, self.url, self.uri(sha256)) from None
        except OSError as exc:
            raise self._io_error("read", _describe(sha256, label), exc) from exc
        return _verified(blob, sha256, label, self.uri(sha256))

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        path = self.path(sha256)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._io_error("delete", _describe(path.name, None), exc) from exc
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only succeeds once the fan-out folder is empty

    def list(self) -> Iterator[str]:
        for path in self.root.glob(f"{_FANOUT}/??/*"):
            if _SHA256.fullmatch(path.name) and path.parent.name == path.name[:2]:
                yield path.name


def _write_atomic(path: Path, blob: bytes) -> None:
    """Write `blob` to `path` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- S3


_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_S3_HINTS = {
    "NoSuchBucket": "create the bucket or fix the bucket name in the store URL",
    "InvalidAccessKeyId": "the server does not know this key: check AWS_ACCESS_KEY_ID "
    "(and AWS_SECRET_ACCESS_KEY) and that the endpoint is the right one",
    "SignatureDoesNotMatch": "the secret does not match the key: check AWS_SECRET_ACCESS_KEY "
    "(and AWS_ACCESS_KEY_ID)",
}
_S3_DEFAULT_HINT = (
    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, that the endpoint is the right one "
    "and reachable, and that the bucket exists"
)


def _s3_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ArtifactStore):
    """Blobs as objects `prefix/sha256/ab/abcdef...` in one bucket, each written by one PutObject.

    Credentials come from boto3's usual sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    ...); `endpoint_url` selects an S3-compatible server (SeaweedFS, MinIO, ...).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: BaseClient | None = None,
    ) -> None:
        if not bucket:
            raise StoreError("S3Store needs a bucket name, as in s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or s3_client(endpoint_url, region)

    def key(self, sha256: str) -> str:
        """The object key that holds (or would hold) the blob."""
        sha256 = check_sha256(sha256)
        return "/".join(p for p in (self.prefix, _FANOUT, sha256[:2], sha256) if p)

    @contextlib.contextmanager
    def _s3_errors(self, action: str, what: str) -> Iterator[None]:
        """Turn botocore errors into a StoreError naming the store, endpoint and a fix."""
        try:
            yield
        except ClientError as exc:
            code = _s3_code(exc)
            raise self._error(action, what, exc, _S3_HINTS.get(code, _S3_DEFAULT_HINT)) from exc
        except BotoCoreError as exc:
            raise self._error(action, what, exc, _S3_DEFAULT_HINT) from exc

    def _error(self, action: str, what: str, exc: Exception, hint: str) -> StoreError:
        endpoint = self.endpoint_url or "AWS default endpoint"
        return StoreError(
            f"cannot {action} {what} in the artifact store {self.url} (endpoint {endpoint}): "
            f"{exc}. Fix: {hint}"
        )

    def _stored_md5(self, key: str) -> str | None:
        """The object's ETag without quotes (the MD5 of a single-part upload), None if absent."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _s3_code(exc) in _MISSING_CODES:
                return None
            raise
        return str(head.get("ETag", "")).strip('"')

    def put(self, blob: bytes) -> StoredArtifact:
        sha256 = sha256_of(blob)
        key = self.key(sha256)
        with self._s3_errors("write", _describe(sha256, None)):
            # Same ETag = same bytes: skip. Absent, corrupted or multipart-tagged: one PutObject.
            if self._stored_md5(key) != hashlib.md5(blob).hexdigest():
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=blob,
                    ContentType="application/x-tar",
                    Metadata={"sha256": sha256},
                )
        return StoredArtifact(sha256, len(blob), self.uri(sha256))

    def get(self, sha256: str, label: str | None = None) -> bytes:
        key = self.key(sha256)
        sha256 = sha256.lower()
        with self._s3_errors("read", _describe(sha256, label)):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _s3_code(exc) in _MISSING_CODES:
                    raise _not_found(sha256, label, self.url, self.uri(sha256)) from None
                raise
            blob = response["Body"].read()
        return _verified(blob, sha256, label, self.uri(sha256))

    def exists(self, sha256: str) -> bool:
        key = self.key(sha256)
        with self._s3_errors("look up", _describe(sha256.lower(), None)):
            return self._stored_md5(key) is not None

    def delete(self, sha256: str) -> None:
        key = self.key(sha256)
        with self._s3_errors("delete", _describe(sha256.lower(), None)):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list(self) -> Iterator[str]:
        start = f"{self.prefix}/{_FANOUT}/" if self.prefix else f"{_FANOUT}/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        )
        with self._s3_errors("list", "artifacts"):
            for page in pages:
                for obj in page.get("Contents", []):
                    match = _FANOUT_NAME.fullmatch(obj["Key"][len(start) :])
                    if match and match[2].startswith(match[1]):
                        yield match[2]


# ---------------------------------------------------------------- open_store


_SUPPORTED_FORMS = (
    "a directory path (/srv/artifacts, ~/.mpt/artifacts), "
    "file:///abs/path, or s3://bucket[/prefix] (with endpoint_url for SeaweedFS/MinIO)"
)


def _open_local(url: str, endpoint_url: str | None) -> ArtifactStore:
    parts = urlsplit(url)
    if not parts.scheme:
        return LocalStore(url)
    if parts.netloc not in ("", "localhost"):
        raise StoreError(
            f"artifact store URL {url!r} names host {parts.netloc!r}; file:// URLs must be "
            "local (file:///abs/path). Supported: " + _SUPPORTED_FORMS
        )
    return LocalStore(unquote(parts.path))


def _open_s3(url: str, endpoint_url: str | None) -> ArtifactStore:
    parts = urlsplit(url)
    if not parts.netloc:
        raise StoreError(
            f"artifact store URL {url!r} has no bucket. Use s3://bucket[/prefix]; "
            "supported: " + _SUPPORTED_FORMS
        )
    return S3Store(parts.netloc, parts.path, endpoint_url=endpoint_url)


_OPENERS: dict[str, Callable[[str, str | None], ArtifactStore]] = {
    "": _open_local,
    "file": _open_local,
    "s3": _open_s3,
}


def open_store(url: str | os.PathLike[str], endpoint_url: str | None = None) -> ArtifactStore:
    """The store for `url`: a directory path or file:// URL (LocalStore), s3://bucket/prefix
    (S3Store; `endpoint_url` for S3-compatible servers). Anything else raises StoreError."""
    url = os.fspath(url)
    opener = _OPENERS.get(urlsplit(url).scheme.lower()) if url else None
    if opener is None:
        raise StoreError(f"unsupported artifact store URL {url!r}. Supported: {_SUPPORTED_FORMS}")
    return opener(url, endpoint_url)
