"""Completeness against the exchange calendar: missing sessions and missing intraday bars.

A gap is reported as a [start, end) range (UTC timestamps for intraday bars, session dates
for a missing session) with the number of bars it lacks. A trading halt is such a gap:
these rules report it and never fill it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from market_assets.core.rules.base import Findings, RuleContext, partitions_frame
from market_assets.core.rules.frame import (
    column,
    epoch_us,
    row_session_bounds,
    session_schedule_frame,
    session_segments,
)
from market_assets.core.rules.ohlc import BAR_MICROSECONDS
from market_assets.core.rules.thresholds import MissingBarsSettings, MissingSessionsSettings
from market_assets.core.schemas import TS_DTYPE

GAP_SCHEMA = {
    "symbol": pl.String(),
    "session": pl.Date(),
    "rows": pl.Int64(),
    "start": TS_DTYPE,
    "end": TS_DTYPE,
}


def missing_sessions(
    frame: pl.DataFrame, context: RuleContext, settings: MissingSessionsSettings
) -> Findings:
    """Judged (symbol, session) partitions that hold no bars at all.

    `rows` is the number of bars the session should have had (1 for daily bars). The gap is
    the session's [open, close) for intraday bars and [session, next day) 00:00 UTC for daily.
    """
    starts = session_segments(frame)[:-1]
    starts = starts[column(frame, "judged")[starts]]
    present = set(
        zip(
            frame.get_column("symbol").gather(starts).to_list(),
            frame.get_column("session").gather(starts).to_list(),
            strict=True,
        )
    )
    if present.issuperset(context.partitions):
        return Findings.none()
    wanted = partitions_frame(context.partitions).lazy().unique(maintain_order=True)
    present = frame.lazy().filter(pl.col("judged")).select("symbol", "session")
    missing = wanted.join(
        present, on=["symbol", "session"], how="anti", maintain_order="left"
    ).collect()
    if missing.is_empty():
        return Findings.none()
    if not context.intraday:
        start = pl.col("session").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return Findings(
            missing.select(
                "symbol",
                "session",
                pl.lit(1, dtype=pl.Int64).alias("rows"),
                start.alias("start"),
                (start + pl.duration(days=1)).alias("end"),
            )
        )
    schedule = session_schedule_frame(context, missing.get_column("session"))
    step = BAR_MICROSECONDS[context.granularity]
    return Findings(
        missing.join(schedule, on="session", how="left", maintain_order="left").select(
            "symbol",
            "session",
            _bars_between("session_open", "session_close", step).alias("rows"),
            pl.col("session_open").alias("start"),
            pl.col("session_close").alias("end"),
        )
    )


def _bars_between(start: str, end: str, step: int) -> pl.Expr:
    """Bars of width `step` (microseconds) needed to cover [start, end): a ceiling division."""
    span = pl.col(end).dt.epoch("us") - pl.col(start).dt.epoch("us")
    return ((span + step - 1) // step).cast(pl.Int64)


def missing_bars(
    frame: pl.DataFrame, context: RuleContext, settings: MissingBarsSettings
) -> Findings:
    """Intraday bars missing from sessions that have some bars: 390 one-minute bars on a
    regular session, fewer on an early close (78 five-minute, 26 fifteen-minute, 7 hourly).

    Only bars inside the regular session count (others are `session_hours`' business). A
    partition fails when it lacks more than `max_missing_bars`; each gap is one finding.
    A cheap pass over every bar first finds the sessions that may have a gap (a step
    between consecutive bars other than one bar width, or a first or last bar off the open
    or the last bar slot); only those sessions are examined bar by bar.
    """
    step = BAR_MICROSECONDS[context.granularity]
    if _on_the_grid(frame, context, step):
        return Findings.none()
    suspects = _suspect_sessions(frame, context, step)
    if suspects.is_empty():
        return Findings.none()
    judged = frame.join(suspects, on=["symbol", "session"], how="semi", maintain_order="left")
    gaps = _gaps(judged, session_schedule_frame(context, suspects.get_column("session")), step)
    if settings.max_missing_bars > 0 and not gaps.is_empty():
        totals = gaps.group_by("symbol", "session").agg(pl.col("rows").sum().alias("__total"))
        gaps = (
            gaps.join(totals, on=["symbol", "session"], how="left")
            .filter(pl.col("__total") > settings.max_missing_bars)
            .drop("__total")
        )
    return Findings(gaps.sort("symbol", "start"))


def _on_the_grid(frame: pl.DataFrame, context: RuleContext, step: int) -> bool:
    """Every judged session runs from its open to its last bar slot in steps of one bar
    (numpy over the rows, one lookup per session): then nothing is missing."""
    ts = epoch_us(frame)
    judged = column(frame, "judged")
    segments = session_segments(frame)
    open_, close = row_session_bounds(frame, context, segments)
    starts, ends = segments[:-1], segments[1:] - 1
    inner = ~column(frame, "new_session")[1:] & judged[1:]
    if not (np.diff(ts)[inner] == step).all():
        return False
    last_slot = open_ + ((close - open_ + step - 1) // step - 1) * step
    first_ok = (ts[starts] == open_[starts]) & (open_[starts] >= 0)
    last_ok = ts[ends] == last_slot[ends]
    return bool((first_ok & last_ok)[judged[starts]].all())


def _suspect_sessions(frame: pl.DataFrame, context: RuleContext, step: int) -> pl.DataFrame:
    """(symbol, session) of judged sessions whose bars may not be exactly the regular grid."""
    ts_us = pl.col("ts").dt.epoch("us")
    last = pl.col("new_session").shift(-1).fill_null(True)
    inner = pl.col("judged") & ~pl.col("new_session")
    jumps = (
        frame.lazy()
        .filter(inner & ((ts_us - pl.col("prev_ts").dt.epoch("us")) != step))
        .select("symbol", "session")
    )
    edges = (
        frame.lazy()
        .with_columns(last.alias("__last"))
        .filter(pl.col("judged") & (pl.col("new_session") | pl.col("__last")))
        .group_by("symbol", "session")
        .agg(ts_us.min().alias("__first_us"), ts_us.max().alias("__last_us"))
    )
    schedule = session_schedule_frame(context, frame.get_column("session")).lazy()
    open_us = pl.col("session_open").dt.epoch("us")
    close_us = pl.col("session_close").dt.epoch("us")
    expected_last = open_us + ((close_us - open_us + step - 1) // step - 1) * step
    off_edges = (
        edges.join(schedule, on="session", how="left")
        .filter(
            (pl.col("__first_us") != open_us).fill_null(True)
            | (pl.col("__last_us") != expected_last).fill_null(True)
        )
        .select("symbol", "session")
    )
    return pl.concat([jumps, off_edges]).unique().collect()


def _gaps(judged: pl.DataFrame, schedule: pl.DataFrame, step: int) -> pl.DataFrame:
    """Every [start, end) run of missing bars in the sessions of `judged` (bar by bar)."""
    inside = (
        judged.filter(pl.col("judged"))
        .select("symbol", "session", "ts")
        .join(schedule, on="session", how="inner", maintain_order="left")
        .filter((pl.col("ts") >= pl.col("session_open")) & (pl.col("ts") < pl.col("session_close")))
        .unique(["symbol", "ts"], maintain_order=True)
    )
    first_of_session = (
        (pl.col("symbol") != pl.col("symbol").shift(1))
        | (pl.col("session") != pl.col("session").shift(1))
    ).fill_null(True)
    last_of_session = first_of_session.shift(-1).fill_null(True)
    ts_us = pl.col("ts").dt.epoch("us")
    open_us = pl.col("session_open").dt.epoch("us")
    close_us = pl.col("session_close").dt.epoch("us")
    expected_last = open_us + ((close_us - open_us + step - 1) // step - 1) * step
    marked = inside.with_columns(
        first_of_session.alias("__first"),
        last_of_session.alias("__last"),
        pl.col("ts").shift(1).alias("__prev_ts"),
    )
    between = marked.filter(~pl.col("__first")).select(
        "symbol",
        "session",
        ((ts_us - pl.col("__prev_ts").dt.epoch("us")) // step - 1).alias("rows"),
        (pl.col("__prev_ts") + pl.duration(microseconds=step)).alias("start"),
        pl.col("ts").alias("end"),
    )
    leading = marked.filter(pl.col("__first")).select(
        "symbol",
        "session",
        ((ts_us - open_us) // step).alias("rows"),
        pl.col("session_open").alias("start"),
        pl.col("ts").alias("end"),
    )
    trailing = marked.filter(pl.col("__last")).select(
        "symbol",
        "session",
        ((expected_last - ts_us) // step).alias("rows"),
        (pl.col("ts") + pl.duration(microseconds=step)).alias("start"),
        pl.col("session_close").alias("end"),
    )
    present = judged.filter(pl.col("judged")).select("symbol", "session").unique()
    empty_sessions = (
        present.join(
            inside.select("symbol", "session").unique(), on=["symbol", "session"], how="anti"
        )
        .join(schedule, on="session", how="inner")
        .select(
            "symbol",
            "session",
            _bars_between("session_open", "session_close", step).alias("rows"),
            pl.col("session_open").alias("start"),
            pl.col("session_close").alias("end"),
        )
    )
    return pl.concat(
        [part.cast(GAP_SCHEMA) for part in (leading, between, trailing, empty_sessions)]
    ).filter(pl.col("rows") > 0)
