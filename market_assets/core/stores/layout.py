"""Where each dataset's partitions live, in the lake and in time.

A partition is one (symbol, session). Files group partitions: daily bars keep one file per
symbol-year, intraday bars and ticks (trades, tbbo, statistics; placed by `ts_event`) one file
per symbol-session. Paths are built from this layout, never globbed, because listing
thousands of files dominates query time.

Bar datasets are compacted: once a period has closed, its sessions move from those small
files into one larger file per span, beside them in the same folder tree. An intraday month
closes into `{folder}/{symbol}/{YYYY}/{MM}/{filename}`, daily years close into
`{folder}/{symbol}/{filename}` (every closed year of the symbol). The compacted file records in
its Parquet metadata the last session it holds (`covers_through`); it is the only home of
every session of its span up to that date, and the small files hold the sessions after it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

import polars as pl

from market_assets.core.symbols import validate_symbol

EXCHANGE_TZ = ZoneInfo("America/New_York")

FileUnit = Literal["day", "year", "symbol"]  # symbol: one file holds every session
# A period counts as closed this many days after its last day: late corrections of the last
# sessions still go to the small files, and a writer that chose a small file a moment before
# the period closed never races the compaction of that period.
CLOSE_GRACE_DAYS = 5


@dataclass(frozen=True)
class DatasetLayout:
    """Folder, file unit and time semantics of one dataset."""

    dataset: str
    folder: str
    file_unit: FileUnit
    intraday: bool
    filename: str = "ticks.parquet"
    session_column: str | None = None  # rows carry their session instead of deriving it
    time_column: str = "ts"  # the timestamp that places a row in its session (ticks: ts_event)
    compacted: bool = False  # closed periods move into one file per span (see module doc)

    def relative_path(self, symbol: str, session: dt.date) -> str:
        """Path (relative to the lake root) of the file holding (symbol, session)."""
        validate_symbol(symbol)
        if self.file_unit == "symbol":
            return f"{self.folder}/{symbol}/{self.filename}"
        if self.file_unit == "year":
            return f"{self.folder}/{symbol}/{session:%Y}/{self.filename}"
        return f"{self.folder}/{symbol}/{session:%Y}/{session:%m}/{session:%d}/{self.filename}"

    def symbol_folder(self, symbol: str) -> str:
        """The folder under which every file of `symbol` lives."""
        validate_symbol(symbol)
        return f"{self.folder}/{symbol}"

    def file_key(self, session: dt.date) -> tuple[int, ...]:
        """Identity of the file a session falls in, for grouping partitions by file."""
        if self.file_unit == "symbol":
            return ()
        if self.file_unit == "year":
            return (session.year,)
        return (session.year, session.month, session.day)

    def span_key(self, session: dt.date) -> tuple[int, ...]:
        """Identity of the compaction span a session falls in (a month, or every year)."""
        return (session.year, session.month) if self.file_unit == "day" else ()

    def compacted_path(self, symbol: str, session: dt.date) -> str:
        """Path of the compacted file of the span holding (symbol, session)."""
        validate_symbol(symbol)
        if self.file_unit == "day":
            return f"{self.folder}/{symbol}/{session:%Y}/{session:%m}/{self.filename}"
        return f"{self.folder}/{symbol}/{self.filename}"

    def span_folder(self, symbol: str, session: dt.date) -> str:
        """Folder whose sub-folders are the small files' folders of the span (for compaction)."""
        validate_symbol(symbol)
        if self.file_unit == "day":
            return f"{self.folder}/{symbol}/{session:%Y}/{session:%m}"
        return f"{self.folder}/{symbol}"

    def session_of_folder(self, span_session: dt.date, name: str) -> dt.date | None:
        """The session (year files: Jan 1) a sub-folder of the span folder stands for."""
        if not name.isdigit():
            return None
        try:
            if self.file_unit == "day":
                return span_session.replace(day=int(name)) if len(name) == 2 else None
            return dt.date(int(name), 1, 1) if len(name) == 4 else None
        except ValueError:
            return None

    def closed_through(self, session: dt.date, today: dt.date) -> dt.date | None:
        """Last day of the span of `session` that may be compacted on `today` (None: none).

        A month closes CLOSE_GRACE_DAYS after its last day; daily years close the same way,
        and the span of daily bars holds every closed year.
        """
        grace = dt.timedelta(days=CLOSE_GRACE_DAYS)
        if self.file_unit == "day":
            next_month = (session.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            return next_month - dt.timedelta(days=1) if next_month + grace <= today else None
        year = (today - grace).year - 1
        return dt.date(year, 12, 31) if year >= 1 else None

    def session_bounds(self, session: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """UTC [start, end) of everything stored for one session.

        Daily bars sit at the session date 00:00 UTC. Intraday bars may fall anywhere in the
        exchange's local calendar day (extended hours included), so the bounds are local
        midnight to local midnight, converted to UTC.
        """
        if not self.intraday:
            start = dt.datetime.combine(session, dt.time(0), tzinfo=dt.UTC)
            return start, start + dt.timedelta(days=1)
        start_local = dt.datetime.combine(session, dt.time(0), tzinfo=EXCHANGE_TZ)
        end_local = dt.datetime.combine(
            session + dt.timedelta(days=1), dt.time(0), tzinfo=EXCHANGE_TZ
        )
        return start_local.astimezone(dt.UTC), end_local.astimezone(dt.UTC)

    def session_expr(self, column: str | None = None) -> pl.Expr:
        """Polars expression giving the session (a date) each row belongs to.

        `column` defaults to the layout's `time_column`.
        """
        column = column or self.time_column
        if self.session_column:
            return pl.col(self.session_column)
        if not self.intraday:
            return pl.col(column).dt.date()
        return pl.col(column).dt.convert_time_zone(str(EXCHANGE_TZ)).dt.date()


_LAYOUTS: dict[str, DatasetLayout] = {
    "bars_1d": DatasetLayout("bars_1d", "ticks/daily", "year", intraday=False, compacted=True),
    "bars_1m": DatasetLayout("bars_1m", "ticks/minute", "day", intraday=True, compacted=True),
    "bars_5m": DatasetLayout("bars_5m", "ticks/5minute", "day", intraday=True, compacted=True),
    "bars_15m": DatasetLayout("bars_15m", "ticks/15minute", "day", intraday=True, compacted=True),
    "bars_1h": DatasetLayout("bars_1h", "ticks/hour", "day", intraday=True, compacted=True),
    "trades": DatasetLayout(
        "trades", "ticks/trades", "day", True, "trades.parquet", time_column="ts_event"
    ),
    "tbbo": DatasetLayout(
        "tbbo", "ticks/tbbo", "day", True, "tbbo.parquet", time_column="ts_event"
    ),
    "statistics": DatasetLayout(
        "statistics", "ticks/statistics", "day", True, "statistics.parquet", time_column="ts_event"
    ),
}

# Session x symbol datasets that are not PostgreSQL bar tables (schemas.TABLE_SCHEMAS).
# Corporate actions keep one file per symbol: a partition is (symbol, ex_date), and every
# partition of a symbol shares that file, so writers merge under the lake's lock.
_TABLE_LAYOUTS: dict[str, DatasetLayout] = {
    "corporate_actions": DatasetLayout(
        "corporate_actions",
        "corporate_actions",
        "symbol",
        intraday=False,
        filename="actions.parquet",
        session_column="ex_date",
        time_column="ex_date",
    ),
    "bars_1d_adjusted": DatasetLayout(
        "bars_1d_adjusted", "ticks/daily_adjusted", "year", intraday=False, compacted=True
    ),
    "indicators": DatasetLayout(
        "indicators",
        "indicators/daily",
        "year",
        intraday=False,
        filename="indicators.parquet",
        compacted=True,
    ),
    # SEC facts sit in the year file of their partition session (the first session on or
    # after `filed`), which is the column reads select on.
    "fundamentals": DatasetLayout(
        "fundamentals",
        "fundamental",
        "year",
        intraday=False,
        filename="facts.parquet",
        session_column="session",
        time_column="session",
    ),
    "fundamental_ratios": DatasetLayout(
        "fundamental_ratios",
        "fundamental_ratios",
        "year",
        intraday=False,
        filename="ratios.parquet",
    ),
    # One chain file per underlying and session (every snapshot of the session, every
    # expiration): options/{symbol}/{YYYY}/{MM}/{DD}/chain.parquet. Rows carry their session.
    "options_chains": DatasetLayout(
        "options_chains",
        "options",
        "day",
        intraday=True,
        filename="chain.parquet",
        session_column="session",
    ),
}

GRANULARITY_DATASET = {
    "1m": "bars_1m",
    "5m": "bars_5m",
    "15m": "bars_15m",
    "1h": "bars_1h",
    "1d": "bars_1d",
}


def quarantine_layout(dataset: str) -> DatasetLayout:
    """Quarantined rows of a dataset: same file unit, under quarantine/{dataset}/.

    A quarantined row is filed under the partition it was quarantined from (its `session`
    column), not under its own timestamp, which may be null or belong to no partition.
    """
    base = layout_for(dataset)
    return DatasetLayout(
        f"quarantine_{dataset}",
        f"quarantine/{dataset}",
        base.file_unit,
        base.intraday,
        filename="quarantine.parquet",
        session_column="session",
        time_column=base.time_column,
        compacted=base.compacted,
    )


def layout_for(dataset: str) -> DatasetLayout:
    """Layout of a known dataset; raises ValueError naming the dataset otherwise."""
    if dataset.startswith("quarantine_"):
        return quarantine_layout(dataset.removeprefix("quarantine_"))
    try:
        return _LAYOUTS.get(dataset) or _TABLE_LAYOUTS[dataset]
    except KeyError:
        raise ValueError(
            f"unknown dataset {dataset!r}; known datasets: {sorted({**_LAYOUTS, **_TABLE_LAYOUTS})}"
        ) from None


def known_datasets() -> list[str]:
    return sorted(_LAYOUTS)
