"""Registry settings from the environment: MPT_HOME, MPT_DATABASE_URL, MPT_ARTIFACT_STORE."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MPT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".mpt")
    database_url: str | None = None
    """SQLAlchemy URL; default: SQLite file <home>/registry.db."""
    artifact_store: str | None = None
    """A directory or s3://bucket/prefix; default: <home>/artifacts."""
    artifact_s3_endpoint: str | None = None
    """Endpoint URL for an s3:// artifact store (SeaweedFS, MinIO...)."""

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'registry.db'}"

    @property
    def store_url(self) -> str:
        return self.artifact_store or str(self.home / "artifacts")
