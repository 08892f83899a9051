"""Settings of the review pages: MPT_REVIEW_SECRET, MPT_REVIEW_SESSION_HOURS."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FILE = "review-secret"


class ReviewSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MPT_REVIEW_", extra="ignore")

    secret: str | None = None
    """Key that signs session cookies and CSRF tokens. Set the same value on every replica
    behind a proxy; default: a random key kept in <MPT_HOME>/review-secret (mode 0600)."""
    session_hours: float = Field(8.0, gt=0)
    """How long a login lasts; after that the browser is sent back to the login page."""


def signing_key(settings: ReviewSettings, home: Path) -> bytes:
    """The configured secret, or the one in `home/review-secret` (created on first use)."""
    if settings.secret:
        return settings.secret.encode()
    path = home / SECRET_FILE
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise RuntimeError(f"{path} holds no usable key; delete it to make a new one") from None
        return key.encode()
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key.encode()
