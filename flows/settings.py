"""Platform settings from the environment (prefix MPT_), with embedded defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlatformSettings(BaseSettings):
    """`MPT_HOME`, `MPT_DOMAINS_DIR`, `MPT_DVC_REMOTE`, `MPT_DVC_S3_ENDPOINT`, `MPT_RAY_ADDRESS`."""

    model_config = SettingsConfigDict(env_prefix="MPT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".mpt")
    """Platform home: registry database, artifacts, local DVC remote, Prefect home."""
    domains_dir: Path = Path("domains")
    """Folder holding the domain folders; its git repository holds the DVC metadata."""
    dvc_remote: str | None = None
    """DVC remote: a directory or s3://bucket/prefix; default: <home>/dvc-remote."""
    dvc_s3_endpoint: str | None = None
    """S3 endpoint URL for an s3:// remote (e.g. http://127.0.0.1:8333)."""
    ray_address: str | None = None
    """Existing Ray cluster (e.g. 127.0.0.1:6379); default: start a local Ray."""

    @property
    def dvc_remote_url(self) -> str:
        return self.dvc_remote or str(self.home / "dvc-remote")


def load_settings(**overrides: object) -> PlatformSettings:
    return PlatformSettings(**{k: v for k, v in overrides.items() if v is not None})
