"""Throttling of failed token attempts, per client address and per token id.

Every failed attempt (a token the registry did not accept) counts against the address it
came from and the token's key id (`mpt_<key id>_...`, public: it names the user the
token claims to be). A key with `limit` failures within the last `window_seconds` is
blocked until the oldest of them leaves the window; a blocked attempt is refused before
its token is checked, so it costs no scrypt and is not counted again.

The counters live in the memory of each process (each serving replica, each review
process), not in the registry. Tokens carry 256 random bits, so the throttle is not what
stops guessing; it bounds the work one client can make a process do (50 ms of scrypt per
attempt) and makes the attempts visible in the audit log. Counting in the registry would
turn every failed attempt into a write on the database all replicas depend on: a lever
for the attacker on the one shared part. The effective limit across N processes is N
times the setting.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Key = tuple[str, str]
"""(what, value): ("address", "10.0.0.7") or ("token id", "0123456789abcdef")."""


@dataclass(frozen=True)
class Blocked:
    """A key over the limit, and for how long."""

    key: Key
    retry_after: float
    """Seconds until the next attempt is let through."""

    @property
    def what(self) -> str:
        kind, value = self.key
        return f"{kind} {value}"


class FailureThrottle:
    """At most `limit` failures per key within a sliding window of `window_seconds`."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError(
                f"a throttle needs limit >= 1 and window_seconds > 0; got {limit}, {window_seconds}"
            )
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[Key, deque[float]] = OrderedDict()

    def blocked(self, keys: Iterable[Key]) -> Blocked | None:
        """The key that blocks an attempt for longest, or None when it may go ahead."""
        now = self._clock()
        worst: Blocked | None = None
        with self._lock:
            for key in keys:
                wait = self._wait(key, now)
                if wait > 0 and (worst is None or wait > worst.retry_after):
                    worst = Blocked(key, wait)
        return worst

    def failed(self, keys: Iterable[Key]) -> list[Blocked]:
        """Count one failed attempt against each key; the keys it blocked (those that
        reached the limit with it: the moment worth an audit record)."""
        now = self._clock()
        newly: list[Blocked] = []
        with self._lock:
            for key in keys:
                times = self._failures.pop(key, None) or deque(maxlen=self.limit)
                times.append(now)
                self._failures[key] = times  # most recently failed last
                wait = self._wait(key, now)
                if wait > 0:
                    newly.append(Blocked(key, wait))
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        return newly

    def _wait(self, key: Key, now: float) -> float:
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        return times[0] + self.window_seconds - now if len(times) >= self.limit else 0.0
