"""The throttle of failed token attempts: a sliding window per key, blocked attempts not
counted, the moment a key is blocked reported once."""

from __future__ import annotations

import pytest

from registry.resources.users import new_token, token_key_id
from registry.throttle import FailureThrottle

ADDRESS = ("address", "10.0.0.7")
TOKEN = ("token id", "0123456789abcdef")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_blocked_at_the_limit_until_its_oldest_failure_leaves_the_window():
    clock = Clock()
    throttle = FailureThrottle(3, 60, clock=clock)
    assert throttle.failed([ADDRESS]) == []
    clock.now += 5
    assert throttle.failed([ADDRESS]) == []
    clock.now += 5
    (newly,) = throttle.failed([ADDRESS])  # the third within 60 s: blocked from now
    assert newly.key == ADDRESS and newly.retry_after == pytest.approx(50)  # 1000 + 60
    blocked = throttle.blocked([ADDRESS, TOKEN])
    assert blocked.key == ADDRESS and blocked.what == "address 10.0.0.7"
    clock.now += 49.9
    assert throttle.blocked([ADDRESS]).retry_after == pytest.approx(0.1)
    clock.now += 0.2
    assert throttle.blocked([ADDRESS]) is None  # the first failure left the window
    assert throttle.failed([ADDRESS])[0].retry_after == pytest.approx(4.9)  # 1005 + 60


def test_keys_are_counted_apart_and_the_longest_wait_is_reported():
    clock = Clock()
    throttle = FailureThrottle(2, 30, clock=clock)
    throttle.failed([ADDRESS, TOKEN])
    clock.now += 5
    throttle.failed([TOKEN])
    assert throttle.blocked([ADDRESS]) is None
    assert throttle.blocked([ADDRESS, TOKEN]).key == TOKEN
    clock.now += 1
    throttle.failed([ADDRESS])
    assert throttle.blocked([ADDRESS, TOKEN]).key == ADDRESS  # 30 s from now+1 vs now


def test_memory_is_bounded_by_max_keys():
    throttle = FailureThrottle(1, 60, max_keys=3, clock=Clock())
    for i in range(10):
        throttle.failed([("address", f"10.0.0.{i}")])
    assert throttle.blocked([("address", "10.0.0.0")]) is None  # forgotten, oldest first
    assert throttle.blocked([("address", "10.0.0.9")]) is not None


def test_limits_must_make_sense():
    with pytest.raises(ValueError, match="limit >= 1"):
        FailureThrottle(0, 60)


def test_the_key_id_of_a_token():
    token = new_token()
    assert token_key_id(token.token) == token.key_id
    assert token_key_id(f"  {token.token} ") == token.key_id
    for bad in (None, "", "mpt_short_x", token.token + "x", "Bearer " + token.token):
        assert token_key_id(bad) is None
