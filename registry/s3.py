"""The S3 client of the platform: the artifact store, the workers' data cache and the
preflight probe all make theirs here, so they retry, time out and address buckets alike.

    client = s3_client("http://127.0.0.1:8333")     # SeaweedFS, MinIO...; None: AWS
"""

from __future__ import annotations

import boto3
from botocore.client import BaseClient
from botocore.config import Config

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60


def s3_client(
    endpoint_url: str | None = None,
    region: str | None = None,
    *,
    read_timeout_s: float = READ_TIMEOUT_S,
    attempts: int | None = None,
) -> BaseClient:
    """An S3 client for `endpoint_url` (an S3-compatible server; None: AWS itself).

    Retries use botocore's "standard" mode (backoff with jitter, transient and throttling
    errors); `attempts` counts the first try too (None: AWS_MAX_ATTEMPTS or botocore's
    default of 3). A probe that must answer in seconds passes a short `read_timeout_s` and
    few `attempts`. `region` None takes boto3's usual sources (AWS_DEFAULT_REGION, ...).
    """
    retries: dict[str, str | int] = {"mode": "standard"}
    if attempts is not None:
        retries["total_max_attempts"] = attempts
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=read_timeout_s,
        retries=retries,
        # Path-style addressing: S3-compatible servers on an endpoint URL rarely have
        # per-bucket DNS names.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    # A session of its own: boto3's default session caches the first credentials it finds,
    # so AWS_* changed later in the process would be ignored.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
