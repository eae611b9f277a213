"""RequestLimiter: pyrate-limiter's rolling window on a fake clock, never the wall clock."""

from __future__ import annotations

import pytest

from market_assets.core.providers.ratelimit import RequestLimiter, rate_for


class FakeClock:
    """Seconds that advance only through `sleep`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("per_minute", "limit", "window_ms"),
    [(100, 100, 60_000), (1, 1, 60_000), (0.5, 1, 120_000), (2.5, 2, 48_000), (1.99, 1, 30_151)],
)
def test_rate_for_never_allows_more_than_the_configured_requests_per_minute(
    per_minute, limit, window_ms
):
    rate = rate_for(per_minute)

    assert (rate.limit, rate.interval) == (limit, window_ms)
    assert rate.limit / rate.interval * 60_000 <= per_minute


@pytest.mark.parametrize("per_minute", [0, -1, float("inf"), float("nan")])
def test_rate_for_rejects_a_rate_that_is_not_a_positive_number(per_minute):
    with pytest.raises(ValueError, match="requests_per_minute must be a positive number"):
        rate_for(per_minute)


def test_acquire_waits_until_the_oldest_request_leaves_the_window():
    clock = FakeClock()
    limiter = RequestLimiter("vendor", 3, clock=clock, sleep=clock.sleep)

    first = [limiter.acquire() for _ in range(3)]
    clock.now = 20.0
    waited = limiter.acquire()

    assert first == [0.0, 0.0, 0.0]
    assert waited == pytest.approx(40.001)
    assert clock.now == pytest.approx(60.001)


def test_weight_above_the_limit_is_paid_in_window_sized_parts():
    clock = FakeClock()
    limiter = RequestLimiter("vendor", 2, clock=clock, sleep=clock.sleep)

    waited = limiter.acquire(5)

    assert waited == pytest.approx(120.002)  # 2 now, 2 after a minute, 1 after two


def test_owed_requests_are_paid_by_the_next_acquire():
    clock = FakeClock()
    limiter = RequestLimiter("vendor", 2, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.owe(1)

    assert limiter.acquire() == pytest.approx(60.001)


def test_fractional_rate_spaces_single_requests():
    clock = FakeClock()
    limiter = RequestLimiter("vendor", 0.5, clock=clock, sleep=clock.sleep)

    waits = [limiter.acquire() for _ in range(3)]

    assert waits == pytest.approx([0.0, 120.001, 120.001])
