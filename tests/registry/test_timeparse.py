"""Times typed by people: ISO 8601, naive ones taken as UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from registry.errors import InvalidRecord
from registry.timeparse import parse_when


def test_a_naive_time_is_utc_and_a_named_zone_is_kept():
    assert parse_when(" 2026-11-27T10:00 ") == datetime(2026, 11, 27, 10, tzinfo=UTC)
    one = timezone(timedelta(hours=1))
    assert parse_when("2026-11-27T10:00+01:00") == datetime(2026, 11, 27, 10, tzinfo=one)


def test_not_a_time_says_what_to_type():
    with pytest.raises(InvalidRecord, match=r"^'yesterday' is not a time; use ISO 8601, e\.g\."):
        parse_when("yesterday")
    with pytest.raises(ValueError):  # InvalidRecord is a ValueError too
        parse_when("")
