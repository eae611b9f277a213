"""Errors raised by the core that are not provider errors."""

import contextlib
import os
from collections.abc import Iterator


class MarketAssetsError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(MarketAssetsError, ValueError):
    """A configuration file or value is invalid: the message names the file, key and reason."""


class InvalidSymbolError(MarketAssetsError, ValueError):
    """A symbol is not safe to use in a path or a SQL statement."""


class StoreError(MarketAssetsError):
    """A store could not read or write a partition."""


def cannot(operation: str, path: object, exc: OSError) -> str:
    """One line for an OS call that failed: `cannot <operation> <path>: <reason>`, naming the
    path the system refused when it is another one (a parent folder), and what to do when
    permission was denied."""
    reason = exc.strerror or str(exc)
    refused = exc.filename if exc.filename is not None else path
    text = f"cannot {operation} {path}: {reason}"
    if str(refused) != str(path):
        text += f" ({refused})"
    if isinstance(exc, PermissionError):
        text += f"; let the user running market-assets (uid {os.geteuid()}) access {refused}"
    return text


@contextlib.contextmanager
def reading_config(path: object) -> Iterator[None]:
    """Turn an OS error while looking at or reading a config file into one ConfigError line
    naming it (a bare PermissionError says neither which file nor what to do)."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(cannot("read config file", path, exc)) from exc
