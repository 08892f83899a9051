"""Where an import reads from: a local folder (or one file) or an S3 prefix, and nothing else.

Containment, as for domain folders (`flows.validation.containment`): every path an import
reads is a path below SOURCE, named either by the listing or by an annotation. A name is
judged on the string first (absolute paths, `..` that leave SOURCE, NUL characters are
refused and never opened), then, locally, no part of it below SOURCE may be a symbolic
link (lstat only; a link is refused by name wherever it points) and it must be a regular
file (a FIFO would block whoever opens it). SOURCE itself may be a link: the user named it.
On S3 only keys under `s3://bucket/prefix/` are listed or fetched.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path, PureWindowsPath
from typing import BinaryIO

from mpt_core.errors import MptError

from ..validation.containment import link_on_the_way


class ImportFailed(MptError):
    """An import that cannot go on; the message names the file, the record and the fix.
    Nothing is left written when it is raised."""


def safe_join(base: str, name: str, where: str) -> str:
    """`name` (as an annotation writes it, relative to the folder `base` of SOURCE) as a
    path relative to SOURCE; ImportFailed naming `where` when it would leave SOURCE."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "is empty"
    elif "\x00" in name:
        problem = "contains a NUL character"
    elif name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        problem = "is absolute"
    joined = posixpath.normpath(posixpath.join(base, name)) if problem is None else ""
    if problem is None and (joined in (".", "..") or joined.startswith("../")):
        problem = "leaves the source folder ('..')"
    if problem:
        raise ImportFailed(
            f"{where}: the image path {name!r} {problem}; refused, nothing was read or "
            "written. Paths in annotations are relative to the source's image folder and "
            "stay inside it: fix the annotation"
        )
    return joined


class Source(ABC):
    """A tree of files below one root, read only through these methods."""

    text: str
    """SOURCE as the user wrote it."""
    name: str
    """SOURCE for the import log and provenance: an absolute path or the s3:// URL."""

    @abstractmethod
    def files(self) -> list[str]:
        """Every regular file below the root, as sorted paths relative to it."""

    @abstractmethod
    def read(self, rel: str) -> bytes:
        """The bytes of file `rel` (a path `files` lists or `safe_join` made)."""

    def open(self, rel: str) -> BinaryIO:
        """File `rel` as a binary file object (seekable)."""
        return io.BytesIO(self.read(rel))

    def local_path(self, rel: str) -> Path | None:
        """The local file of `rel`, checked as `read` checks it, to hard-link; None when
        the source is not on this file system."""
        return None

    def describe(self, rel: str) -> str:
        """File `rel` as a user finds it: a path or an s3:// URL."""
        return f"{self.text.rstrip('/')}/{rel}"

    @cached_property
    def listed(self) -> frozenset[str]:
        return frozenset(self.files())

    def exists(self, rel: str) -> bool:
        return rel in self.listed


class LocalSource(Source):
    """A folder, or one file (then nothing beside it can be read)."""

    def __init__(self, text: str) -> None:
        self.text = text
        given = Path(text).expanduser()
        self.name = str(given.absolute())
        if not given.exists():
            raise ImportFailed(f"{text}: no such file or folder; give the folder to import")
        resolved = given.resolve()
        self.only = None if resolved.is_dir() else resolved.name
        self.root = resolved if resolved.is_dir() else resolved.parent

    def describe(self, rel: str) -> str:
        return str(self.root / rel)

    def files(self) -> list[str]:
        if self.only is not None:
            self._checked(self.only)
            return [self.only]
        found, refused = [], []
        for top, dirs, names in os.walk(self.root, followlinks=False):
            dirs.sort()
            for name in sorted(dirs + names):
                path = Path(top) / name
                mode = os.lstat(path).st_mode
                rel = path.relative_to(self.root).as_posix()
                if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    refused.append(rel)
                elif stat.S_ISREG(mode):
                    found.append(rel)
        if refused:
            more = f", ... ({len(refused) - 5} more)" if len(refused) > 5 else ""
            raise ImportFailed(
                f"{self.root}: {len(refused)} symbolic link(s) or special file(s): "
                f"{', '.join(refused[:5])}{more}; "
                "links are refused wherever they point and never followed: copy the real "
                "files into the source folder, or import the folder they point to"
            )
        return sorted(found)

    def _checked(self, rel: str) -> Path:
        if self.only is not None and rel != self.only:
            raise ImportFailed(
                f"{self.root / rel}: outside SOURCE {self.text} (a single file); refused. "
                "Import the folder holding both instead"
            )
        path = self.root / rel
        link = link_on_the_way(path, self.root)
        if link is not None:
            raise ImportFailed(
                f"{path}: {link} is a symbolic link; refused, never followed: put the real "
                "file into the source folder"
            )
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise ImportFailed(f"{path}: no such file") from None
        if not stat.S_ISREG(mode):
            raise ImportFailed(f"{path}: not a regular file (a folder, FIFO or device); refused")
        return path

    def open(self, rel: str) -> BinaryIO:
        path = self._checked(rel)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(fd, "rb")

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()

    def local_path(self, rel: str) -> Path | None:
        return self._checked(rel)


class S3Source(Source):
    """Every key under `s3://bucket/prefix/`, through the platform's S3 client factory."""

    def __init__(self, text: str, endpoint_url: str | None) -> None:
        from registry.s3 import s3_client

        from ..versioning import DEFAULT_S3_REGION

        self.text = self.name = text
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        if not bucket:
            raise ImportFailed(f"{text}: no bucket; write s3://bucket/prefix")
        self.bucket, self.endpoint_url = bucket, endpoint_url
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = s3_client(endpoint_url, DEFAULT_S3_REGION if endpoint_url else None)

    def _where(self) -> str:
        return self.text + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def files(self) -> list[str]:
        found = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    rel = item["Key"][len(self.prefix) :]
                    if rel and not rel.endswith("/"):
                        found.append(rel)
        except Exception as exc:  # botocore: credentials, endpoint, bucket
            raise ImportFailed(
                f"cannot list {self._where()}: {type(exc).__name__}: {exc}. Check the bucket, "
                "--s3-endpoint (default $MPT_DVC_S3_ENDPOINT) and AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY"
            ) from None
        unsafe = [r for r in found if posixpath.normpath(r) != r or r.startswith("/")]
        if unsafe:
            raise ImportFailed(
                f"{self._where()}: key(s) {unsafe[:5]} hold '..', '//' or '.' parts; refused: "
                "rename them"
            )
        return sorted(found)

    def read(self, rel: str) -> bytes:
        if posixpath.normpath(rel) != rel or rel.startswith(("/", "../")) or rel == "..":
            raise ImportFailed(f"{self.describe(rel)}: not a key under {self.text}; refused")
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + rel)["Body"].read()
        except Exception as exc:
            raise ImportFailed(
                f"cannot read {self.describe(rel)}: {type(exc).__name__}: {exc}"
            ) from None


def open_source(text: str, endpoint_url: str | None = None) -> Source:
    """The source SOURCE names: `s3://bucket/prefix` or a local folder or file."""
    if text.startswith("s3://"):
        return S3Source(text, endpoint_url)
    return LocalSource(text)
