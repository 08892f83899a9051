"""The artifact store: deterministic pack/unpack, and every store behaviour on a local
directory and on a real S3 server (SeaweedFS, from the session fixture `s3_server`)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from registry.errors import (
    ArtifactCorruptedError,
    ArtifactNotFoundError,
    NotFoundError,
    RegistryError,
    StoreError,
)
from registry.store import (
    ArtifactStore,
    LocalStore,
    S3Store,
    StoredArtifact,
    open_store,
    pack_dir,
    sha256_of,
    unpack,
)

from ..s3_server import S3Server, pick_ports

LABEL = "retail v3"


def make_artifact(directory: Path, seed: int = 0) -> Path:
    """A prompt-artifact-like folder: binary tensors, a JSON config, a nested extra file."""
    directory.mkdir(parents=True)
    (directory / "prompts.safetensors").write_bytes(
        bytes((i * 7 + seed) % 256 for i in range(4096))
    )
    (directory / "prompt_config.json").write_text(f'{{"method": "mpt", "seed": {seed}}}')
    (directory / "extra").mkdir()
    (directory / "extra" / "notes.txt").write_text("centre of the training images\n")
    return directory


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- pack / unpack


def test_pack_is_deterministic_and_unpack_is_byte_exact(tmp_path):
    first = make_artifact(tmp_path / "a")
    second = make_artifact(tmp_path / "b")  # same content, other path, mtimes, inode order
    os.utime(second / "prompts.safetensors", (1_000_000, 1_000_000))
    (second / "prompt_config.json").chmod(0o600)

    blob = pack_dir(first)
    assert pack_dir(second) == blob
    assert pack_dir(first) == blob

    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "extra/notes.txt",
        "prompt_config.json",
        "prompts.safetensors",
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}

    out = unpack(blob, tmp_path / "out" / "retail")
    assert out == tmp_path / "out" / "retail"
    assert files_of(out) == files_of(first)
    assert pack_dir(out) == blob
    assert sha256_of(pack_dir(make_artifact(tmp_path / "c", seed=1))) != sha256_of(blob)


def test_pack_refuses_links_and_missing_or_empty_folders(tmp_path):
    artifact = make_artifact(tmp_path / "a")
    (artifact / "link.json").symlink_to(artifact / "prompt_config.json")
    with pytest.raises(StoreError, match=r"link\.json is a link"):
        pack_dir(artifact)
    with pytest.raises(StoreError, match="not a directory"):
        pack_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="holds no files"):
        pack_dir(tmp_path / "empty")


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ok = tarfile.TarInfo("prompt_config.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


UNSAFE = {
    "absolute": (_member("/etc/evil"), "absolute path"),
    "dotdot": (_member("../evil"), r"escapes the target folder \('\.\.'\)"),
    "nested dotdot": (_member("extra/../../evil"), "escapes"),
    "symlink": (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "not a regular file"),
    "hardlink": (_member("hard", tarfile.LNKTYPE, "prompt_config.json"), "not a regular file"),
    "char device": (_member("dev", tarfile.CHRTYPE), "not a regular file"),
    "fifo": (_member("fifo", tarfile.FIFOTYPE), "not a regular file"),
    "directory": (_member("folder", tarfile.DIRTYPE), "not a regular file"),
    "duplicate": (_member("prompt_config.json"), "appears twice"),
}


@pytest.mark.parametrize("case", list(UNSAFE), ids=list(UNSAFE))
def test_unpack_refuses_unsafe_members_before_writing_anything(tmp_path, case):
    member, reason = UNSAFE[case]
    blob = _tar_with(member, b"pwned")
    target = tmp_path / "work" / "out"
    with pytest.raises(ArtifactCorruptedError, match=reason) as caught:
        unpack(blob, target, label=LABEL)
    message = str(caught.value)
    assert LABEL in message and sha256_of(blob) in message and repr(member.name) in message
    assert not target.exists()
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_unpack_refuses_garbage_and_a_non_empty_target(tmp_path):
    with pytest.raises(ArtifactCorruptedError, match="not a readable tar archive"):
        unpack(b"definitely not a tar" * 40, tmp_path / "out", label=LABEL)
    blob = pack_dir(make_artifact(tmp_path / "a"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "old.txt").write_text("from another artifact")
    with pytest.raises(StoreError, match="not an empty folder"):
        unpack(blob, tmp_path / "busy")
    (tmp_path / "empty").mkdir()
    assert files_of(unpack(blob, tmp_path / "empty")) == files_of(tmp_path / "a")


# ---------------------------------------------------------------- both stores


@dataclass
class StoreCase:
    """A store plus test-only access to its raw storage, bypassing the store's checks."""

    store: ArtifactStore
    overwrite: Callable[[str, bytes], None]  # replace the stored bytes of a sha256
    fingerprint: Callable[[str], object]  # changes whenever the blob is (re)written


def _local_case(tmp_path: Path) -> StoreCase:
    store = LocalStore(tmp_path / "artifacts")

    def overwrite(sha256: str, data: bytes) -> None:
        path = store.path(sha256)
        path.write_bytes(data)

    def fingerprint(sha256: str) -> object:
        stat = store.path(sha256).stat()
        return stat.st_ino, stat.st_mtime_ns

    return StoreCase(store, overwrite, fingerprint)


def _s3_case(s3_server: S3Server, monkeypatch) -> StoreCase:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    prefix = f"store-tests/{uuid.uuid4().hex}"
    store = S3Store(s3_server.bucket, prefix, endpoint_url=s3_server.endpoint_url)
    puts: list[str] = []
    store.client.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: puts.append(params["Key"])
    )

    def overwrite(sha256: str, data: bytes) -> None:
        raw = boto3.client(
            "s3",
            endpoint_url=s3_server.endpoint_url,
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            region_name="us-east-1",
        )
        raw.put_object(Bucket=s3_server.bucket, Key=store.key(sha256), Body=data)

    return StoreCase(store, overwrite, lambda sha256: puts.count(store.key(sha256)))


@pytest.fixture(params=["local", "s3"])
def case(request, tmp_path, monkeypatch) -> StoreCase:
    if request.param == "local":
        return _local_case(tmp_path)
    return _s3_case(request.getfixturevalue("s3_server"), monkeypatch)


def test_put_then_get_round_trips_and_names_the_blob_by_its_sha256(case):
    store = case.store
    blob = b"prompt artifact bytes " * 100
    sha = sha256_of(blob)
    stored = store.put(blob)
    assert stored == StoredArtifact(sha, len(blob), f"{store.url}/sha256/{sha[:2]}/{sha}")
    assert stored.uri.startswith(("file:///", "s3://"))
    assert store.exists(sha)
    assert store.get(sha) == blob
    assert store.get(sha.upper(), label=LABEL) == blob


def test_put_is_idempotent_and_does_not_rewrite(case):
    blob = b"same bytes"
    first = case.store.put(blob)
    before = case.fingerprint(first.sha256)
    assert case.store.put(blob) == first
    assert case.fingerprint(first.sha256) == before


def test_get_verifies_the_sha256_and_put_repairs_a_corrupted_blob(case):
    blob = b"the real prompts" * 64
    stored = case.store.put(blob)
    case.overwrite(stored.sha256, b"the fake prompts" * 64)  # same size, other bytes
    with pytest.raises(ArtifactCorruptedError) as caught:
        case.store.get(stored.sha256, label=LABEL)
    message = str(caught.value)
    assert f"'{LABEL}'" in message and stored.sha256 in message and stored.uri in message
    assert "put the original artifact again" in message
    with pytest.raises(ArtifactCorruptedError):
        case.store.get_dir(stored.sha256, Path("out"), label=LABEL)
    assert not Path("out").exists()

    case.store.put(blob)
    assert case.store.get(stored.sha256) == blob


def test_a_missing_artifact_is_not_found_with_the_label_and_store(case):
    sha = sha256_of(b"never stored")
    assert not case.store.exists(sha)
    with pytest.raises(ArtifactNotFoundError) as caught:
        case.store.get(sha, label=LABEL)
    assert isinstance(caught.value, NotFoundError)
    message = str(caught.value)
    assert f"'{LABEL}'" in message and sha in message and case.store.url in message
    assert "check that the store URL" in message


def test_delete_and_list(case):
    store = case.store
    assert list(store.list()) == []
    shas = {store.put(f"blob {i}".encode()).sha256 for i in range(3)}
    assert set(store.list()) == shas
    gone = sorted(shas)[0]
    store.delete(gone)
    store.delete(gone)  # deleting what is not there is a no-op
    assert not store.exists(gone)
    assert set(store.list()) == shas - {gone}
    with pytest.raises(ArtifactNotFoundError):
        store.get(gone)


def test_put_dir_and_get_dir(case, tmp_path):
    source = make_artifact(tmp_path / "retail")
    stored = case.store.put_dir(source)
    assert case.store.put_dir(make_artifact(tmp_path / "copy")).sha256 == stored.sha256
    out = case.store.get_dir(stored.sha256, tmp_path / "cache" / stored.sha256, label=LABEL)
    assert files_of(out) == files_of(source)


@pytest.mark.parametrize("bad", ["", "abc", "../../etc/passwd", "g" * 64])
def test_a_malformed_sha256_is_refused(case, bad):
    with pytest.raises(StoreError, match="not a sha256: expected 64 hex digits"):
        case.store.get(bad)


# ---------------------------------------------------------------- open_store


def test_open_store_dispatches_on_the_url(tmp_path):
    local = open_store(tmp_path / "a")
    assert isinstance(local, LocalStore) and local.root == tmp_path / "a"
    assert local.url == (tmp_path / "a").as_uri()
    from_uri = open_store((tmp_path / "b c").as_uri())
    assert isinstance(from_uri, LocalStore) and from_uri.root == tmp_path / "b c"
    assert open_store("relative").root == Path.cwd() / "relative"

    s3 = open_store("s3://bucket/some/prefix/", endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.url) == ("bucket", "some/prefix", "s3://bucket/some/prefix")
    assert s3.uri("ab" * 32) == f"s3://bucket/some/prefix/sha256/ab/{'ab' * 32}"
    assert s3.key("ab" * 32) == f"some/prefix/sha256/ab/{'ab' * 32}"
    assert open_store("s3://bucket").key("ab" * 32) == f"sha256/ab/{'ab' * 32}"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("gs://bucket/prefix", "unsupported artifact store URL"),
        ("", "unsupported artifact store URL"),
        ("s3:///prefix", "has no bucket"),
        ("file://otherhost/srv/artifacts", "names host 'otherhost'"),
    ],
)
def test_open_store_refuses_other_urls_and_lists_the_supported_forms(url, reason):
    with pytest.raises(StoreError, match=reason) as caught:
        open_store(url)
    assert isinstance(caught.value, RegistryError)
    assert "s3://bucket[/prefix]" in str(caught.value) and "file:///" in str(caught.value)


# ---------------------------------------------------------------- S3 failures


def test_bad_s3_credentials_give_a_store_error_with_the_hint(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    url = f"s3://{s3_server.bucket}/store-tests/{uuid.uuid4().hex}"
    store = open_store(url, endpoint_url=s3_server.endpoint_url)
    sha = sha256_of(b"x")
    calls = {
        "put": lambda: store.put(b"x"),
        "get": lambda: store.get(sha, LABEL),
        "exists": lambda: store.exists(sha),
        "list": lambda: list(store.list()),
    }
    for name, call in calls.items():
        with pytest.raises(StoreError) as caught:
            call()
        message = str(caught.value)
        assert url in message and s3_server.endpoint_url in message, name
        assert "AWS_SECRET_ACCESS_KEY" in message and "AWS_ACCESS_KEY_ID" in message, name


def test_an_unreachable_s3_endpoint_gives_a_store_error(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    endpoint = f"http://127.0.0.1:{pick_ports(1)[0]}"  # nothing listens there
    store = S3Store("bucket", "p", endpoint_url=endpoint)
    with pytest.raises(StoreError, match="endpoint is the right one and reachable") as caught:
        store.get(sha256_of(b"x"), label=LABEL)
    assert endpoint in str(caught.value) and f"'{LABEL}'" in str(caught.value)


def test_registry_store_imports_no_app_or_training_stack():
    code = (
        "import sys, registry.store; "
        "bad = [m for m in ('flows', 'prefect', 'ray', 'torch') if m in sys.modules]; "
        "print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "[]"
