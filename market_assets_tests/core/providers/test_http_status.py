"""HTTP statuses and rate-limit headers mapped onto the provider error hierarchy."""

from __future__ import annotations

import datetime as dt

import pytest

from market_assets.core.providers.base import (
    AuthError,
    BadRequestError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from market_assets.core.providers.http_status import error_for_status, retry_after_seconds

NOW = dt.datetime(2024, 3, 7, 15, 0, tzinfo=dt.UTC)


def test_retry_after_in_seconds_is_the_wait():
    assert retry_after_seconds({"Retry-After": "7"}, NOW) == 7.0


def test_retry_after_as_an_http_date_counts_from_now():
    assert retry_after_seconds({"retry-after": "Thu, 07 Mar 2024 15:00:30 GMT"}, NOW) == 30.0


def test_alpacas_rate_limit_reset_time_counts_from_now():
    reset = str(int(NOW.timestamp()) + 12)
    assert retry_after_seconds({"X-RateLimit-Reset": reset}, NOW) == 12.0


def test_missing_or_unusable_headers_give_no_wait():
    assert retry_after_seconds(None, NOW) is None
    assert retry_after_seconds({"Retry-After": "soon"}, NOW) is None
    assert retry_after_seconds({"Retry-After": "999999"}, NOW) is None  # more than a day


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, AuthError),
        (403, AuthError),
        (400, BadRequestError),
        (404, BadRequestError),
        (422, BadRequestError),
        (409, PermanentError),
        (500, TransientError),
        (503, TransientError),
        (429, RateLimitedError),
    ],
)
def test_each_status_maps_to_its_error_type(status, error_type):
    error = error_for_status(status, "boom", vendor="alpaca", symbols=("AAPL",))

    assert type(error) is error_type
    assert str(error) == f"alpaca symbols=AAPL: HTTP {status}: boom"


def test_a_429_carries_the_vendors_wait():
    error = error_for_status(429, "slow down", vendor="alpaca", headers={"Retry-After": "3"})

    assert isinstance(error, RateLimitedError) and error.retry_after == 3.0
