"""What a bar check reads from the lake: the judged partitions and the context around them.

Checks read the STORED partitions through the lake rather than the asset's in-memory
output: they judge what users will read (after validation and quarantine), they need more
than the run's own rows (the sessions before it for robust statistics and the previous
close, the other granularity for reconciliation, corporate actions), and a check re-run on
its own (without materializing) reads the same thing.

The judged dataset's own files must read. The other datasets a rule compares with (daily bars
for intraday checks, minute bars for daily checks, corporate actions) are context: a file of
theirs that does not read is logged and listed in `unreadable_context`, and the rules that
need it judge without it, so one corrupt daily file does not fail every minute-bar run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from market_assets.core.calendar import TradingCalendar, get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.errors import StoreError
from market_assets.core.rules import CheckThresholds, RuleContext
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.layout import GRANULARITY_DATASET, layout_for
from market_assets.core.transforms.resample import session_schedule

log = logging.getLogger(__name__)

Partition = tuple[str, dt.date]
ACTIONS_DATASET = "corporate_actions"
DAILY_DATASET = GRANULARITY_DATASET["1d"]
MINUTE_DATASET = GRANULARITY_DATASET["1m"]


@dataclass(frozen=True)
class CheckInputs:
    """The judged bars, the rule context around them, and quarantine counts per partition."""

    bars: pl.DataFrame
    context: RuleContext
    quarantined: pl.DataFrame  # symbol, session, quarantined_rows
    unreadable_context: list[str] = field(default_factory=list)  # one error per unread read


def _previous_sessions(calendar: TradingCalendar, first: dt.date, count: int) -> list[dt.date]:
    if count <= 0:
        return []
    earliest = first - dt.timedelta(days=count * 2 + 10)
    return calendar.sessions(earliest, first - dt.timedelta(days=1))[-count:]


def _pairs(symbols: Sequence[str], sessions: Sequence[dt.date]) -> list[Partition]:
    return [(symbol, session) for symbol in symbols for session in sessions]


def gather_inputs(
    lake: ParquetLake,
    config: AppConfig,
    thresholds: CheckThresholds,
    dataset: str,
    granularity: str,
    partitions: Sequence[Partition],
) -> CheckInputs:
    """Read the partitions of `dataset` and everything its rules may compare them with."""
    calendar = get_calendar(config.calendar_of(dataset))
    symbols = sorted({s for s, _ in partitions})
    sessions = sorted({d for _, d in partitions})
    bars = lake.read_partitions(dataset, list(partitions))
    lookback = thresholds.lookback_sessions if granularity == "1d" else 1
    before = _previous_sessions(calendar, sessions[0], lookback)
    history = lake.read_partitions(dataset, _pairs(symbols, before)) if before else None
    quarantine = lake.read_partitions(f"quarantine_{dataset}", list(partitions))
    quarantined = quarantine.group_by("symbol", "session").agg(
        pl.len().cast(pl.Int64).alias("quarantined_rows")
    )
    daily = minute = previous_close = None
    unreadable: list[str] = []
    has_daily = DAILY_DATASET in config.datasets
    if granularity != "1d" and has_daily:
        wanted = _pairs(symbols, [*before[-1:], *sessions])
        daily = _context(lake, DAILY_DATASET, wanted, dataset, unreadable)
        if daily is not None:
            previous_close = _previous_closes(daily, calendar)
    if granularity == "1d" and MINUTE_DATASET in config.datasets:
        minute_start = config.datasets[MINUTE_DATASET].start
        recent = [(s, d) for s, d in partitions if d >= minute_start]
        minute = _context(lake, MINUTE_DATASET, recent, dataset, unreadable)
    context = RuleContext(
        dataset=dataset,
        granularity=granularity,
        partitions=tuple(partitions),
        thresholds=thresholds,
        calendar=calendar,
        history=history,
        previous_close=previous_close,
        daily=daily,
        minute=minute,
        actions=_actions(lake, config, symbols, [*before, *sessions], dataset, unreadable),
        adjusted=served_adjusted(config, bars),
    )
    return CheckInputs(
        bars=bars, context=context, quarantined=quarantined, unreadable_context=unreadable
    )


def _context(
    lake: ParquetLake,
    context_dataset: str,
    pairs: list[Partition],
    judged: str,
    unreadable: list[str],
) -> pl.DataFrame | None:
    """Rows of another dataset a rule compares with, or None when there are none or they do
    not read (the error, naming the file, is logged and added to `unreadable`)."""
    if not pairs:
        return None
    try:
        frame = lake.read_partitions(context_dataset, pairs)
    except StoreError as exc:
        log.warning("%s checks go on without %s: %s", judged, context_dataset, exc)
        unreadable.append(str(exc))
        return None
    return frame if not frame.is_empty() else None


def served_adjusted(config: AppConfig, bars: pl.DataFrame) -> bool:
    """Whether every judged bar came from a provider that serves fully adjusted prices (a
    `files` provider with `adjustment: fully_adjusted`): splits then must not show as jumps."""
    from market_assets.core.providers.files_mapping import adjustment_of

    sources = bars.get_column("source").drop_nulls().unique().to_list() if bars.height else []
    providers = config.providers.providers
    return bool(sources) and all(
        source in providers
        and providers[source].kind == "files"
        and adjustment_of(providers[source].settings) == "fully_adjusted"
        for source in sources
    )


def _previous_closes(daily: pl.DataFrame, calendar: TradingCalendar) -> pl.DataFrame:
    """(symbol, session, previous_close): each daily close keyed by the next session."""
    following = session_schedule(calendar).select(
        pl.col("session").alias("day"), pl.col("session").shift(-1).alias("session")
    )
    return (
        daily.select("symbol", pl.col("ts").dt.date().alias("day"), "close")
        .join(following, on="day", how="inner")
        .select("symbol", "session", pl.col("close").alias("previous_close"))
    )


def _actions(
    lake: ParquetLake,
    config: AppConfig,
    symbols: list[str],
    sessions: list[dt.date],
    judged: str,
    unreadable: list[str],
) -> pl.DataFrame | None:
    """Corporate actions of `symbols` on `sessions`, or None when none are stored at all
    (then split-sized jumps stay "unexplained" rather than judged against an empty list)."""
    if ACTIONS_DATASET not in config.datasets:
        return None
    layout = layout_for(ACTIONS_DATASET)
    if not any(lake.store.exists(layout.relative_path(s, sessions[0])) for s in symbols):
        return None
    try:
        return lake.read_partitions(ACTIONS_DATASET, _pairs(symbols, sessions))
    except StoreError as exc:
        log.warning("%s checks go on without %s: %s", judged, ACTIONS_DATASET, exc)
        unreadable.append(str(exc))
        return None
