"""Times typed by people (the review site's "as of" form, the CLI's `--at`), parsed one
way: ISO 8601, UTC unless the text names a zone. No SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import InvalidRecord


def parse_when(text: str) -> datetime:
    """An aware datetime from ISO 8601 text (a naive time is taken as UTC); InvalidRecord
    (a ValueError) if `text` is not one."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRecord(
            f"{text!r} is not a time; use ISO 8601, e.g. 2026-11-27T10:00 (UTC) or "
            "2026-11-27T10:00+01:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
