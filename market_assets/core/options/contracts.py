"""OCC/OSI option symbols, parsed and built in one place.

An OSI symbol is 21 characters: the option root padded with spaces to 6, the expiration as
yymmdd, C or P, and the strike times 1,000 as 8 digits (5 whole, 3 decimal):

    AAPL  250221C00250000   AAPL call expiring 2025-02-21, strike 250.000

Vendors also send the compact form without the padding (`AAPL250221C00250000`, Alpaca and
Yahoo); both parse, and `osi_symbol` always builds the padded form, which is what is stored
in the `contract` column. After a corporate action with a non-standard deliverable, the OCC
gives the adjusted series a new root with a digit (`AAPL1`): such contracts keep their own
root and are flagged `adjusted`, never merged with the standard series.

Years are 20yy (OSI covers 2000-2099).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

import polars as pl

OptionKind = Literal["call", "put"]
KINDS: dict[str, OptionKind] = {"C": "call", "P": "put"}
ROOT_WIDTH = 6
STRIKE_SCALE = 1000
MAX_STRIKE_UNITS = 99_999_999  # 8 digits of strike x 1000
STANDARD_MULTIPLIER = 100
OSI_PATTERN = re.compile(
    r"^(?P<root>[A-Z0-9.]{1,6}) *(?P<date>\d{6})(?P<letter>[CP])(?P<units>\d{8})$"
)
ADJUSTED_ROOT = re.compile(r"[0-9]$")


@dataclass(frozen=True)
class OptionContract:
    """One listed option series, as the OSI symbol identifies it."""

    root: str
    expiration: dt.date
    kind: OptionKind
    strike: float

    @property
    def symbol(self) -> str:
        """The padded 21-character OSI symbol."""
        return osi_symbol(self.root, self.expiration, self.kind, self.strike)

    @property
    def adjusted(self) -> bool:
        """Whether the root marks an adjusted (non-standard deliverable) series."""
        return is_adjusted_root(self.root)


def is_adjusted_root(root: str) -> bool:
    """OCC adjusted series carry a digit after the root (AAPL1, AAPL2)."""
    return bool(ADJUSTED_ROOT.search(root))


def osi_symbol(root: str, expiration: dt.date, kind: str, strike: float) -> str:
    """The padded OSI symbol of a contract.

    `kind` is "call"/"put" (or "C"/"P"). Raises ValueError naming the field when the root is
    not 1-6 letters, digits or dots, the year is outside 2000-2099, or the strike is not a
    positive multiple of 0.001 below 100,000.
    """
    if not re.fullmatch(r"[A-Z0-9.]{1,6}", root or ""):
        raise ValueError(f"option root {root!r} must be 1-6 upper-case letters, digits or dots")
    if not 2000 <= expiration.year <= 2099:
        raise ValueError(f"expiration {expiration} is outside the OSI years 2000-2099")
    letter = {"call": "C", "put": "P", "C": "C", "P": "P"}.get(kind)
    if letter is None:
        raise ValueError(f"option kind {kind!r} must be 'call' or 'put'")
    units = round(strike * STRIKE_SCALE)
    if units <= 0 or units > MAX_STRIKE_UNITS or abs(units - strike * STRIKE_SCALE) > 1e-6:
        raise ValueError(
            f"strike {strike!r} must be a positive multiple of 0.001 below 100,000 for OSI"
        )
    return f"{root:<{ROOT_WIDTH}}{expiration:%y%m%d}{letter}{units:08d}"


def parse_osi(symbol: str) -> OptionContract:
    """Parse a padded or compact OSI symbol; raises ValueError naming the symbol."""
    match = OSI_PATTERN.match(symbol.strip().upper() if symbol else "")
    if match is None:
        raise ValueError(
            f"{symbol!r} is not an OSI option symbol (root, yymmdd, C or P, strike x 1000 in "
            "8 digits, e.g. 'AAPL  250221C00250000')"
        )
    date = match["date"]
    try:
        expiration = dt.date(2000 + int(date[:2]), int(date[2:4]), int(date[4:]))
    except ValueError:
        raise ValueError(f"{symbol!r}: {date} is not a date (yymmdd)") from None
    return OptionContract(
        root=match["root"],
        expiration=expiration,
        kind=KINDS[match["letter"]],
        strike=int(match["units"]) / STRIKE_SCALE,
    )


CONTRACT_COLUMNS: dict[str, pl.DataType] = {
    "contract": pl.String(),
    "root": pl.String(),
    "expiration": pl.Date(),
    "kind": pl.String(),
    "strike": pl.Float64(),
}


def parse_osi_column(symbols: pl.Series) -> pl.DataFrame:
    """Parse a column of OSI symbols (padded or compact) into the contract columns.

    Returns `contract` (padded OSI), root, expiration, kind ('call'/'put') and strike; rows
    that do not parse have every column null (the caller quarantines or counts them).
    """
    text = symbols.cast(pl.String).str.strip_chars().str.to_uppercase()
    if text.is_empty():
        return pl.DataFrame(schema=CONTRACT_COLUMNS)
    fields = text.str.extract_groups(OSI_PATTERN.pattern).struct.unnest()
    expiration = pl.concat_str(pl.lit("20"), pl.col("date")).str.to_date("%Y%m%d", strict=False)
    parsed = fields.select(
        pl.col("root"),
        expiration.alias("expiration"),
        pl.col("letter").replace_strict(KINDS, default=None, return_dtype=pl.String).alias("kind"),
        (pl.col("units").cast(pl.Int64) / STRIKE_SCALE).alias("strike"),
        pl.col("units"),
        pl.col("date"),
        pl.col("letter"),
    )
    ok = pl.col("expiration").is_not_null() & (pl.col("units").cast(pl.Int64) > 0)
    contract = pl.concat_str(
        pl.col("root").str.pad_end(ROOT_WIDTH), pl.col("date"), pl.col("letter"), pl.col("units")
    )
    return parsed.select(
        pl.when(ok).then(contract).alias("contract"),
        *(pl.when(ok).then(pl.col(name)).alias(name) for name in ("root", "expiration", "kind")),
        pl.when(ok).then(pl.col("strike")).alias("strike"),
    ).cast(CONTRACT_COLUMNS)


def adjusted_root_expr(root: str = "root") -> pl.Expr:
    """True where the root marks an adjusted series (a trailing digit)."""
    return pl.col(root).str.contains(r"[0-9]$")
