"""Symbol validation: every symbol is checked here before a path or SQL statement is built."""

import re
from collections.abc import Iterable

from market_assets.core.errors import InvalidSymbolError

# Letters, digits and the punctuation vendors use in tickers (BRK.B, BRK-B, CL.c.0, EURUSD=X,
# ^GSPC). No slash, quote, whitespace or leading dot, so a symbol can never leave its folder.
SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9^][A-Za-z0-9.\-_=^]{0,31}$")


def validate_symbol(symbol: str) -> str:
    """Return `symbol` unchanged if it is safe, else raise InvalidSymbolError naming it."""
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol) or ".." in symbol:
        raise InvalidSymbolError(
            f"invalid symbol {symbol!r}: use 1-32 characters from A-Z, a-z, 0-9 and . - _ = ^, "
            "starting with a letter, digit or ^ (no slashes, quotes, spaces or '..')"
        )
    return symbol


def validate_symbols(symbols: Iterable[str]) -> list[str]:
    """Validate every symbol; return them de-duplicated in first-seen order."""
    seen: dict[str, None] = {}
    for symbol in symbols:
        seen[validate_symbol(symbol)] = None
    return list(seen)
