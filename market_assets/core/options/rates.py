"""The risk-free rate of every chain row: a configured constant or Treasury yields by date.

A yields file is a CSV shaped like the U.S. Treasury's "Daily Treasury Par Yield Curve
Rates" download: a date column (`Date`/`date`, ISO or MM/DD/YYYY) and tenor columns named
"1 Mo", "1.5 Month", "3 Mo", "1 Yr", "10 Yr", ... with yields in percent. A row uses the
curve of the latest date on or before its session, interpolated linearly in tenor at the
contract's time to expiry (flat beyond the shortest and longest tenors). Treasury par yields
are semiannual bond-equivalent yields; they are converted to the continuously compounded
rate BSM uses: r = 2 ln(1 + y / 2). Each row records its rate and where it came from
(`rate_source`: "constant" or "file:<name>@<curve date>").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from market_assets.core.errors import ConfigError
from market_assets.core.options.settings import RateSettings

TENOR = re.compile(r"^\s*([\d.]+)\s*(mo|month|months|yr|year|years|wk|week|weeks)\s*$", re.I)
UNIT_YEARS = {"mo": 1 / 12, "mon": 1 / 12, "yr": 1.0, "yea": 1.0, "wk": 7 / 365}


def tenor_years(name: str) -> float | None:
    """Years of a Treasury tenor column name ("3 Mo" -> 0.25, "1 Yr" -> 1.0), else None."""
    match = TENOR.match(name)
    if match is None:
        return None
    unit = match[2].lower()[:3]
    return float(match[1]) * UNIT_YEARS.get(unit, UNIT_YEARS.get(unit[:2], 0.0))


def continuous_from_bond_equivalent(percent: np.ndarray) -> np.ndarray:
    """Semiannual bond-equivalent yields in percent -> continuously compounded decimals."""
    return 2.0 * np.log1p(percent / 200.0)


@dataclass(frozen=True)
class YieldCurves:
    """Treasury curves by date: `dates` ascending, `tenors` (years) and `rates` per date."""

    name: str
    dates: list[dt.date]
    tenors: list[np.ndarray]
    rates: list[np.ndarray]

    def rate(self, on: dt.date, years: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Rates at `years` from the latest curve on or before `on` (NaN when none)."""
        days = np.array(self.dates, dtype="datetime64[D]")
        index = int(np.searchsorted(days, np.datetime64(on, "D"), "right")) - 1
        if index < 0:
            return np.full(years.shape, np.nan), None
        tenors, rates = self.tenors[index], self.rates[index]
        return np.interp(years, tenors, rates), f"file:{self.name}@{self.dates[index]}"


def read_yield_curves(path: Path) -> YieldCurves:
    """Parse a Treasury yields CSV; raises ConfigError naming the file and what is wrong."""
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(f"{path}: cannot read the Treasury yields file: {exc}") from exc
    date_column = next((c for c in raw.columns if c.strip().lower() == "date"), None)
    tenors = {c: tenor_years(c) for c in raw.columns if c != date_column}
    tenors = {c: years for c, years in tenors.items() if years}
    if date_column is None or not tenors:
        raise ConfigError(
            f"{path}: needs a Date column and tenor columns like '3 Mo' or '1 Yr' (yields in "
            f"percent); found columns {raw.columns}"
        )
    dates = raw.select(
        pl.coalesce(
            pl.col(date_column).str.to_date("%Y-%m-%d", strict=False),
            pl.col(date_column).str.to_date("%m/%d/%Y", strict=False),
        )
    ).to_series()
    if dates.null_count():
        bad = raw[date_column].filter(dates.is_null())[0]
        raise ConfigError(f"{path}: {date_column} value {bad!r} is not a date")
    values = raw.select(
        pl.col(c).str.strip_chars().cast(pl.Float64, strict=False) for c in tenors
    ).to_numpy()
    order = np.argsort(dates.to_numpy(), kind="stable")
    years = np.array(list(tenors.values()))
    by_tenor = np.argsort(years)
    curve_dates, curve_tenors, curve_rates = [], [], []
    for row in order:
        quoted = values[row, by_tenor]
        present = ~np.isnan(quoted)
        if not present.any():
            continue
        curve_dates.append(dates[int(row)])
        curve_tenors.append(years[by_tenor][present])
        curve_rates.append(continuous_from_bond_equivalent(quoted[present]))
    return YieldCurves(path.name, curve_dates, curve_tenors, curve_rates)


class RateSource:
    """Adds `rate` and `rate_source` columns to chain rows (needs session, time_to_expiry)."""

    def __init__(self, settings: RateSettings, config_dir: str | Path = ".") -> None:
        self.settings = settings
        self._curves: YieldCurves | None = None
        if settings.source == "file":
            path = Path(settings.file or "")
            path = path if path.is_absolute() else Path(config_dir) / path
            if not path.is_file():
                raise ConfigError(
                    f"options.yaml pricing.rate.file: {path} not found (a CSV of Treasury "
                    "yields by date)"
                )
            self._curves = read_yield_curves(path)

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self._curves is None:
            return frame.with_columns(
                pl.lit(self.settings.value, pl.Float64).alias("rate"),
                pl.lit("constant").alias("rate_source"),
            )
        rates = np.full(frame.height, np.nan)
        sources: list[str | None] = [None] * frame.height
        years = frame.get_column("time_to_expiry").fill_null(0.0).to_numpy()
        for (session,), rows in (
            frame.with_row_index("__row").select("session", "__row").group_by("session")
        ):
            index = rows.get_column("__row").to_numpy()
            values, source = self._curves.rate(session, np.maximum(years[index], 0.0))
            rates[index] = values
            for i in index:
                sources[int(i)] = source
        return frame.with_columns(
            pl.Series("rate", rates).fill_nan(None),
            pl.Series("rate_source", sources, dtype=pl.String),
        )
