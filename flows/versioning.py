"""Version a domain's data directory with DVC: track, push, read and restore versions.

A data version is the md5 of DVC's `.dir` listing of `domains/<name>/data/` (content and
relative paths only). `DataVersion.dvc_file_text` keeps the `.dvc` text of a version so it
can be restored later from the remote without any git history.

Every DVC operation on one repository runs alone: a process-wide `threading.Lock` per repo
root plus an `fcntl.flock` on `.dvc/tmp/mpt-versioning.lock` (not DVC's own `lock`, which
DVC takes itself and gives up on after 3 s). Each operation opens a fresh `dvc.repo.Repo`
inside that lock and closes it: a `Repo` shared between threads is not protected by DVC's
lock, and one reused after its cache changed on disk can fail to fetch.

DVC keeps per-repository sqlite state in a "site cache" (`/var/tmp/dvc` by default, shared
by every user). Here it lives in `.dvc/tmp/site_cache/` of the repository (passed as
`core.site_cache_dir` config; an explicit `DVC_SITE_CACHE_DIR` in the environment still
wins, as in DVC itself).

S3 credentials are never written to `.dvc/config`: DVC reads `AWS_ACCESS_KEY_ID` and
`AWS_SECRET_ACCESS_KEY` from the environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import yaml

from mpt_core.errors import MptError

from .locking import flocked
from .yaml_files import safe_load, yaml_problem

if TYPE_CHECKING:
    from dvc.repo import Repo

__all__ = ["DataVersion", "DataVersioner", "RemoteSpec", "VersioningError", "find_repo_root"]

LOCK_FILE = "mpt-versioning.lock"
SITE_CACHE = "site_cache"
DEFAULT_S3_REGION = "us-east-1"
_MD5 = re.compile(r"^[0-9a-f]{32}$")

_REGISTRY_LOCK = threading.Lock()
_REPO_LOCKS: dict[Path, threading.Lock] = {}
_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_dvc_logs() -> Iterator[None]:
    """DVC logs "Initialized DVC repository..." to stdout; our callers report themselves."""
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class VersioningError(MptError):
    """A data directory could not be tracked, pushed or restored with DVC."""


def find_repo_root(path: Path) -> Path:
    """The git repository holding `path`: DVC keeps its metadata there."""
    for candidate in [path.resolve(), *path.resolve().parents]:
        if (candidate / ".git").exists():
            return candidate
    raise VersioningError(
        f"{path} is not inside a git repository; DVC versions data inside one (run `git init`)"
    )


@dataclass(frozen=True)
class DataVersion:
    """One version of a data directory, as recorded by its `.dvc` file."""

    md5: str
    """md5 of the `.dir` listing, 32 hex characters, without the `.dir` suffix."""
    path: Path
    """The data directory (absolute)."""
    files: int
    """Number of files in the directory."""
    size: int
    """Total size of those files in bytes."""
    dvc_file_text: str
    """Text of the `.dvc` file for this version; writing it back restores the version."""


@dataclass(frozen=True)
class RemoteSpec:
    """Where DVC pushes data: a local directory (absolute, or relative to the repository
    root) or `s3://bucket/prefix`. `name` is the remote's name in `.dvc/config`.

    `endpoint_url` points at an S3-compatible server (e.g. `http://127.0.0.1:8333`); with
    it and no `region`, `us-east-1` is used (such servers ignore it, and it spares a
    bucket-location lookup).
    """

    url: str
    endpoint_url: str | None = None
    name: str = "storage"
    region: str | None = None

    def __post_init__(self) -> None:
        if not self.url:
            raise VersioningError(
                "remote url is empty: give a local directory or s3://bucket/prefix"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise VersioningError(
                f"remote name {self.name!r}: use letters, digits, '_', '.' or '-'"
            )
        if self.is_s3:
            if not urlparse(self.url).netloc:
                raise VersioningError(
                    f"remote url {self.url!r} names no bucket: use s3://bucket/prefix"
                )
        elif "://" in self.url:
            raise VersioningError(
                f"remote url {self.url!r}: use a local directory or s3://bucket/prefix"
            )
        elif self.endpoint_url:
            raise VersioningError(
                f"endpoint_url {self.endpoint_url!r} given for the local remote {self.url!r}: "
                "an endpoint only applies to s3:// remotes"
            )

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def describe(self) -> str:
        """`'storage' (s3://b/p at http://...)`, for error messages."""
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"remote {self.name!r} ({self.url}{where})"

    def local_path(self, repo_root: Path) -> Path:
        """A local remote's directory, absolute (a relative one is under `repo_root`)."""
        return (repo_root / Path(self.url).expanduser()).resolve()

    def dvc_section(self, repo_root: Path) -> dict[str, str]:
        """The keys of this remote's `.dvc/config` section (never credentials).

        A relative local directory is taken relative to `repo_root`.
        """
        if not self.is_s3:
            return {"url": str(self.local_path(repo_root))}
        section = {"url": self.url}
        if self.endpoint_url:
            section["endpointurl"] = self.endpoint_url
        region = self.region or (DEFAULT_S3_REGION if self.endpoint_url else None)
        if region:
            section["region"] = region
        return section


class DataVersioner:
    """Track, push and restore data directories of one git + DVC repository.

    Safe to use from several threads and processes at once on the same repository.
    """

    def __init__(self, repo_root: Path | str, remote: RemoteSpec) -> None:
        self.root = Path(repo_root).expanduser().resolve()
        self.remote = remote
        self._ready = False

    # ---------------------------------------------------------------- public API

    def ensure_initialised(self) -> None:
        """`dvc init` if needed, analytics off, `remote` configured as the default.

        Idempotent; a changed url or endpoint of the remote is updated.
        """
        if not (self.root / ".git").exists():
            raise VersioningError(
                f"{self.root} is not a git repository (no .git there); DVC versioning "
                f"needs one at the repository root: run `git init {self.root}`, or pass "
                "the root of the existing repository"
            )
        with self._thread_lock(), flocked(self.root):  # no .dvc/tmp before `dvc init`
            if not (self.root / ".dvc").is_dir():
                self._dvc_init()
            with flocked(self._lock_path()), self._repo("configure DVC") as repo:
                self._configure(repo)
        self._ready = True

    def track(self, data_dir: Path | str) -> DataVersion:
        """`dvc add` the directory and return its version (unchanged data: same md5, fast).

        A directory holding symbolic links or special files is refused before DVC sees it
        (DVC would copy a link's target into its cache and replace the link)."""
        data = self._data_dir(data_dir, must_exist=True)
        self._refuse_links(data)
        self._ensure_ready()
        with self._locked():
            with self._repo(f"track {data}") as repo:
                repo.add(str(data))  # absolute: DVC resolves relative targets against the cwd
            version = self._read_version(data)
        if version is None:  # pragma: no cover - dvc add always writes the file
            raise VersioningError(f"dvc add wrote no {_dvc_file(data)}")
        return version

    def track_many(self, data_dirs: list[Path]) -> dict[Path, DataVersion | VersioningError]:
        """`track` for several directories with one `dvc add` (one repository lock, one
        index walk); when that fails, each directory alone, so that one directory's problem
        is its own. Returns directory -> its version or the error."""
        dirs = [self._data_dir(d, must_exist=True) for d in data_dirs]
        out: dict[Path, DataVersion | VersioningError] = {}
        for data in dirs:  # a refused directory is its own failure, never DVC's to see
            refused = self._attempt(self._refuse_links, data)
            if refused is not None:
                out[data] = refused
        batch = [d for d in dirs if d not in out]
        if len(batch) < 2:
            return out | {d: self._attempt(self.track, d) for d in batch}
        self._ensure_ready()
        try:
            with self._locked(), self._repo(f"track {len(batch)} data directories") as repo:
                repo.add([str(d) for d in batch])
        except VersioningError:
            return out | {d: self._attempt(self.track, d) for d in batch}
        return out | {d: self._read_version(d) for d in batch}

    def push(self, data_dir: Path | str) -> int:
        """Upload the objects of the directory's current version; returns how many were sent."""
        data = self._data_dir(data_dir)
        self._ensure_ready()
        with self._locked():
            self._require_tracked(data)
            with self._repo(f"push {data}", remote_op=True) as repo:
                return repo.push(targets=[str(_dvc_file(data))], remote=self.remote.name)

    def push_many(self, data_dirs: list[Path]) -> dict[Path, int | VersioningError]:
        """`push` for several directories with one `dvc push`; when that fails, each alone.
        Returns directory -> objects sent (for the batch: all on the first) or the error."""
        dirs = [self._data_dir(d) for d in data_dirs]
        if len(dirs) < 2:
            return {d: self._attempt(self.push, d) for d in dirs}
        self._ensure_ready()
        try:
            with self._locked():
                for data in dirs:
                    self._require_tracked(data)
                with self._repo(f"push {len(dirs)} data directories", remote_op=True) as repo:
                    sent = repo.push(
                        targets=[str(_dvc_file(d)) for d in dirs], remote=self.remote.name
                    )
        except VersioningError:
            return {d: self._attempt(self.push, d) for d in dirs}
        return {d: (sent if i == 0 else 0) for i, d in enumerate(dirs)}

    def current_versions(self, data_dirs: list[Path]) -> dict[Path, DataVersion | None]:
        """`current_version` of several directories with one `dvc status`."""
        dirs = [self._data_dir(d, must_exist=True) for d in data_dirs]
        tracked = [d for d in dirs if _dvc_file(d).exists()]
        out: dict[Path, DataVersion | None] = dict.fromkeys(dirs)
        if not tracked or not (self.root / ".dvc").is_dir():
            return out
        with self._locked():
            with self._repo(f"check {len(tracked)} data directories") as repo:
                changed = repo.status(targets=[str(_dvc_file(d)) for d in tracked])
            # DVC names a changed target by its path as given or relative to the cwd
            named = {(base / key).resolve() for key in changed for base in (self.root, Path.cwd())}
            for data in tracked:
                if _dvc_file(data).resolve() not in named:
                    out[data] = self._read_version(data)
        return out

    @staticmethod
    def _attempt(action, data: Path):
        try:
            return action(data)
        except VersioningError as exc:
            return exc

    def current_version(self, data_dir: Path | str) -> DataVersion | None:
        """The version the `.dvc` file records if the directory still holds exactly it
        (DVC's status, from its hash cache: fast, writes nothing to the cache); None if the
        directory is untracked or changed since."""
        data = self._data_dir(data_dir, must_exist=True)
        self._refuse_links(data)
        if not (self.root / ".dvc").is_dir() or not _dvc_file(data).exists():
            return None
        with self._locked():
            with self._repo(f"check {data}") as repo:
                changed = repo.status(targets=[str(_dvc_file(data))])
            return None if changed else self._read_version(data)

    def listing(self, md5: str) -> dict[str, str]:
        """{relative path: md5} of every file of a tracked version (from the local cache)."""
        md5 = _normalise_md5(md5)
        self._ensure_ready()
        with self._locked(), self._repo(f"read version {md5}") as repo:
            entries = _entries(repo, md5)
        if entries is None:
            raise VersioningError(f"data version {md5} is not in the local DVC cache")
        return {e["relpath"]: e["md5"] for e in entries}

    def version_of(self, data_dir: Path | str) -> DataVersion | None:
        """The version the directory's `.dvc` file records, or None if it is not tracked."""
        data = self._data_dir(data_dir)
        if not (self.root / ".dvc").is_dir():  # a read does not initialise DVC
            return self._read_version(data)
        with self._locked():
            return self._read_version(data)

    def materialise(self, data_dir: Path | str, version: DataVersion | str) -> DataVersion:
        """Make the workspace hold exactly `version` (a `DataVersion` or a bare md5).

        Fetches from the remote when the local cache lacks it. A version that neither holds
        raises `VersioningError` and leaves the workspace and its `.dvc` file untouched.
        Unsaved edits in the directory are overwritten, extra files are removed.
        """
        data = self._data_dir(data_dir)
        md5, text = self._target_text(data, version)
        self._ensure_ready()
        dvc_file = _dvc_file(data)
        with self._locked():
            previous = dvc_file.read_text() if dvc_file.exists() else None
            dvc_file.write_text(text)
            try:
                with self._repo(f"restore {data} to {md5}", remote_op=True) as repo:
                    files, size = self._fetch_and_checkout(repo, data, md5)
            except BaseException:
                _restore_file(dvc_file, previous)
                raise
            if isinstance(version, str):  # complete the minimal text as `dvc add` writes it
                dvc_file.write_text(_dvc_text(md5, data.name, files, size))
            result = self._read_version(data)
        assert result is not None
        return result

    # ---------------------------------------------------------------- DVC steps

    def _dvc_init(self) -> None:
        from dvc.repo import Repo

        # Repo.init opens a Repo of its own, so no config can be passed: the site cache
        # location goes through the environment, restored right after.
        site_cache = _env_var("DVC_SITE_CACHE_DIR", str(self._site_cache()))
        with self._errors("initialise DVC"), site_cache, _quiet_dvc_logs():
            Repo.init(str(self.root)).close()

    def _configure(self, repo: Repo) -> None:
        """Analytics off in the shared repo config; the remote (a machine's own choice) in
        `.dvc/config.local`, which git does not track, so running never dirties the repo."""
        shared, local = repo.config.load_one("repo"), repo.config.load_one("local")
        wanted = self.remote.dvc_section(self.root)
        section = local.get("remote", {}).get(self.remote.name, {})
        stale = [k for k in ("endpointurl", "region") if k in section and k not in wanted]
        if shared.get("core", {}).get("analytics") is not False:
            with repo.config.edit("repo") as conf:
                conf["core"]["analytics"] = False
        if (
            local.get("core", {}).get("remote") == self.remote.name
            and all(str(section.get(k)) == v for k, v in wanted.items())
            and not stale
        ):
            return
        with repo.config.edit("local") as conf:
            conf["core"]["remote"] = self.remote.name
            remote = conf["remote"].setdefault(self.remote.name, {})
            for key in stale:
                del remote[key]
            remote.update(wanted)

    def _fetch_and_checkout(self, repo: Repo, data: Path, md5: str) -> tuple[int, int]:
        """Fetch `md5` if the cache lacks it, verify it is complete, check it out.

        Returns (files, bytes). Checking the cache first matters: DVC's checkout of a
        version it cannot find deletes the workspace directory before failing.
        """
        dvc_file = str(_dvc_file(data))
        if _missing_from_cache(repo, md5):
            repo.fetch(targets=[dvc_file], remote=self.remote.name)
        missing = _missing_from_cache(repo, md5)
        if missing:
            raise VersioningError(
                f"data version {md5} of {data} is in neither the local cache nor "
                f"{self.remote.describe()} ({missing}); nothing was changed. Push it from "
                "a checkout that has it, or pick a version that was pushed"
            )
        repo.checkout(targets=[dvc_file], force=True)
        return _cache_stats(repo, md5)

    # ---------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _errors(self, what: str, *, remote_op: bool = False) -> Iterator[None]:
        """Turn DVC's exceptions (and OSError from remotes) into VersioningError."""
        from dvc.exceptions import DvcException
        from dvc.lock import LockError

        try:
            yield
        except VersioningError:
            raise
        except LockError as exc:
            raise VersioningError(
                f"could not {what}: another DVC process holds {self.root}/.dvc/tmp/lock; "
                "wait for it to finish, or delete that file if no DVC process is running"
            ) from exc
        except Exception as exc:
            # A transfer can fail with anything its filesystem raises (botocore's
            # EndpointConnectionError, aiohttp errors, a bare PermissionError for a 403);
            # elsewhere only DVC's own errors and OSError are expected.
            if not (remote_op or isinstance(exc, DvcException | OSError)):
                raise
            raise VersioningError(
                f"could not {what}: {_describe(exc)}{self._hint(remote_op)}"
            ) from exc

    def _hint(self, remote_op: bool) -> str:
        if not remote_op:
            return ""
        if self.remote.is_s3:
            return (
                f"; check that {self.remote.describe()} is reachable and that "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are set and valid"
            )
        return f"; check that {self.remote.describe()} exists and is writable"

    @contextlib.contextmanager
    def _repo(self, what: str, *, remote_op: bool = False) -> Iterator[Repo]:
        """A fresh Repo for one operation (call with the lock held), errors translated."""
        from dvc.repo import Repo

        config = {"core": {"site_cache_dir": str(self._site_cache())}}
        with self._errors(what, remote_op=remote_op), Repo(str(self.root), config=config) as repo:
            repo.scm_context.quiet = True  # no "To track the changes with git, run:" hints
            yield repo

    def _ensure_ready(self) -> None:
        if not self._ready:
            self.ensure_initialised()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock(), flocked(self._lock_path()):
            yield

    def _thread_lock(self) -> threading.Lock:
        with _REGISTRY_LOCK:
            return _REPO_LOCKS.setdefault(self.root, threading.Lock())

    def _lock_path(self) -> Path:
        return self.root / ".dvc" / "tmp" / LOCK_FILE

    def _site_cache(self) -> Path:
        return self.root / ".dvc" / "tmp" / SITE_CACHE

    def _data_dir(self, data_dir: Path | str, *, must_exist: bool = False) -> Path:
        data = Path(data_dir).expanduser()
        data = (data if data.is_absolute() else self.root / data).resolve()
        if not data.is_relative_to(self.root) or data == self.root:
            raise VersioningError(
                f"data directory {data} is not inside the repository {self.root}; "
                "move it under the repository (e.g. domains/<name>/data)"
            )
        if must_exist and not data.is_dir():
            raise VersioningError(
                f"data directory {data} does not exist or is not a directory; create it first"
            )
        return data

    @staticmethod
    def _refuse_links(data: Path) -> None:
        from .validation.containment import check_data_folder

        problems = check_data_folder(data)
        if problems:
            raise VersioningError(f"refusing to version {data}: {'; '.join(problems)}")

    def _require_tracked(self, data: Path) -> None:
        if not _dvc_file(data).exists():
            raise VersioningError(
                f"{data} is not tracked: {_dvc_file(data)} does not exist; call track() first"
            )

    def _read_version(self, data: Path) -> DataVersion | None:
        dvc_file = _dvc_file(data)
        if not dvc_file.exists():
            return None
        return _parse_dvc_text(dvc_file.read_text(), data, source=str(dvc_file))

    def _target_text(self, data: Path, version: DataVersion | str) -> tuple[str, str]:
        """(md5, .dvc text) to write for `version`, checked against `data`."""
        if isinstance(version, str):
            md5 = _normalise_md5(version)
            return md5, _dvc_text(md5, data.name)
        parsed = _parse_dvc_text(
            version.dvc_file_text, data, source=f"the .dvc text of {version.md5}"
        )
        if parsed.md5 != version.md5:
            raise VersioningError(
                f"DataVersion md5 {version.md5} does not match its dvc_file_text "
                f"({parsed.md5}); pass the DataVersion returned by track() unchanged"
            )
        return version.md5, version.dvc_file_text


# -------------------------------------------------------------------- helpers


def _dvc_file(data: Path) -> Path:
    return data.with_name(data.name + ".dvc")


def _normalise_md5(value: str) -> str:
    md5 = value.strip().lower().removesuffix(".dir")
    if not _MD5.match(md5):
        raise VersioningError(
            f"data version {value!r} is not an md5: expected 32 hex characters "
            "(optionally followed by '.dir'), as in DataVersion.md5"
        )
    return md5


def _dvc_text(md5: str, name: str, files: int | None = None, size: int | None = None) -> str:
    """The `.dvc` text DVC itself writes; `hash: md5` is required (else legacy 2.x hashing)."""
    lines = ["outs:", f"- md5: {md5}.dir"]
    if size is not None:
        lines.append(f"  size: {size}")
    if files is not None:
        lines.append(f"  nfiles: {files}")
    lines += ["  hash: md5", f"  path: {name}"]
    return "\n".join(lines) + "\n"


def _parse_dvc_text(text: str, data: Path, *, source: str) -> DataVersion:
    try:
        doc = safe_load(text)
        out = doc["outs"][0]
        md5 = str(out["md5"])
        path = str(out["path"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        reason = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else repr(exc)
        raise VersioningError(
            f"{source} is not a DVC file with one output ({reason}); "
            "re-create it with track() or pass a bare md5"
        ) from exc
    if not md5.endswith(".dir"):
        raise VersioningError(f"{source} tracks a single file (md5 {md5}), not a directory")
    if path != data.name:
        raise VersioningError(
            f"{source} restores path {path!r}, not {data.name!r}: it belongs to another "
            "data directory"
        )
    return DataVersion(
        md5=_normalise_md5(md5),
        path=data,
        files=int(out.get("nfiles", 0)),
        size=int(out.get("size", 0)),
        dvc_file_text=text,
    )


def _entries(repo: Repo, md5: str) -> list[dict[str, str]] | None:
    path = repo.cache.local.oid_to_path(md5 + ".dir")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _missing_from_cache(repo: Repo, md5: str) -> str:
    """'' when the cache holds the `.dir` listing and every file in it, else what is missing."""
    entries = _entries(repo, md5)
    if entries is None:
        return f"no {md5}.dir listing"
    odb = repo.cache.local
    missing = [e["relpath"] for e in entries if not odb.exists(e["md5"])]
    if missing:
        return f"{len(missing)} of {len(entries)} files missing, e.g. {missing[0]}"
    return ""


def _cache_stats(repo: Repo, md5: str) -> tuple[int, int]:
    entries = _entries(repo, md5) or []
    odb = repo.cache.local
    return len(entries), sum(os.path.getsize(odb.oid_to_path(e["md5"])) for e in entries)


def _restore_file(path: Path, text: str | None) -> None:
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(text)


def _describe(exc: BaseException) -> str:
    """The exception's message without DVC's ANSI colours, or its type if it has none."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text or type(exc).__name__


@contextlib.contextmanager
def _env_var(name: str, value: str) -> Iterator[None]:
    """Set `name` unless already set, and restore it afterwards (serialised process-wide)."""
    with _ENV_LOCK:
        if name in os.environ:
            yield
            return
        os.environ[name] = value
        try:
            yield
        finally:
            os.environ.pop(name, None)
