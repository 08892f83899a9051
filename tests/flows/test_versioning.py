"""DVC versioning of domain data dirs, against a local-directory remote and a real S3 server."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from PIL import Image

from flows.versioning import DataVersion, DataVersioner, RemoteSpec, VersioningError

from ..s3_server import S3Server

# dvc 3.67 itself trips pygtrie's deprecation of `_NoneStep.value`.
pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")


@pytest.fixture(autouse=True)
def _hermetic_dvc(tmp_path, monkeypatch):
    """No analytics, no user/system DVC config, no ~/.aws, no cloud metadata probes."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tmp_path / "dvc-global"))
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(tmp_path / "dvc-system"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DVC_SITE_CACHE_DIR", raising=False)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A fresh git repository (no commits) with one domain's data dir."""
    root = tmp_path / "repo"
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "init", "-q", str(root)],
        check=True,
    )
    make_data(root / "domains" / "retail" / "data")
    return root


@pytest.fixture
def local_remote(tmp_path) -> RemoteSpec:
    return RemoteSpec(str(tmp_path / "remote"))


@pytest.fixture
def s3_remote(s3_server: S3Server, monkeypatch) -> RemoteSpec:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    # one store per test on the shared server (uuid: training seeds the `random` module)
    prefix = f"dvc-{uuid.uuid4().hex}"
    return RemoteSpec(f"s3://{s3_server.bucket}/{prefix}", s3_server.endpoint_url)


def make_data(data: Path, images: int = 3, seed: int = 0) -> None:
    """A few small PNGs and a CSV of labels."""
    (data / "images").mkdir(parents=True)
    rng = random.Random(seed)
    rows = ["filename,label"]
    for i in range(images):
        write_png(data / "images" / f"img_{i}.png", rng)
        rows.append(f"images/img_{i}.png,{['shirt', 'shoe'][i % 2]}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")


def write_png(path: Path, rng: random.Random) -> None:
    pixels = bytes(rng.randrange(256) for _ in range(8 * 8 * 3))
    Image.frombytes("RGB", (8, 8), pixels).save(path)


def snapshot(data: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()
    }


def data_dir(root: Path, domain: str = "retail") -> Path:
    return root / "domains" / domain / "data"


def round_trip(root: Path, remote: RemoteSpec) -> None:
    """track -> push -> change an image -> new version -> wipe -> restore the old one."""
    versioner = DataVersioner(root, remote)
    data = data_dir(root)
    v1 = versioner.track(data)
    v1_files = snapshot(data)
    assert versioner.push(data) == 5  # 4 files + the .dir listing
    write_png(data / "images" / "img_0.png", random.Random(99))
    v2 = versioner.track(data)
    assert v2.md5 != v1.md5
    versioner.push(data)
    v2_files = snapshot(data)

    shutil.rmtree(data)
    shutil.rmtree(root / ".dvc" / "cache")
    restored = versioner.materialise(data, v1.md5)  # from the bare md5 only
    assert snapshot(data) == v1_files
    assert restored == v1  # same md5, counts and .dvc text as `dvc add` wrote
    assert versioner.version_of(data) == v1

    shutil.rmtree(root / ".dvc" / "cache")
    assert versioner.materialise(data, v2).md5 == v2.md5
    assert snapshot(data) == v2_files
    assert (root / ".dvc" / "tmp" / "site_cache" / "repo").is_dir()  # not /var/tmp/dvc


def test_round_trip_with_a_local_remote(repo, local_remote):
    round_trip(repo, local_remote)
    assert any((Path(local_remote.url) / "files" / "md5").rglob("*.dir"))


def test_round_trip_with_the_s3_remote(repo, s3_remote, s3_server):
    import boto3

    round_trip(repo, s3_remote)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    prefix = s3_remote.url.split("/", 3)[3]
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix + "/")
    assert sum(key["Key"].endswith(".dir") for key in listed["Contents"]) == 2
    config = (repo / ".dvc" / "config.local").read_text() + (repo / ".dvc" / "config").read_text()
    assert s3_server.endpoint_url in config and s3_server.secret_key not in config


def test_unchanged_data_keeps_its_md5(repo, local_remote):
    data = data_dir(repo)
    first = DataVersioner(repo, local_remote).track(data)
    os.utime(data / "labels.csv", (1, 1))  # a touched file is not a change
    again = DataVersioner(repo, local_remote).track(data)
    assert again == first
    assert first.files == 4 and first.size == sum(map(len, snapshot(data).values()))
    assert len(first.md5) == 32 and first.path == data


def test_version_changes_when_one_image_changes(repo, local_remote):
    versioner = DataVersioner(repo, local_remote)
    data = data_dir(repo)
    before = versioner.track(data)
    write_png(data / "images" / "img_2.png", random.Random(7))
    after = versioner.track(data)
    assert after.md5 != before.md5 and after.files == before.files
    assert versioner.version_of(data) == after


def test_untracked_dir_has_no_version(repo, local_remote):
    assert DataVersioner(repo, local_remote).version_of(data_dir(repo)) is None
    assert not (repo / ".dvc").exists()  # reading does not initialise DVC


def test_a_version_that_exists_nowhere_leaves_the_workspace_alone(repo, local_remote):
    versioner = DataVersioner(repo, local_remote)
    data = data_dir(repo)
    current = versioner.track(data)
    versioner.push(data)
    before = snapshot(data)
    missing = "0123456789abcdef" * 2

    with pytest.raises(VersioningError) as err:
        versioner.materialise(data, missing)
    message = str(err.value)
    assert missing in message and local_remote.url in message
    assert snapshot(data) == before
    assert versioner.version_of(data) == current


def test_materialise_rejects_a_malformed_md5(repo, local_remote):
    with pytest.raises(VersioningError, match="'nope' is not an md5: expected 32 hex"):
        DataVersioner(repo, local_remote).materialise(data_dir(repo), "nope")


def test_materialise_rejects_a_version_of_another_directory(repo, local_remote):
    versioner = DataVersioner(repo, local_remote)
    make_data(repo / "domains" / "medical" / "images")
    other = versioner.track(repo / "domains" / "medical" / "images")
    with pytest.raises(VersioningError, match="restores path 'images', not 'data'"):
        versioner.materialise(data_dir(repo), other)


def test_threads_track_and_push_at_once(repo, local_remote):
    make_data(data_dir(repo, "medical"), seed=1)
    start = threading.Barrier(2)
    results: dict[str, DataVersion | BaseException] = {}

    def work(domain: str) -> None:
        versioner = DataVersioner(repo, local_remote)
        start.wait()
        try:
            version = versioner.track(data_dir(repo, domain))
            versioner.push(data_dir(repo, domain))
            results[domain] = version
        except BaseException as exc:
            results[domain] = exc

    threads = [threading.Thread(target=work, args=(d,)) for d in ("retail", "medical")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(isinstance(r, DataVersion) for r in results.values()), results
    assert len(list((Path(local_remote.url) / "files" / "md5").rglob("*.dir"))) == 2


CHILD = textwrap.dedent(
    """
    import sys
    from flows.versioning import DataVersioner, RemoteSpec
    root, remote, data = sys.argv[1:]
    versioner = DataVersioner(root, RemoteSpec(remote))
    version = versioner.track(data)
    versioner.push(data)
    print(version.md5)
    """
)


def test_processes_track_and_push_at_once(repo, local_remote):
    make_data(data_dir(repo, "medical"), seed=1)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(repo), local_remote.url, str(data_dir(repo, d))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in ("retail", "medical")
    ]
    outputs = [child.communicate(timeout=120) for child in children]

    assert [c.returncode for c in children] == [0, 0], [err for _, err in outputs]
    versioner = DataVersioner(repo, local_remote)
    md5s = [out.split()[-1] for out, _ in outputs]
    assert md5s == [versioner.version_of(data_dir(repo, d)).md5 for d in ("retail", "medical")]
    assert len(list((Path(local_remote.url) / "files" / "md5").rglob("*.dir"))) == 2


def test_not_a_git_repository_says_how_to_fix_it(tmp_path, local_remote):
    plain = tmp_path / "plain"
    make_data(plain / "data")
    with pytest.raises(VersioningError, match=f"{plain} is not a git repository.*`git init"):
        DataVersioner(plain, local_remote).track(plain / "data")
    assert not (plain / ".dvc").exists()


def test_ensure_initialised_is_idempotent_and_follows_the_remote(repo, tmp_path):
    DataVersioner(repo, RemoteSpec("s3://bucket/a", "http://127.0.0.1:1")).ensure_initialised()
    DataVersioner(repo, RemoteSpec("s3://bucket/a", "http://127.0.0.1:1")).ensure_initialised()
    assert "analytics = False" in (repo / ".dvc" / "config").read_text()
    local = (repo / ".dvc" / "config.local").read_text()
    assert "remote = storage" in local and "http://127.0.0.1:1" in local
    assert "remote" not in (repo / ".dvc" / "config").read_text()  # machine choice stays local

    DataVersioner(repo, RemoteSpec(str(tmp_path / "store"))).ensure_initialised()
    local = (repo / ".dvc" / "config.local").read_text()
    assert "s3://" not in local and "endpointurl" not in local and "region" not in local
    assert "store" in local


def test_bad_s3_credentials_name_the_remote_and_the_variables(repo, s3_remote, monkeypatch):
    versioner = DataVersioner(repo, s3_remote)
    versioner.track(data_dir(repo))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(VersioningError) as err:
        versioner.push(data_dir(repo))
    message = str(err.value)
    assert s3_remote.url in message and s3_remote.endpoint_url in message
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (dict(url="gs://bucket/x"), "use a local directory or s3://bucket/prefix"),
        (dict(url="s3://"), "names no bucket"),
        (dict(url="/tmp/x", endpoint_url="http://127.0.0.1:1"), "only applies to s3://"),
        (dict(url="/tmp/x", name="a b"), "remote name 'a b'"),
    ],
)
def test_remote_spec_is_checked(spec, message):
    with pytest.raises(VersioningError, match=message):
        RemoteSpec(**spec)
