"""Settings of the review pages (prefix MPT_REVIEW_): the session key and lifetime, the
throttle of failed logins, the largest request body."""

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
    login_failures: int = Field(10, ge=1)
    """Failed logins per client address, and per token id, before the login page answers
    429 (counted by each review process; see `registry.throttle`)."""
    login_failure_window_seconds: float = Field(60.0, gt=0)
    """The sliding window the failed logins are counted in."""
    max_body_kb: float = Field(256.0, gt=0)
    """Largest request body: the pages' forms carry a token, a comment or a reason."""


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
