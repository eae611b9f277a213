"""Prepare bars once for every rule: session, previous close, returns and jump candidates.

Rules then read plain columns instead of each recomputing a time-zone conversion or a
shifted close. The prepared frame holds the judged bars plus the `history` bars before them
(`judged` is False there), sorted by (symbol, ts) with `symbol` flagged as sorted so that
per-symbol window expressions run as contiguous segments.

Columns added:
- `judged`: the row belongs to a partition being judged (False for lookback history).
- `session`: the exchange session date (New York date for intraday bars, UTC date for 1d).
- `row`: position in the prepared frame (to find neighbours of a few candidate rows).
- `out_of_order`: the row's ts is earlier than the previous row of its symbol, in the
  order the rows were given; `duplicate`: the row repeats the previous row's (symbol, ts).
- `new_symbol`, `new_session`: first row of its symbol / of its session.
- `prev_close`, `prev_ts`: the previous row of the same symbol (for the first row of a
  symbol, `previous_close` from the context when given).
- `gap` = ln(open / prev_close), `ret` = ln(close / prev_close).
- `split_ratio`: the split ratio R (price divided by R: 2.0 for 2:1, 0.5 for 1:2) that the
  open gap matches within tolerance (and the close keeps), else null. For the first bar of
  an intraday session the close alone may carry the jump (a first bar that spans the split:
  an extended-hours print at the old price, then the new one), so its close against the
  previous session's last close is matched too. `unit_step`: +1 / -1
  when close jumped by about the unit factor (100x) up / down, else 0.
- `eligible`: the return counts for robust statistics (not a split-sized or unit jump, and
  not overnight for intraday bars).
"""

from __future__ import annotations

import datetime as dt
import math
from functools import lru_cache

import numpy as np
import polars as pl

from market_assets.core.rules.base import RuleContext
from market_assets.core.rules.thresholds import BarRuleSettings
from market_assets.core.schemas import BAR_SCHEMA
from market_assets.core.stores.layout import EXCHANGE_TZ

SORTED_KEY = ("symbol", "ts")
CANONICAL = pl.Schema(BAR_SCHEMA)


def session_of(ts: pl.Series, intraday: bool) -> pl.Series:
    """Session date of each timestamp: the New York date for intraday bars, else the UTC date.

    New York is UTC-4 or UTC-5, so both candidate dates agree except between 04:00 and
    05:00 UTC (around New York midnight); only those rows pay for an exact time-zone
    conversion, which is ~30x slower than the arithmetic.
    """
    frame = ts.alias("ts").to_frame().with_columns(session_expr(intraday))
    return _exact_sessions(frame).get_column("session")


def session_expr(intraday: bool) -> pl.Expr:
    """`session` from `ts`; null for the rare intraday rows `_exact_sessions` must fix."""
    if not intraday:
        return pl.col("ts").dt.date().alias("session")
    four = pl.col("ts").dt.offset_by("-4h").dt.date()
    five = pl.col("ts").dt.offset_by("-5h").dt.date()
    return pl.when(four == five).then(four).alias("session")


def _exact_sessions(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill the sessions `session_expr` left null by converting those rows' time zone."""
    missing = frame.select(pl.col("session").is_null() & pl.col("ts").is_not_null()).to_series()
    if not missing.any():
        return frame
    positions = missing.arg_true()
    exact = frame.get_column("ts").gather(positions).dt.convert_time_zone(str(EXCHANGE_TZ))
    sessions = frame.get_column("session").scatter(positions, exact.dt.date())
    return frame.with_columns(sessions)


def prepare_bars(
    bars: pl.DataFrame, context: RuleContext, settings: BarRuleSettings
) -> pl.DataFrame:
    """The judged `bars` and the context's history, with the columns rules share.

    Everything is computed in one query (a handful of polars calls per check, whatever
    the number of rows); only the rare rows near New York midnight and the rare gaps as
    large as a split are revisited.
    """
    judged = _canonical(bars)
    in_order = _is_sorted(judged)
    parts = [
        judged.with_columns(
            pl.lit(True).alias("judged"),
            pl.lit(False).alias("out_of_order") if in_order else _out_of_order(),
        )
    ]
    if context.history is not None and not context.history.is_empty():
        history = _canonical(context.history).filter(
            pl.col("symbol").is_in(judged.get_column("symbol").unique().implode())
        )
        parts.insert(
            0,
            history.with_columns(
                pl.lit(False).alias("judged"), pl.lit(False).alias("out_of_order")
            ),
        )
    frame = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
    if len(parts) > 1 or not in_order:
        frame = frame.sort(SORTED_KEY, maintain_order=True)
    prepared = _shared_columns(frame, session_expr(context.intraday), context, settings)
    if context.intraday and prepared.get_column("session").null_count():
        exact = _exact_sessions(frame.with_columns(session_expr(True))).get_column("session")
        prepared = _shared_columns(frame, pl.lit(exact), context, settings)
    return _with_split_ratio(prepared, settings, context.intraday)


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.schema == CANONICAL:
        return frame
    required = ("ts", "symbol", "open", "high", "low", "close", "volume")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"bars to check are missing column(s) {missing}")
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in BAR_SCHEMA.items()
    )


def _is_sorted(frame: pl.DataFrame) -> bool:
    """Whether rows are ordered by (symbol, ts), ties allowed (a cheap adjacent comparison)."""
    if frame.height < 2:
        return True
    symbol, ts = pl.col("symbol"), pl.col("ts")
    after = (symbol > symbol.shift(-1)) | ((symbol == symbol.shift(-1)) & (ts > ts.shift(-1)))
    return not frame.select(after.fill_null(False).any()).item()


def _out_of_order() -> pl.Expr:
    """A row whose ts is earlier than the previous row of its symbol, in the given order."""
    return (
        (pl.col("ts") < pl.col("ts").shift(1).over("symbol")).fill_null(False).alias("out_of_order")
    )


def _shared_columns(
    frame: pl.DataFrame, session: pl.Expr, context: RuleContext, settings: BarRuleSettings
) -> pl.DataFrame:
    """`frame` (sorted by symbol, ts) with every prepared column but `split_ratio`."""
    symbol, ts, close = pl.col("symbol"), pl.col("ts"), pl.col("close")
    new_symbol = pl.col("new_symbol")
    prepared = (
        frame.lazy()
        .with_columns(
            symbol.set_sorted(),
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
            session.alias("session"),
            (symbol != symbol.shift(1)).fill_null(True).alias("new_symbol"),
            ((symbol == symbol.shift(1)) & (ts == ts.shift(1)))
            .fill_null(False)
            .alias("__same_key"),
        )
        .with_columns(
            (pl.col("__same_key") & pl.col("judged")).alias("duplicate"),
            (new_symbol | (pl.col("session") != pl.col("session").shift(1)))
            .fill_null(True)
            .alias("new_session"),
            pl.when(~new_symbol).then(close.shift(1)).alias("prev_close"),
            pl.when(~new_symbol).then(ts.shift(1)).alias("prev_ts"),
        )
        .drop("__same_key")
    )
    previous = context.previous_close
    if previous is not None and not previous.is_empty():
        known = previous.select(
            pl.col("symbol").cast(pl.String),
            pl.col("session").cast(pl.Date),
            pl.col("previous_close").cast(pl.Float64).alias("__known_close"),
        ).unique(["symbol", "session"], keep="last")
        prepared = (
            prepared.join(known.lazy(), on=["symbol", "session"], how="left", maintain_order="left")
            .with_columns(
                symbol.set_sorted(),
                pl.when(new_symbol)
                .then(pl.col("__known_close"))
                .otherwise(pl.col("prev_close"))
                .alias("prev_close"),
            )
            .drop("__known_close")
        )
    prev_close = pl.col("prev_close")
    positive = (prev_close > 0) & (pl.col("open") > 0) & (close > 0)
    prepared = prepared.with_columns(
        pl.when(positive).then((pl.col("open") / prev_close).log()).alias("gap"),
        pl.when(positive).then((close / prev_close).log()).alias("ret"),
    ).with_columns(_unit_step(settings, pl.col("ret")).alias("unit_step"))
    eligible = pl.col("ret").is_not_null() & (pl.col("unit_step") == 0)
    if context.intraday:
        eligible = eligible & ~pl.col("new_session")
    return prepared.with_columns(eligible.fill_null(False).alias("eligible")).collect()


def _with_split_ratio(
    frame: pl.DataFrame, settings: BarRuleSettings, intraday: bool = False
) -> pl.DataFrame:
    """Add `split_ratio`; bars matching a split are not `eligible` for return statistics."""
    positions, values = _split_match(frame, settings, intraday)
    split_ratio = pl.Series("split_ratio", [None] * frame.height, dtype=pl.Float64)
    if positions.is_empty():
        return frame.with_columns(split_ratio)
    split_ratio = split_ratio.scatter(positions, values)
    matched = values.is_not_null()
    eligible = frame.get_column("eligible").scatter(
        positions.filter(matched), pl.Series([False] * int(matched.sum()), dtype=pl.Boolean)
    )
    return frame.with_columns(split_ratio, eligible)


def _split_match(
    frame: pl.DataFrame, settings: BarRuleSettings, intraday: bool = False
) -> tuple[pl.Series, pl.Series]:
    """Positions of bars with a gap as large as a split, and the ratio R each one matches
    (null when none).

    The open gap must be within `tolerance` of 1/R (open ~ prev_close / R) and the close must
    keep it (nearer prev_close / R than prev_close, in log terms): a bad opening print that
    the close does not follow is not a split (Lean's IBM bar of 2002-12-23 opens at 2x and
    closes flat), while a split day may still move (AAPL closed 10% above its 2000-06-21
    split open). Only gaps as large as the smallest ratio are matched ratio by ratio, so the
    cost stays one comparison per bar. With `intraday`, a session's first bar whose close
    (not its open) sits at prev_close / R matches too: the bar spans the split.
    """
    split = settings.split_sized_jumps
    candidates = sorted({*split.ratios, *(1.0 / r for r in split.ratios)})
    floor = min(abs(math.log(r)) for r in candidates) - split.tolerance
    gap, ret = pl.col("gap"), pl.col("ret")
    spans = pl.col("new_session") & pl.lit(intraday)
    large = (gap.abs() >= floor) | (spans & (ret.abs() >= floor))
    positions = frame.select(large.fill_null(False).arg_true()).to_series()
    if positions.is_empty():
        return positions, pl.Series(dtype=pl.Float64)
    expr = pl.lit(None, dtype=pl.Float64)
    for ratio in candidates:
        log_ratio = math.log(ratio)
        matches = ((gap + log_ratio).abs() <= split.tolerance) & (
            (ret + log_ratio).abs() < abs(log_ratio) / 2
        ) | (spans & ((ret + log_ratio).abs() <= split.tolerance))
        expr = pl.when(matches).then(pl.lit(ratio)).otherwise(expr)
    return positions, frame[positions].select(expr).to_series()


def _unit_step(settings: BarRuleSettings, ret: pl.Expr) -> pl.Expr:
    unit = settings.unit_errors
    target = math.log10(unit.factor)
    decades = ret / math.log(10.0)
    return (
        pl.when((decades - target).abs() <= unit.tolerance)
        .then(pl.lit(1))
        .when((decades + target).abs() <= unit.tolerance)
        .then(pl.lit(-1))
        .otherwise(pl.lit(0))
        .cast(pl.Int8)
    )


def session_schedule_frame(context: RuleContext, sessions: pl.Series) -> pl.DataFrame:
    """UTC open and close of the given sessions (only those that are exchange sessions)."""
    from market_assets.core.transforms.resample import session_schedule

    schedule = session_schedule(context.calendar)
    if sessions.is_empty():
        return schedule.clear()
    first, last = sessions.min(), sessions.max()
    return schedule.filter(pl.col("session").is_between(first, last))


def column(frame: pl.DataFrame, name: str, fill: float | int | None = None) -> np.ndarray:
    """A column as a numpy array (nulls filled with `fill` when given)."""
    series = frame.get_column(name)
    if fill is not None:
        series = series.fill_null(fill)
    return series.to_numpy()


def epoch_us(frame: pl.DataFrame, name: str = "ts") -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch (UTC)."""
    return frame.get_column(name).dt.epoch("us").to_numpy()


def session_segments(frame: pl.DataFrame) -> np.ndarray:
    """Start positions of each (symbol, session) run of rows, then the frame's height."""
    starts = np.flatnonzero(column(frame, "new_session"))
    return np.append(starts, frame.height)


@lru_cache(maxsize=8)
def _session_bounds(exchange: str) -> dict[dt.date, tuple[int, int]]:
    from market_assets.core.calendar import get_calendar
    from market_assets.core.transforms.resample import session_schedule

    schedule = session_schedule(get_calendar(exchange))
    return dict(
        zip(
            schedule.get_column("session").to_list(),
            zip(
                schedule.get_column("session_open").dt.epoch("us").to_list(),
                schedule.get_column("session_close").dt.epoch("us").to_list(),
                strict=True,
            ),
            strict=True,
        )
    )


def row_session_bounds(
    frame: pl.DataFrame, context: RuleContext, segments: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """UTC open and close (epoch microseconds) of every row's session; -1 where the date is
    not an exchange session."""
    bounds = _session_bounds(context.calendar.exchange)
    sessions = frame.get_column("session").gather(segments[:-1]).to_list()
    pairs = [bounds.get(day, (-1, -1)) for day in sessions]
    opens = np.array([p[0] for p in pairs], dtype=np.int64)
    closes = np.array([p[1] for p in pairs], dtype=np.int64)
    lengths = np.diff(segments)
    return np.repeat(opens, lengths), np.repeat(closes, lengths)
