"""Pace calls to one vendor within a process: `requests_per_minute` from providers.yaml.

The registry holds one `RequestLimiter` per provider that sets `requests_per_minute` and
acquires it before every provider call (retries included), so adapters never implement
pacing themselves. The counting is pyrate-limiter's rolling window (an in-memory bucket with
its sliding-window-log policy): at most N requests in any window of 60 seconds, which is how
vendors that publish "N requests per minute" count. Fractional rates become a whole number of
requests over a longer window (0.5 per minute = 1 request per 120 s).

Waiting goes through the limiter's non-blocking `try_acquire` plus an injectable `sleep`, and
the bucket reads an injectable `clock`, so tests measure the pacing on a fake clock instead of
the wall clock. The limit holds inside one process; across runs and processes Dagster's
concurrency pools and run tag limits bound how many calls run at once (see dagster.yaml).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from pyrate_limiter import (
    Duration,
    InMemoryBucket,
    Limiter,
    Rate,
    RateItem,
    SingleBucketFactory,
)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def rate_for(requests_per_minute: float) -> Rate:
    """The pyrate-limiter Rate that never exceeds `requests_per_minute`.

    Whole rates are N per minute; fractional ones keep floor(rate) requests (at least one)
    and stretch the window, rounded up to the millisecond, so the pace is never faster than
    configured.
    """
    if not requests_per_minute > 0 or math.isinf(requests_per_minute):
        raise ValueError(
            f"requests_per_minute must be a positive number, got {requests_per_minute!r}"
        )
    if float(requests_per_minute).is_integer():
        return Rate(int(requests_per_minute), Duration.MINUTE)
    limit = max(1, math.floor(requests_per_minute))
    window_ms = math.ceil(limit * int(Duration.MINUTE) / requests_per_minute)
    return Rate(limit, window_ms)


class _ClockedBucket(InMemoryBucket):
    """pyrate-limiter's in-memory bucket reading time from our clock (seconds -> ms)."""

    def __init__(self, rate: Rate, clock: Clock) -> None:
        super().__init__([rate])
        self._read_clock = clock

    def now(self) -> int:
        return int(self._read_clock() * 1000)


class RequestLimiter:
    """At most `requests_per_minute` acquisitions in any rolling window, for one provider.

    `acquire(weight)` blocks (through `sleep`) until `weight` more requests fit and returns
    the seconds it waited. A weight above the window's limit is taken in window-sized parts,
    so a provider call that made many requests is paid for in full, never refused. `owe(n)`
    records requests a call already made beyond the one it acquired (pages, one request per
    symbol); the next `acquire` pays for them first.
    """

    def __init__(
        self,
        provider: str,
        requests_per_minute: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.provider = provider
        self.requests_per_minute = float(requests_per_minute)
        self.rate = rate_for(self.requests_per_minute)
        self._sleep = sleep
        self._owed = 0
        self._bucket = _ClockedBucket(self.rate, clock)
        # No background leak thread: expired entries are dropped on every acquire instead.
        self._limiter = Limiter(SingleBucketFactory(self._bucket, schedule_leak=False))

    def __repr__(self) -> str:
        return f"RequestLimiter({self.provider!r}, {self.requests_per_minute:g}/min)"

    def owe(self, requests: int) -> None:
        """Count `requests` already made outside `acquire`; negative counts are ignored."""
        self._owed += max(int(requests), 0)

    def acquire(self, weight: int = 1) -> float:
        """Take `weight` requests' worth of the limit (plus any owed), waiting as needed.

        Returns the seconds waited.
        """
        if weight < 0:
            raise ValueError(f"{self.provider}: weight must be >= 0, got {weight}")
        waited = 0.0
        remaining, self._owed = weight + self._owed, 0
        while remaining > 0:
            part = min(remaining, self.rate.limit)
            waited += self._acquire_part(part)
            remaining -= part
        return waited

    def _acquire_part(self, weight: int) -> float:
        waited = 0.0
        self._bucket.leak(self._bucket.now())
        while not self._limiter.try_acquire(self.provider, weight=weight, blocking=False):
            delay_ms = self._bucket.waiting(RateItem(self.provider, self._bucket.now(), weight))
            delay = max(int(delay_ms), 1) / 1000
            self._sleep(delay)
            waited += delay
        return waited
