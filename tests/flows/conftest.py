"""Fixtures shared by the flows tests."""

from .s3 import s3_server  # noqa: F401
