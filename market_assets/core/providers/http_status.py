"""Map a vendor's HTTP status and rate-limit headers onto the provider error hierarchy.

Shared by the adapters whose client library hands back an HTTP status (alpaca-py's APIError,
the responses yfinance's session received):

    401, 403        AuthError            rejected credentials; retrying will not help
    400, 404, 422   BadRequestError      the vendor refused the request's arguments
    429             RateLimitedError     wait `Retry-After` (or until `X-RateLimit-Reset`)
    5xx             TransientError       retried with backoff by the registry
    other 4xx       PermanentError
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping
from typing import Any

from market_assets.core.providers.base import (
    AuthError,
    BadRequestError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
)

MAX_RETRY_AFTER_SECONDS = 24 * 3600.0  # a header asking for more than a day is not a wait


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: dt.datetime | None = None
) -> float | None:
    """Seconds to wait before the next call, from `Retry-After` or `X-RateLimit-Reset`.

    `Retry-After` is delta-seconds or an HTTP date; `X-RateLimit-Reset` (Alpaca) is the Unix
    time at which the window resets. Returns None when neither header gives a usable wait.
    Header names are matched case-insensitively; `now` defaults to the current UTC time.
    """
    if not headers:
        return None
    lowered = {str(key).lower(): str(value).strip() for key, value in headers.items()}
    now = now or dt.datetime.now(dt.UTC)
    wait = _retry_after(lowered.get("retry-after"), now)
    if wait is None:
        wait = _reset_at(lowered.get("x-ratelimit-reset"), now)
    if wait is None or not 0 <= wait <= MAX_RETRY_AFTER_SECONDS:
        return None
    return wait


def _retry_after(value: str | None, now: dt.datetime) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)


def _reset_at(value: str | None, now: dt.datetime) -> float | None:
    if not value:
        return None
    try:
        reset = float(value)
    except ValueError:
        return None
    return max(reset - now.timestamp(), 0.0)


def error_for_status(
    status: int,
    message: str,
    *,
    vendor: str,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> ProviderError:
    """The provider error for an HTTP `status`, its message prefixed with the status.

    `context` is passed to the error (dataset, symbols, start, end). A 429's wait comes from
    `headers` (see `retry_after_seconds`).
    """
    text = f"HTTP {status}: {message}"
    if status == 429:
        return RateLimitedError(
            text, retry_after=retry_after_seconds(headers), vendor=vendor, **context
        )
    if status >= 500:
        return TransientError(text, vendor=vendor, **context)
    if status in (401, 403):
        return AuthError(text, vendor=vendor, **context)
    if status in (400, 404, 422):
        return BadRequestError(text, vendor=vendor, **context)
    return PermanentError(text, vendor=vendor, **context)
