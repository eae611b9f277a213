"""Errors raised by the core that are not provider errors."""


class MarketAssetsError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(MarketAssetsError, ValueError):
    """A configuration file or value is invalid: the message names the file, key and reason."""


class InvalidSymbolError(MarketAssetsError, ValueError):
    """A symbol is not safe to use in a path or a SQL statement."""


class StoreError(MarketAssetsError):
    """A store could not read or write a partition."""
