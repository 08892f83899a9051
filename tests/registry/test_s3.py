"""`registry.s3.s3_client`, the S3 client of the store, the data cache and the preflight,
against a real SeaweedFS server."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from registry.s3 import s3_client

from ..s3_server import pick_ports


def test_a_client_takes_the_credentials_set_when_it_is_made(s3_server, monkeypatch):
    """No cached session: a secret changed in this process is the one the next client signs
    with. The endpoint is named by host, so only path-style addressing finds the bucket."""
    endpoint = s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    key = f"s3-tests/{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    s3_client(endpoint).put_object(Bucket=s3_server.bucket, Key=key, Body=b"x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        s3_client(endpoint).get_object(Bucket=s3_server.bucket, Key=key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    client = s3_client(endpoint)
    assert client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == b"x"
    client.delete_object(Bucket=s3_server.bucket, Key=key)


@pytest.mark.parametrize(("attempts", "expected"), [(None, 3), (2, 2)])
def test_an_unreachable_endpoint_is_tried_as_often_as_asked(monkeypatch, attempts, expected):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    client = s3_client(f"http://127.0.0.1:{pick_ports(1)[0]}", attempts=attempts)
    sent: list[str] = []
    client.meta.events.register("before-send.s3.HeadBucket", lambda **_: sent.append("try"))
    with pytest.raises(EndpointConnectionError):
        client.head_bucket(Bucket="bucket")
    assert len(sent) == expected
