"""Serving settings from the environment (prefix MPT_SERVE_); `mpt serve` flags override them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class ServeSettings(BaseSettings):
    """What one server (or every Ray Serve replica) runs with."""

    model_config = SettingsConfigDict(env_prefix="MPT_SERVE_", extra="ignore")

    host: str = "127.0.0.1"
    """Interface to listen on; anything but loopback is reachable from other machines."""
    port: int = Field(8000, ge=0, le=65535)
    alias: str = "production"
    """Which alias of every domain is served (`staging` to try candidates)."""
    max_batch_size: int = Field(32, ge=1)
    """Items (of any domains) run through the backbone together."""
    max_wait_ms: float = Field(5.0, ge=0)
    """How long the first item of a batch waits for others to join it."""
    max_items: int = Field(64, ge=1)
    """Items per request."""
    max_image_mb: float = Field(10.0, gt=0)
    """Largest image file, checked before decoding."""
    max_image_megapixels: float = Field(50.0, gt=0)
    """Largest image (width x height), read from the header before decoding."""
    max_request_mb: float = Field(100.0, gt=0)
    """Largest request body."""
    max_candidates: int = Field(256, ge=1)
    """Candidate captions per retrieval item."""
    max_json_depth: int = Field(32, ge=4)
    """How deeply a JSON body (or the multipart `items` field) may nest, checked before
    validation; an item needs 4 levels."""
    poll_seconds: float = Field(1.0, gt=0)
    """How often the registry is asked where the alias points (alias moves are live)."""
    retry_seconds: float = Field(30.0, gt=0)
    """How long a version that failed to load waits before it is tried again."""
    token_cache_seconds: float = Field(300.0, ge=0)
    """While the registry cannot be read, a token it verified within this many seconds is
    still accepted (0: none is); once the registry is back, every token is checked again."""
    auth_failures: int = Field(10, ge=1)
    """Failed token attempts per client address, and per token id, before a 429."""
    auth_failure_window_seconds: float = Field(60.0, gt=0)
    """The sliding window the failed attempts are counted in."""
    public_status: bool = True
    """false: /readyz and /metrics name no domain or version to a caller without a viewer
    token (when the registry has users)."""
    startup_timeout_seconds: float = Field(600.0, gt=0)
    """How long start-up waits for the first load before it serves with /readyz at 503."""
    shadow: bool = True
    """false: this server answers for no shadow version, whatever the domains ask
    (`monitoring.shadow_fraction`); drift is measured either way."""
    shadow_queue: int = Field(256, ge=1)
    """Items waiting for their shadow answer; beyond it they are dropped (and counted)."""
    shadow_batch: int = Field(8, ge=1)
    """Shadow items answered at once when no production item waits: a production item that
    arrives meanwhile waits for at most this many."""
    monitor_report_seconds: float = Field(10.0, gt=0)
    """How often shadow tallies and drift points go to the registry."""
    drift_every_seconds: float = Field(60.0, gt=0)
    """How often a domain's drift is recorded in the registry (its history on the review
    pages, what the drift check reads); /metrics and /v1/domains show it live."""
    drift_min_samples: int = Field(100, ge=1)
    """Production predictions a domain's window needs before its drift is reported (or
    its whole `monitoring.window`, if smaller)."""
    threads: int | None = Field(None, ge=1)
    """torch intra-op threads (default: torch's own choice)."""
    device: str = "auto"
    """cpu, cuda, cuda:1 ...; auto = cuda when available."""

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * MB)

    @property
    def max_image_pixels(self) -> int:
        return int(self.max_image_megapixels * 1_000_000)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * MB)
