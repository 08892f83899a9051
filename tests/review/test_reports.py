"""A data version's validation report (GX Data Docs) is served from inside its report
directory only (TestClient, SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from .shared_scene import *  # noqa: F403 - one scene for the module (per backend)

BASE = "/domains/retail/data/{md5}/report/"


@pytest.fixture
def docs(as_user, scene):
    return as_user("vic"), BASE.format(md5=scene.md5)


def test_data_docs_files_are_served_in_a_sandbox(docs, scene):
    client, base = docs
    page = client.get(base + "data_docs/index.html")
    assert page.status_code == 200 and "Data Docs" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("sandbox")  # no session access
    css = client.get(base + "data_docs/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get(base + "summary.txt").text == "passed: 3 checks"


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2Fregistry.db",
        "data_docs/..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "data_docs",  # a directory, not a file
        "nothing.html",
        "link-out/secret.txt",
    ],
)
def test_anything_outside_the_report_directory_is_refused(docs, scene, tmp_path, path):
    client, base = docs
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("do not serve")
    link = scene.report_dir / "link-out"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)  # a symlink that leaves the report
    response = client.get(base + path)
    assert response.status_code == 404 and "do not serve" not in response.text
    assert "root:" not in response.text


def test_a_report_that_is_not_on_this_machine_or_a_data_version_that_is_unknown(
    as_user, reg, scene
):
    reg.record_data_version(
        "retail",
        "9" * 32,
        rows=1,
        row_counts={},
        validation_passed=True,
        report_uri="s3://bucket/reports/retail/" + "9" * 32,
    )
    client = as_user("vic")
    remote = client.get(BASE.format(md5="9" * 32) + "data_docs/index.html")
    assert remote.status_code == 404 and "not stored on this machine" in remote.text
    unknown = client.get(BASE.format(md5="8" * 32) + "data_docs/index.html")
    assert unknown.status_code == 404 and "is not recorded" in unknown.text


def test_reports_need_a_login(client, scene):
    response = client.get(BASE.format(md5=scene.md5) + "data_docs/index.html")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
