"""Databento client errors translated into our provider error hierarchy.

The official client raises `BentoClientError` (HTTP 4xx) and `BentoServerError` (HTTP 5xx),
both carrying `http_status`, the vendor's message and the response headers; transport
failures surface as `requests` exceptions, an interrupted download as a `BentoError`, and
bytes that are not DBN as `BentoError`, `DBNError`, `ZstdError` or `ValueError`. Each becomes
one of our errors, so the registry knows whether to retry, wait or fail over. Messages name the
environment variable that holds the key, never the key itself.
"""

from __future__ import annotations

from typing import Any

import requests
from databento.common.error import BentoClientError, BentoError, BentoServerError
from databento_dbn import DBNError
from zstandard import ZstdError

from market_assets.core.providers.base import (
    AuthError,
    BadRequestError,
    ProviderError,
    RateLimitedError,
    TransientError,
)

VENDOR = "databento"
MASK = "***"

PAYLOAD_ERRORS: tuple[type[BaseException], ...] = (BentoError, DBNError, ZstdError, ValueError)
"""What the client and databento_dbn raise for bytes that are not valid DBN: unknown
compression, a cut metadata header, a broken zstd frame, an empty body."""

STREAMING_FAILURE = "Error streaming response"  # the client's text for a download cut short


class DatabentoCostError(BadRequestError):
    """The request would cost more than the provider's `max_cost_usd`."""


class DatabentoPayloadError(ProviderError):
    """The vendor answered (or a file holds) bytes that are not the DBN data asked for.

    Permanent: a truncated or foreign payload does not become valid by asking again.
    """


def retry_after_seconds(headers: Any) -> float | None:
    """The `Retry-After` header in seconds, or None when absent or not a number."""
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except (TypeError, ValueError):
        return None


def translate(
    error: BaseException,
    *,
    key: str | None,
    api_key_env: str,
    origin: str,
    context: dict[str, Any],
) -> ProviderError | None:
    """The ProviderError for a failed Databento call or decode; None if it is neither.

    `origin` names what was read (the request or a file); `context` holds the ProviderError
    keywords (vendor, dataset, symbols, start, end).

    - 401/403 -> AuthError naming `api_key_env`
    - 429 -> RateLimitedError with the vendor's Retry-After
    - 408, 5xx, timeouts, connection errors, cut downloads -> TransientError
    - other 4xx -> BadRequestError with the vendor's reason
    - bytes that are not valid DBN -> DatabentoPayloadError
    """
    if isinstance(error, ProviderError):
        return error
    detail = _masked(str(error), key)
    if isinstance(error, BentoClientError):
        return _client_error(error.http_status, error.headers, detail, api_key_env, context)
    if isinstance(error, BentoServerError):
        return TransientError(
            f"Databento server error (HTTP {error.http_status}): {detail}", **context
        )
    if isinstance(error, requests.RequestException):
        reason = f"Databento unreachable ({type(error).__name__}): {detail}"
        return TransientError(reason, **context)
    if isinstance(error, BentoError) and detail.startswith(STREAMING_FAILURE):
        return TransientError(f"Databento download was cut short: {detail}", **context)
    if isinstance(error, PAYLOAD_ERRORS):
        return DatabentoPayloadError(
            f"{origin} is not valid DBN data ({type(error).__name__}: {detail}); "
            "download it again, or report it to Databento with the request",
            **context,
        )
    return None


def _client_error(
    status: int, headers: Any, detail: str, api_key_env: str, context: dict[str, Any]
) -> ProviderError:
    if status in (401, 403):
        return AuthError(
            f"Databento rejected the API key in ${api_key_env} (HTTP {status}): {detail}. "
            f"Check the key in ${api_key_env} and that it may use this dataset",
            **context,
        )
    if status == 429:
        return RateLimitedError(
            f"Databento rate limit reached (HTTP 429): {detail}",
            retry_after=retry_after_seconds(headers),
            **context,
        )
    if status == 408:
        return TransientError(f"Databento request timed out (HTTP 408): {detail}", **context)
    return BadRequestError(f"Databento refused the request (HTTP {status}): {detail}", **context)


def _masked(text: str, key: str | None) -> str:
    return text.replace(key, MASK) if key else text
