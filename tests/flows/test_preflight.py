"""The preflight's DVC remote probe against a real SeaweedFS server: it writes a tiny object,
deletes it, and says what to fix when it cannot."""

from __future__ import annotations

import uuid

from flows.preflight import check_dvc_remote
from registry.s3 import s3_client


def test_an_s3_remote_passes_and_keeps_nothing(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    prefix = f"preflight-{uuid.uuid4().hex}"
    url = f"s3://{s3_server.bucket}/{prefix}"
    assert check_dvc_remote(url, s3_server.endpoint_url, None) is None
    listed = s3_client(s3_server.endpoint_url).list_objects_v2(
        Bucket=s3_server.bucket, Prefix=prefix
    )
    assert listed.get("KeyCount") == 0


def test_an_s3_remote_with_a_wrong_secret_names_the_remote_and_the_fix(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    url = f"s3://{s3_server.bucket}/preflight"
    problem = check_dvc_remote(url, s3_server.endpoint_url, None)
    assert problem is not None and url in problem and s3_server.endpoint_url in problem
    assert "SignatureDoesNotMatch" in problem and "AWS_* credentials" in problem
