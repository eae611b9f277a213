"""The Parquet lake: canonical frames stored as Parquet files in a local folder or on S3.

A partition is one (symbol, session); files group partitions as the layout says (one file per
symbol-year for daily bars, one per symbol-session for intraday bars), and bar datasets keep
closed periods compacted: one file per symbol-month of intraday bars, one file per symbol for
every closed year of daily bars (layout.py). A write that reaches a closed period compacts it
(folds the period's small files into the compacted file, then deletes them), so a bulk backfill
of history writes the large files directly.

Writes replace exactly the listed partitions: a file holding only listed partitions is
overwritten, a shared file is read, merged and rewritten. Each file is replaced atomically
(temp file + rename, or one PUT), and writers never lose each other's rows: on local disk every
write into one span (the compacted file and its small files) holds that span's lock (a byte of
one lock file at the root); on S3 conditional PUTs (If-Match on the ETag, retried with jitter).
A write of several files is atomic per file, not across files; readers never see a session
twice or lose one while a span is compacted, because the compacted file names the last session
it holds and is the only home of the sessions up to it.

Reads build the exact list of candidate files from the layout, the exchange calendar and the
compacted files' `covers_through`, and never list or glob a folder, because listing thousands
of files dominates query time. They first skip the symbols whose folder holds nothing (one
stat, or on S3 one LIST of one key when a symbol has several candidate files), so asking for
data that was never stored (a check's optional context, an empty quarantine) costs one probe
per symbol, not one per candidate file; writes that only empty partitions skip them the same
way. Files are stored sorted by (symbol, time) and read in that
order, so reads do not sort again.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from operator import itemgetter
from typing import Any, NoReturn, TypeVar

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.errors import StoreError
from market_assets.core.schemas import (
    BAR_SCHEMA,
    QUARANTINE_EXTRA_SCHEMA,
    conform_bars,
    stored_schema,
)
from market_assets.core.stores.layout import (
    EXCHANGE_TZ,
    DatasetLayout,
    layout_for,
    quarantine_layout,
)
from market_assets.core.stores.objectstore import (
    ObjectStore,
    Version,
    VersionConflict,
    open_store,
)
from market_assets.core.symbols import validate_symbol, validate_symbols

log = logging.getLogger(__name__)

Partition = tuple[str, date]

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**BAR_SCHEMA, **QUARANTINE_EXTRA_SCHEMA}
SORT_KEY = ("symbol", "ts")  # bars; other datasets sort by (symbol, layout.time_column)
MAX_WRITE_ATTEMPTS = 30
MAX_READ_ATTEMPTS = 10
RETRY_BASE_SECONDS = 0.02
RETRY_CAP_SECONDS = 1.0
# Files are encoded, fsynced and renamed (or PUT) by a small pool: compression and I/O release
# the GIL, so this is ~1.7x faster than one at a time on local disk and ~2x on S3.
WRITE_THREADS = 8
COVERS_THROUGH = "market_assets.covers_through"  # Parquet metadata of a compacted file
# Rows per row group: a month of 1-minute bars is one group; daily history groups ~4 years,
# so a one-session read of daily bars decodes one group per symbol.
ROW_GROUP_ROWS = {"day": 16_384, "year": 1_024, "symbol": 16_384}
# zstd level 2 encodes a month of 1-minute bars in 1.66 ms against 2.12 ms at the default 3,
# with files of the same size; level 1 makes them about 17% larger.
ZSTD_LEVEL = 2

_SESSION = "__session"
_GROUP = "__group"
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class WriteSummary:
    """What one write did: rows stored, files written and deleted, wall-clock seconds."""

    rows: int
    files_written: int
    files_deleted: int
    seconds: float


@dataclass(frozen=True)
class _FilePlan:
    """The new content of the listed partitions of one symbol in one file (or, for compacted
    layouts, one span: the compacted file and its small files)."""

    layout: DatasetLayout
    symbol: str
    path: str
    sessions: frozenset[date]
    rows: pl.DataFrame  # sorted by the layout's key, with the _SESSION column
    shared: bool

    @functools.cached_property
    def replaced(self) -> pl.Expr:
        """Rows of the listed sessions."""
        return _among(self.sessions)

    @property
    def by_last_day(self) -> dict[date, frozenset[date]]:
        """The listed sessions grouped by the last day their small file holds (a year file:
        December 31), so span decisions look at a few days, not at every session."""
        return _grouped(self.layout, self.sessions, "last_day")

    @property
    def first(self) -> date:
        """The earliest listed session."""
        return _first(self.sessions)

    def sessions_through(self, day: date | None) -> frozenset[date]:
        """The listed sessions whose small file ends on or before `day`."""
        if day is None:
            return frozenset()
        return _through(self.layout, self.sessions, day)


@dataclass(frozen=True)
class _Source:
    """One file to read: its path (for messages), what polars reads, and its version."""

    path: str
    source: str | bytes
    version: str | None


def _schema_for(layout: DatasetLayout) -> dict[str, pl.DataType]:
    if layout.dataset.startswith("quarantine_"):
        base = stored_schema(layout.dataset.removeprefix("quarantine_"))
        return QUARANTINE_SCHEMA if base is BAR_SCHEMA else {**base, **QUARANTINE_EXTRA_SCHEMA}
    return stored_schema(layout.dataset)


def _sort_key(layout: DatasetLayout) -> tuple[str, str]:
    return ("symbol", layout.time_column)


def _to_utc(value: datetime | date, name: str) -> datetime:
    """Aware UTC datetime: naive datetimes are UTC, a date is 00:00 UTC of that date."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, clock(0), tzinfo=UTC)
    raise TypeError(f"{name} must be a datetime or a date, got {type(value).__name__}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(value: datetime, dtype: pl.Datetime) -> pl.Expr:
    """An aware UTC datetime as a literal of `dtype` (built from its integer value: polars
    builds a literal from an aware datetime through a Series, about 10x slower, and a read
    makes two)."""
    delta = value - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    unit = dtype.time_unit or "us"
    ticks = micros * 1_000 if unit == "ns" else micros if unit == "us" else micros // 1_000
    return pl.lit(ticks, pl.Int64).cast(pl.Datetime(unit, dtype.time_zone or "UTC"))


def _validate_partitions(dataset: str, partitions: Iterable[Partition]) -> list[Partition]:
    """Check every (symbol, session); return them de-duplicated in first-seen order (the
    checks are _listed_partitions')."""
    items = list(partitions)
    try:
        unique = list(dict.fromkeys(items))
    except TypeError:  # an unhashable member: the per-pair loop names it
        return _validate_each(dataset, items)
    _listed_partitions(dataset, unique)
    return unique


def _validate_each(dataset: str, partitions: Iterable[Partition]) -> list[Partition]:
    seen: dict[Partition, None] = {}
    symbols: set[str] = set()
    for symbol, session in partitions:
        if symbol not in symbols:  # each distinct symbol is validated once
            validate_symbol(symbol)
            symbols.add(symbol)
        if type(session) is not date and (
            isinstance(session, datetime) or not isinstance(session, date)
        ):
            raise TypeError(
                f"{dataset}: the session of partition ({symbol!r}, {session!r}) must be a "
                "datetime.date (the exchange-local session date)"
            )
        seen[(symbol, session)] = None
    return list(seen)


def _listed_partitions(dataset: str, partitions: Iterable[Partition]) -> dict[str, frozenset[date]]:
    """The sessions of each symbol listed in `partitions`, checked like _validate_partitions
    but without building the de-duplicated list: the per-symbol sets de-duplicate, and the
    checks look at each distinct symbol and each distinct set of sessions once."""
    items = partitions if isinstance(partitions, list) else list(partitions)
    try:
        if set(map(len, items)) <= {2}:
            listed = _listed(items)
            distinct = {id(sessions): sessions for sessions in listed.values()}
            if all(set(map(type, sessions)) == {date} for sessions in distinct.values()):
                validate_symbols(listed)
                return listed
    except TypeError:
        pass
    return _listed(_validate_each(dataset, items))


def _listed(pairs: Iterable[Partition]) -> dict[str, frozenset[date]]:
    """The listed sessions of each symbol. Pairs usually come symbol by symbol, and most
    symbols list the same sessions: equal sets are shared, so the caches keyed on them
    (_grouped, _among) hit on identity instead of comparing thousands of dates."""
    listed: dict[str, frozenset[date]] = {}
    shared: dict[frozenset[date], frozenset[date]] = {}
    for symbol, run in itertools.groupby(pairs, itemgetter(0)):
        sessions = frozenset(map(itemgetter(1), run))
        if symbol in listed:  # the symbol's pairs were not adjacent
            sessions |= listed[symbol]
        listed[symbol] = shared.setdefault(sessions, sessions)
    return listed


def _empty(schema: dict[str, pl.DataType], columns: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={name: schema[name] for name in columns})


def _conform(
    frame: pl.DataFrame, schema: dict[str, pl.DataType], layout: DatasetLayout
) -> pl.DataFrame:
    """Canonical columns and dtypes; only the time column and symbol are required outside bar
    schemas.

    A frame with no columns and no rows (`pl.DataFrame()`) stands for "no rows".
    """
    if frame.width == 0 and frame.height == 0:
        return _empty(schema, list(schema))
    if schema is BAR_SCHEMA:
        return conform_bars(frame)
    missing = [name for name in _sort_key(layout) if name not in frame.columns]
    if missing:
        raise ValueError(f"{layout.dataset} frame is missing required column(s) {missing}")
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


@functools.lru_cache(maxsize=256)
def _grouped(
    layout: DatasetLayout, sessions: frozenset[date], by: str
) -> dict[Any, frozenset[date]]:
    """`sessions` grouped by the last day of their small file (`by="last_day"`) or by the
    file (or span) that holds them (`by="file"`), in key order. Cached: the partitions of one
    write list the same sessions for every symbol."""
    key_of: Callable[[date], Any]
    if by == "last_day":
        key_of = functools.partial(_last_day, layout)
    else:
        key_of = layout.span_key if layout.compacted else layout.file_key
    grouped: dict[Any, set[date]] = {}
    for session in sessions:
        grouped.setdefault(key_of(session), set()).add(session)
    return {key: frozenset(group) for key, group in sorted(grouped.items())}


@functools.lru_cache(maxsize=256)
def _first(sessions: frozenset[date]) -> date:
    return min(sessions)


@functools.lru_cache(maxsize=256)
def _through(layout: DatasetLayout, sessions: frozenset[date], day: date) -> frozenset[date]:
    """The sessions whose small file ends on or before `day` (cached like _grouped)."""
    groups = _grouped(layout, sessions, "last_day")
    if all(last <= day for last in groups):
        return sessions
    return frozenset().union(*(g for last, g in groups.items() if last <= day))


def _without_session(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` without its _SESSION column (a shallow copy: no query plan, no data copied)."""
    frame = frame.clone()
    frame.drop_in_place(_SESSION)
    return frame


@functools.lru_cache(maxsize=64)
def _among(sessions: frozenset[date]) -> pl.Expr:
    """Rows whose session is one of `sessions` (cached: the plans of one write, one per
    symbol, mostly list the same sessions)."""
    return pl.col(_SESSION).is_in(pl.Series(sorted(sessions), dtype=pl.Date()).implode())


def _to_parquet(
    frame: pl.DataFrame, layout: DatasetLayout, covers_through: date | None = None
) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(
        buffer,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        statistics=True,
        row_group_size=ROW_GROUP_ROWS[layout.file_unit],
        metadata={COVERS_THROUGH: covers_through.isoformat()} if covers_through else None,
    )
    return buffer.getvalue()


_DAY_UNITS = {"ns": 86_400_000_000_000, "us": 86_400_000_000, "ms": 86_400_000}


def _sessions_of(layout: DatasetLayout, frame: pl.DataFrame) -> pl.Series:
    """The session of every row (`layout.session_expr()`), computed without converting each
    timestamp's time zone: New York's UTC offset changes on the hour, so the offsets are read
    on an hourly grid spanning the rows and gathered by each row's hour."""
    if layout.session_column or frame.is_empty():
        return frame.select(layout.session_expr().alias(_SESSION)).to_series()
    ts = frame.get_column(layout.time_column)
    dtype = ts.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone != "UTC" or ts.null_count():
        return frame.select(layout.session_expr().alias(_SESSION)).to_series()
    day = _DAY_UNITS[dtype.time_unit]
    physical = ts.to_physical()
    if layout.intraday:
        hour = day // 24
        first, last = physical.min() // hour - 1, physical.max() // hour + 2
        grid = pl.int_range(first, last, eager=True, dtype=pl.Int64) * hour
        local = (
            grid.cast(pl.Datetime(dtype.time_unit, "UTC"))
            .dt.convert_time_zone(str(EXCHANGE_TZ))
            .dt.replace_time_zone(None)
            .to_physical()
        )
        offsets = local - grid
        physical = physical + offsets.gather(physical // hour - first)
    return (physical // day).cast(pl.Int32).cast(pl.Date).alias(_SESSION)


def _period_of(sessions: pl.Series, unit: str) -> pl.Series:
    """For each session, a number shared by the sessions of its day, month, year (`unit`)
    or of all sessions ("symbol"): a binary search against the period starts, which is
    several times faster than extracting years and months."""
    days = sessions.to_physical()
    if unit == "day":
        return days
    if unit not in ("month", "year") or sessions.is_empty():
        return pl.zeros(sessions.len(), pl.Int32, eager=True)
    first, last = sessions.min(), sessions.max()
    assert isinstance(first, date) and isinstance(last, date)
    if unit == "year":
        starts = [date(year, 1, 1) for year in range(first.year, last.year + 2)]
    else:
        months = range(first.year * 12 + first.month - 1, last.year * 12 + last.month + 1)
        starts = [date(index // 12, index % 12 + 1, 1) for index in months]
    bounds = pl.Series(starts, dtype=pl.Date()).to_physical()
    return bounds.search_sorted(days, side="right").cast(pl.Int32)


def _last_day(layout: DatasetLayout, session: date) -> date:
    """Last day held by the small file of `session` (year files: December 31)."""
    return date(session.year, 12, 31) if layout.file_unit == "year" else session


def _is_sorted(frame: pl.DataFrame, key: tuple[str, str], strict: bool) -> bool:
    """Whether rows are ordered by `key` (strict: no two rows share a key)."""
    if frame.height < 2:
        return frame.get_column(key[1]).null_count() == 0
    if frame.get_column(key[1]).null_count():
        return False
    symbol, ts = pl.col(key[0]), pl.col(key[1])
    later = ts > ts.shift(1) if strict else ts >= ts.shift(1)
    return bool(
        frame.select(
            ((symbol == symbol.shift(1)) & later | (symbol > symbol.shift(1))).slice(1).all()
        ).item()
    )


class ParquetLake:
    """Canonical bars (and their quarantine) as Parquet under a local folder or `s3://` prefix.

    S3 credentials come only from boto3's default chain (the standard AWS_* environment
    variables, profiles or instance roles); `s3_endpoint_url` points at MinIO, moto or another
    S3-compatible server, `s3_region` sets the signing region. `today` tells which periods
    have closed (default: the UTC date of the machine's clock).
    """

    def __init__(
        self,
        root: str,
        *,
        s3_endpoint_url: str | None = None,
        s3_region: str | None = None,
        today: Callable[[], date] | None = None,
    ) -> None:
        self.root = root
        self._store = open_store(root, s3_endpoint_url=s3_endpoint_url, s3_region=s3_region)
        self._today = today or (lambda: datetime.now(UTC).date())

    def __repr__(self) -> str:
        return f"ParquetLake({self.root!r})"

    @property
    def store(self) -> ObjectStore:
        """The byte-level store under this lake (local folder or S3 prefix)."""
        return self._store

    # ----------------------------------------------------------------------------- writes

    def write_partitions(
        self, dataset: str, frame: pl.DataFrame, partitions: Sequence[Partition]
    ) -> WriteSummary:
        """Replace exactly the listed (symbol, session) partitions of `dataset` with `frame`.

        Every row must belong to a listed partition (its session comes from the layout: the
        UTC date for daily bars, the America/New_York date for intraday bars), otherwise
        StoreError is raised before anything is written. A listed partition with no rows in
        `frame` is emptied (an intraday day file is deleted). Duplicate (symbol, ts) rows are
        refused. Each file is replaced atomically; a write of several files is not atomic as a
        whole, but re-running it is idempotent.
        """
        return self._write(layout_for(dataset), frame, partitions)

    def write_quarantine(
        self, dataset: str, frame: pl.DataFrame, partitions: Sequence[Partition]
    ) -> WriteSummary:
        """Replace the quarantined rows of `dataset` for the listed partitions.

        `frame` holds the bar columns plus dataset, rule, detail and quarantined_at (any may be
        null except ts and symbol, which place the row in its partition). Same replace
        semantics as `write_partitions`; duplicate keys are allowed here.
        """
        return self._write(quarantine_layout(dataset), frame, partitions)

    def _write(
        self, layout: DatasetLayout, frame: pl.DataFrame, partitions: Sequence[Partition]
    ) -> WriteSummary:
        started = time.perf_counter()
        schema = _schema_for(layout)
        listed = _listed_partitions(layout.dataset, partitions)
        rows = _conform(frame, schema, layout)
        validate_symbols(rows.get_column("symbol").drop_nulls().unique(maintain_order=True))
        key = _sort_key(layout)
        unique = schema is BAR_SCHEMA
        if not _is_sorted(rows, key, strict=unique):
            rows = rows.sort(key, maintain_order=True)
            if unique:
                self._check_unique_keys(layout, rows)
        tagged = rows.with_columns(_sessions_of(layout, rows))
        plans = self._plan(layout, tagged, listed)
        outcomes = self._map(self._apply, plans)
        return WriteSummary(
            rows=rows.height,
            files_written=sum(written for written, _ in outcomes),
            files_deleted=sum(deleted for _, deleted in outcomes),
            seconds=time.perf_counter() - started,
        )

    @staticmethod
    def _check_unique_keys(layout: DatasetLayout, rows: pl.DataFrame) -> None:
        """`rows` sorted by (symbol, ts): refuse rows that repeat their predecessor's key."""
        symbol, ts = pl.col("symbol"), pl.col("ts")
        repeated = (symbol == symbol.shift(1)) & (ts == ts.shift(1))
        duplicated = rows.filter(repeated | repeated.shift(-1))
        if duplicated.height:
            first = duplicated.row(0, named=True)
            raise StoreError(
                f"{layout.dataset}: {duplicated.height} rows share a (symbol, ts) key, first "
                f"symbol {first['symbol']!r} ts {first['ts']}; de-duplicate before writing. "
                "Nothing was written."
            )

    @staticmethod
    def _raise_stray(layout: DatasetLayout, stray: pl.DataFrame) -> NoReturn:
        first = stray.row(0, named=True)
        raise StoreError(
            f"{layout.dataset}: {stray.height} row(s) fall outside the listed partitions, "
            f"first symbol {first['symbol']!r} {layout.time_column} "
            f"{first[layout.time_column]} (session "
            f"{first[_SESSION]}); list that (symbol, session) or drop the row. "
            "Nothing was written."
        )

    def _plan(
        self, layout: DatasetLayout, tagged: pl.DataFrame, listed: dict[str, frozenset[date]]
    ) -> list[_FilePlan]:
        """Group the listed partitions and their rows by the file (compacted layouts: the
        span) that holds them; StoreError if a row belongs to no listed partition."""
        self._check_listed(layout, tagged, listed)
        grouping = self._group_of(layout)
        files: dict[tuple[str, tuple[int, ...]], tuple[str, frozenset[date]]] = {}
        for symbol, sessions in listed.items():
            for group, members in _grouped(layout, sessions, "file").items():
                path = self._plan_path(layout, symbol, next(iter(members)))
                files[(symbol, group)] = (path, members)
        schema = _schema_for(layout)
        columns = [*schema, _SESSION]
        if tagged.columns != columns:
            tagged = tagged.select(columns)
        by_file = self._split(layout, tagged, grouping)
        empty = tagged.clear()
        return [
            _FilePlan(
                layout=layout,
                symbol=symbol,
                path=path,
                sessions=sessions,
                rows=by_file.get(key, empty),
                shared=layout.compacted or layout.file_unit != "day",
            )
            for key, (path, sessions) in files.items()
            for symbol in [key[0]]
        ]

    def _check_listed(
        self, layout: DatasetLayout, tagged: pl.DataFrame, listed: dict[str, frozenset[date]]
    ) -> None:
        """StoreError naming the first row whose (symbol, session) is not listed.

        Symbols mostly list the same sessions, so rows are checked per distinct set of
        sessions (two `is_in` each); many distinct sets take one anti join instead."""
        if tagged.is_empty():
            return
        if not listed:
            self._raise_stray(layout, tagged)
        symbols_of: dict[frozenset[date], list[str]] = {}
        for symbol, sessions in listed.items():
            symbols_of.setdefault(sessions, []).append(symbol)
        keys = tagged.select("symbol", _SESSION)
        if len(symbols_of) <= 4:
            symbol = pl.col("symbol")
            inside = pl.lit(False)
            for sessions, symbols in symbols_of.items():
                inside = inside | (
                    symbol.is_in(pl.Series(symbols, dtype=pl.String()).implode()) & _among(sessions)
                )
            outside = keys.select(inside.fill_null(False).not_().arg_true()).to_series()
        else:
            allowed = pl.concat(
                pl.DataFrame({"symbol": symbols}, schema={"symbol": pl.String()}).join(
                    pl.DataFrame({_SESSION: sorted(sessions)}, schema={_SESSION: pl.Date()}),
                    how="cross",
                )
                for sessions, symbols in symbols_of.items()
            )
            outside = (
                keys.with_row_index("__row")
                .join(allowed, on=["symbol", _SESSION], how="anti")
                .get_column("__row")
                .sort()
            )
        if outside.len():
            self._raise_stray(layout, tagged[outside])

    @staticmethod
    def _split(
        layout: DatasetLayout, tagged: pl.DataFrame, grouping: Callable[[date], tuple[int, ...]]
    ) -> dict[tuple[str, tuple[int, ...]], pl.DataFrame]:
        """Rows by (symbol, file or span key). Rows sorted by (symbol, time) hold each file's
        rows in one run, cut out as zero-copy slices at the change points; rows filed by a
        session column their times disagree with fall back to partition_by."""
        if tagged.is_empty():
            return {}
        sessions = tagged.get_column(_SESSION)
        if layout.compacted:  # spans: a month of day files, or every year file of a symbol
            unit = "month" if layout.file_unit == "day" else "symbol"
        else:
            unit = layout.file_unit
        group = _period_of(sessions, unit)
        symbols = tagged.get_column("symbol")
        changed = (symbols != symbols.shift(1)) | (group != group.shift(1))
        starts = changed.fill_null(True).arg_true()
        keys = [
            (symbol, grouping(session))
            for symbol, session in zip(
                symbols.gather(starts).to_list(), sessions.gather(starts).to_list(), strict=True
            )
        ]
        if len(set(keys)) == len(keys):
            bounds = [*starts.to_list(), tagged.height]
            return {
                key: tagged.slice(begin, stop - begin)
                for key, begin, stop in zip(keys, bounds, bounds[1:], strict=False)
            }
        return {
            (symbol, grouping(part.get_column(_SESSION)[0])): part
            for (symbol, _), part in tagged.with_columns(group.alias(_GROUP))
            .partition_by("symbol", _GROUP, as_dict=True, maintain_order=True)
            .items()
            for part in [part.drop(_GROUP)]
        }

    @staticmethod
    def _group_of(layout: DatasetLayout) -> Callable[[date], tuple[int, ...]]:
        return layout.span_key if layout.compacted else layout.file_key

    @staticmethod
    def _plan_path(layout: DatasetLayout, symbol: str, session: date) -> str:
        if layout.compacted:
            return layout.compacted_path(symbol, session)
        return layout.relative_path(symbol, session)

    def _apply(self, plan: _FilePlan) -> tuple[int, int]:
        """Write one file (compacted layouts: one span); return (files written, deleted)."""
        if plan.rows.is_empty() and not self._store.holds_any(
            plan.layout.symbol_folder(plan.symbol)
        ):
            return 0, 0  # emptying partitions of a symbol that has nothing stored
        if not plan.shared:
            return self._write_small(plan, plan.path, plan.rows, check_version=False)
        with self._store.locked(plan.path):
            for attempt in range(MAX_WRITE_ATTEMPTS):
                try:
                    if plan.layout.compacted:
                        return self._write_span(plan)
                    return self._write_small(plan, plan.path, plan.rows, check_version=True)
                except VersionConflict:
                    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt)
                    delay = random.uniform(0.0, ceiling)
                    log.debug("%s changed under us; retrying in %.3fs", plan.path, delay)
                    time.sleep(delay)
        raise StoreError(
            f"gave up writing {self._store.uri(plan.path)} after {MAX_WRITE_ATTEMPTS} attempts: "
            "other writers kept changing it; retry the write"
        )

    def _write_small(
        self, plan: _FilePlan, path: str, rows: pl.DataFrame, *, check_version: bool
    ) -> tuple[int, int]:
        """Replace the listed sessions in one small file (day files hold one session)."""
        layout = plan.layout
        if layout.file_unit == "day" and not check_version:
            if rows.is_empty():
                existed = self._store.exists(path)
                self._store.delete(path)
                return 0, int(existed)
            self._store.put(path, _to_parquet(_without_session(rows), layout))
            return 1, 0
        data, version = self._store.get(path)
        kept = self._decode(layout, path, data)
        if not kept.is_empty():
            kept = kept.filter(~plan.replaced)
        merged = self._combine(layout, [kept, rows])
        if merged.is_empty():
            if data is None:
                return 0, 0
            self._store.delete(path, expected_version=version)
            return 0, 1
        self._store.put(
            path, _to_parquet(_without_session(merged), layout), expected_version=version
        )
        return 1, 0

    def _write_span(self, plan: _FilePlan) -> tuple[int, int]:
        """Write the listed sessions of one compacted span: sessions up to the compacted
        file's `covers_through` (extended to the last closed day when the write reaches a
        closed period, folding in that period's small files) go to the compacted file, later
        ones to their small files."""
        layout, symbol, path = plan.layout, plan.symbol, plan.path
        first = plan.first
        data, version = self._store.get(path)
        covered = self._covers_through(path, data) if data is not None else None
        closed = layout.closed_through(first, self._today())
        target = covered
        if closed is not None and any(
            last <= closed and (covered is None or last > covered) for last in plan.by_last_day
        ):
            target = closed if covered is None else max(covered, closed)
        inside = plan.sessions_through(target)
        written = deleted = 0
        if inside or target != covered:
            written, deleted = self._rewrite_compacted(plan, data, version, covered, target)
        later = plan.sessions - inside
        if not later:
            rows = plan.rows.clear()
        elif inside:
            rows = plan.rows.filter(_among(frozenset(later)))
        else:
            rows = plan.rows
        small_groups: dict[str, list[date]] = {}
        for session in sorted(later):
            small_groups.setdefault(layout.relative_path(symbol, session), []).append(session)
        for small, sessions in small_groups.items():
            part = _FilePlan(layout, symbol, small, frozenset(sessions), rows, shared=True)
            own = rows if len(small_groups) == 1 else rows.filter(_among(frozenset(sessions)))
            if layout.file_unit == "day":
                w, d = self._write_small(part, small, own, check_version=False)
            else:
                w, d = self._write_small(part, small, own, check_version=True)
            written, deleted = written + w, deleted + d
        return written, deleted

    def _rewrite_compacted(
        self,
        plan: _FilePlan,
        data: bytes | None,
        version: str | None,
        covered: date | None,
        target: date | None,
    ) -> tuple[int, int]:
        """Put the compacted file of `plan`'s span covering through `target`, then delete
        the small files it replaces."""
        assert target is not None
        layout, symbol, path = plan.layout, plan.symbol, plan.path
        first = plan.first
        replaced = plan.replaced
        parts = [self._decode(layout, path, data).filter(~replaced)] if data is not None else []
        doomed: list[tuple[str, Version]] = []
        for small, session in self._small_files(layout, symbol, first):
            end = _last_day(layout, session)
            if end > target:
                continue
            blob, small_version = self._store.get(small)
            if blob is None:
                continue
            if covered is None or end > covered:
                parts.append(self._decode(layout, small, blob).filter(~replaced))
            doomed.append((small, small_version))
        through = plan.sessions_through(target)
        new = plan.rows if through == plan.sessions else plan.rows.filter(_among(through))
        merged = self._combine(layout, [*parts, new])
        if merged.is_empty():
            for small, small_version in doomed:
                self._store.delete(small, expected_version=small_version)
            if data is not None:
                self._store.delete(path, expected_version=version)
            self._prune(doomed)
            return 0, len(doomed) + int(data is not None)
        encoded = _to_parquet(_without_session(merged), layout, covers_through=target)
        self._store.put(path, encoded, expected_version=version)
        for small, small_version in doomed:
            self._store.delete(small, expected_version=small_version)
        self._prune(doomed)
        return 1, len(doomed)

    def _small_files(
        self, layout: DatasetLayout, symbol: str, first: date
    ) -> list[tuple[str, date]]:
        """Small files in the span folder of (symbol, first), with their sessions."""
        found = []
        for name in self._store.list_names(layout.span_folder(symbol, first)):
            session = layout.session_of_folder(first, name)
            if session is not None:
                found.append((layout.relative_path(symbol, session), session))
        return found

    def _prune(self, deleted: list[tuple[str, Version]]) -> None:
        for small, _ in deleted:
            self._store.prune_folder(small.rsplit("/", 1)[0])

    def _covers_through(self, path: str, source: str | bytes) -> date:
        """The `covers_through` date a compacted file records."""
        try:
            metadata = pl.read_parquet_metadata(
                io.BytesIO(source) if isinstance(source, bytes) else source
            )
            return date.fromisoformat(metadata[COVERS_THROUGH])
        except (pl.exceptions.PolarsError, OSError, KeyError, ValueError) as exc:
            raise StoreError(
                f"cannot read {self._store.uri(path)}: not a compacted lake file ({exc}); move "
                "it aside and re-materialize the partitions of its period"
            ) from exc

    def _decode(self, layout: DatasetLayout, path: str, data: bytes | None) -> pl.DataFrame:
        """Rows of an existing file with their _SESSION, or an empty frame when it is absent."""
        schema = _schema_for(layout)
        if data is None:
            return pl.DataFrame(schema={**schema, _SESSION: pl.Date()})
        try:
            existing = pl.read_parquet(data).select(
                pl.col(name).cast(dtype) for name, dtype in schema.items()
            )
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise StoreError(
                f"cannot merge into {self._store.uri(path)}: the existing file is not "
                f"readable as {layout.dataset} Parquet ({exc}); move it aside and rewrite "
                "its partitions"
            ) from exc
        return existing.with_columns(_sessions_of(layout, existing))

    @staticmethod
    def _combine(layout: DatasetLayout, parts: list[pl.DataFrame]) -> pl.DataFrame:
        """Concatenate parts (each sorted) and sort by the layout's key when needed."""
        parts = [part for part in parts if not part.is_empty()]
        if not parts:
            return pl.DataFrame(schema={**_schema_for(layout), _SESSION: pl.Date()})
        if len(parts) == 1:
            return parts[0]
        return pl.concat(parts).sort(_sort_key(layout), maintain_order=True)

    # ------------------------------------------------------------------------------ reads

    def read(
        self,
        dataset: str,
        symbols: str | Sequence[str],
        start: datetime | date,
        end: datetime | date,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of `symbols` with `start <= ts < end`, sorted by (symbol, ts) (tick datasets:
        by their time column `ts_event`).

        `start` is inclusive and `end` exclusive; naive datetimes are UTC and a date means
        00:00 UTC of that date. `columns` selects and orders the returned columns (all by
        default). Missing files are skipped; an empty frame keeps the canonical schema.
        """
        return self._read(layout_for(dataset), symbols, start, end, columns)

    def read_quarantine(
        self,
        dataset: str,
        symbols: str | Sequence[str],
        start: datetime | date,
        end: datetime | date,
    ) -> pl.DataFrame:
        """Quarantined rows filed under the sessions in [start, end) (datetimes: their date).

        Rows are filed by the partition they were quarantined from (`session`), since their
        own timestamp may be null or outside every partition.
        """
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        first = start.date() if isinstance(start, datetime) else start
        stop = end.date() if isinstance(end, datetime) else end
        sessions = get_calendar().sessions(first, stop - timedelta(days=1)) if first < stop else []
        pairs = [(symbol, session) for symbol in names for session in sessions]
        if not pairs:
            return pl.DataFrame(schema=_schema_for(quarantine_layout(dataset)))
        return self.read_partitions(quarantine_layout(dataset).dataset, pairs)

    def read_partitions(self, dataset: str, partitions: Sequence[Partition]) -> pl.DataFrame:
        """Exactly the rows of the listed (symbol, session) partitions, sorted by (symbol, ts)."""
        layout = layout_for(dataset)
        schema = _schema_for(layout)
        wanted = _validate_partitions(dataset, partitions)
        by_symbol: dict[str, list[date]] = {}
        for symbol, session in sorted(wanted):
            by_symbol.setdefault(symbol, []).append(session)
        frame = self._load(layout, by_symbol, schema, list(schema), None, sort=True)
        if frame.is_empty():
            return frame
        listed = pl.DataFrame(
            {"symbol": [s for s, _ in wanted], _SESSION: [d for _, d in wanted]},
            schema={"symbol": pl.String(), _SESSION: pl.Date()},
        )
        return (
            frame.with_columns(_sessions_of(layout, frame))
            .join(listed, on=["symbol", _SESSION], how="semi", maintain_order="left")
            .drop(_SESSION)
        )

    def _read(
        self,
        layout: DatasetLayout,
        symbols: str | Sequence[str],
        start: datetime | date,
        end: datetime | date,
        columns: list[str] | None,
    ) -> pl.DataFrame:
        schema = _schema_for(layout)
        selected = self._check_columns(layout, schema, columns)
        names = sorted(validate_symbols([symbols] if isinstance(symbols, str) else symbols))
        lower, upper = _to_utc(start, "start"), _to_utc(end, "end")
        if not names or lower >= upper:
            return _empty(schema, selected)
        sessions = self._candidate_sessions(layout, lower, upper)
        ts = pl.col(layout.time_column)
        dtype = schema[layout.time_column]
        if not isinstance(dtype, pl.Datetime):  # a date column: compare as 00:00 UTC
            dtype = pl.Datetime("us", "UTC")
            ts = ts.cast(dtype)
        lower_lit, upper_lit = _instant(lower, dtype), _instant(upper, dtype)
        return self._load(
            layout,
            {symbol: sessions for symbol in dict.fromkeys(names)},
            schema,
            selected,
            (ts >= lower_lit) & (ts < upper_lit),
            # Files hold rows sorted by (symbol, time) and are read in that order, except
            # where rows are filed by a session column their timestamps may disagree with.
            sort=layout.session_column not in (None, layout.time_column),
        )

    @staticmethod
    def _check_columns(
        layout: DatasetLayout, schema: dict[str, pl.DataType], columns: list[str] | None
    ) -> list[str]:
        if columns is None:
            return list(schema)
        unknown = [name for name in columns if name not in schema]
        if unknown:
            raise ValueError(
                f"{layout.dataset}: unknown column(s) {unknown}; available: {list(schema)}"
            )
        return list(dict.fromkeys(columns))

    @staticmethod
    def _candidate_sessions(layout: DatasetLayout, lower: datetime, upper: datetime) -> list[date]:
        """One session per candidate file for ts in [lower, upper), in time order.

        Intraday sessions are America/New_York dates, which are the UTC date or the day
        before, so the range starts a day early; day files are probed on exchange sessions
        only (no holidays, no weekends).
        """
        first = lower.date() - timedelta(days=1) if layout.intraday else lower.date()
        last = (upper - timedelta(microseconds=1)).date()
        if layout.file_unit == "symbol":
            return [first]
        if layout.file_unit == "year":
            return [date(year, 1, 1) for year in range(first.year, last.year + 1)]
        return get_calendar().sessions(first, last)

    def _sources(self, layout: DatasetLayout, wanted: dict[str, list[date]]) -> list[_Source]:
        """The existing files holding the sessions of `wanted` (sessions in time order), in
        (symbol, time) order: a span's compacted file for the sessions it covers, then the
        small files of the later sessions."""
        wanted = self._stored(layout, wanted)
        if not layout.compacted:
            paths = list(
                dict.fromkeys(
                    layout.relative_path(symbol, session)
                    for symbol, sessions in wanted.items()
                    for session in sessions
                )
            )
            return self._existing(paths)
        spans = [
            (symbol, list(group))
            for symbol, sessions in wanted.items()
            for _, group in itertools.groupby(sessions, layout.span_key)
        ]
        compacted = [layout.compacted_path(symbol, group[0]) for symbol, group in spans]
        found = self._store.snapshot(compacted)
        layout_of: list[tuple[_Source | None, list[str]]] = []
        for (symbol, group), path, (source, version) in zip(spans, compacted, found, strict=True):
            covered = self._covers_through(path, source) if source is not None else None
            small = [
                layout.relative_path(symbol, session)
                for session in group
                if covered is None or _last_day(layout, session) > covered
            ]
            use = source is not None and len(small) < len(group)
            layout_of.append(
                (_Source(path, source, version) if use else None, list(dict.fromkeys(small)))
            )
        small_sources = iter(self._existing([p for _, small in layout_of for p in small], True))
        ordered: list[_Source] = []
        for big, small in layout_of:
            if big is not None:
                ordered.append(big)
            ordered.extend(s for s in itertools.islice(small_sources, len(small)) if s)
        return ordered

    def _stored(
        self, layout: DatasetLayout, wanted: dict[str, list[date]]
    ) -> dict[str, list[date]]:
        """`wanted` without the symbols whose folder holds nothing. Local folders are probed
        always (a stat); S3 prefixes only where a symbol has several candidate files, since a
        LIST costs as much as the one or two GETs it would save."""
        remote = self._store.snapshots
        probed = [symbol for symbol, sessions in wanted.items() if not remote or len(sessions) > 2]
        if not probed:
            return wanted
        folders = [layout.symbol_folder(symbol) for symbol in probed]
        probe = self._store.holds_any
        held = self._map(probe, folders) if remote else [probe(folder) for folder in folders]
        empty = {symbol for symbol, has in zip(probed, held, strict=True) if not has}
        return {symbol: s for symbol, s in wanted.items() if symbol not in empty}

    def _existing(self, paths: list[str], keep_gaps: bool = False) -> list:
        found = [
            _Source(path, source, version) if source is not None else None
            for path, (source, version) in zip(paths, self._store.snapshot(paths), strict=True)
        ]
        return found if keep_gaps else [source for source in found if source is not None]

    def _load(
        self,
        layout: DatasetLayout,
        wanted: dict[str, list[date]],
        schema: dict[str, pl.DataType],
        selected: list[str],
        predicate: pl.Expr | None,
        *,
        sort: bool,
    ) -> pl.DataFrame:
        """Read the files holding `wanted` in one polars scan; canonical, sorted by the key.

        On local disk the files are read by path, so the versions are checked afterwards and
        the read is repeated if a writer replaced a file meanwhile."""
        key = _sort_key(layout)
        needed = list(dict.fromkeys([*selected, *key]))  # selected first: no reorder after
        for _ in range(MAX_READ_ATTEMPTS):
            sources = self._sources(layout, wanted)
            if not sources:
                return _empty(schema, selected)
            frame = self._scan(sources, needed, predicate)
            if self._store.snapshots or self._unchanged(sources):
                break
        else:
            raise StoreError(
                f"{layout.dataset}: files kept changing while being read "
                f"({self._store.uri(sources[0].path)} ...); retry the read"
            )
        if sort:
            frame = frame.sort(key, maintain_order=True)
        if frame.columns == selected and all(
            frame.schema[name] == schema[name] for name in selected
        ):
            return frame  # files written by this lake already hold the canonical dtypes
        return frame.select(pl.col(name).cast(schema[name]) for name in selected)

    def _unchanged(self, sources: list[_Source]) -> bool:
        current = self._store.versions([source.path for source in sources])
        return all(s.version == v for s, v in zip(sources, current, strict=True))

    def _scan(
        self, sources: list[_Source], needed: list[str], predicate: pl.Expr | None
    ) -> pl.DataFrame:
        try:
            scan = pl.scan_parquet([source.source for source in sources]).select(needed)
            return (scan.filter(predicate) if predicate is not None else scan).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise self._unreadable(sources, needed, exc) from exc

    def _unreadable(
        self, sources: list[_Source], needed: list[str], error: Exception
    ) -> StoreError:
        """StoreError naming the first file that does not read on its own."""
        for source in sources:
            try:
                pl.read_parquet(source.source, columns=needed)
            except (pl.exceptions.PolarsError, OSError) as exc:
                return StoreError(
                    f"cannot read {self._store.uri(source.path)}: {exc}; move the file aside "
                    "and re-materialize its partitions"
                )
        shown = ", ".join(self._store.uri(source.path) for source in sources[:3])
        return StoreError(
            f"cannot read Parquet from {len(sources)} file(s) ({shown}"
            f"{' ...' if len(sources) > 3 else ''}): {error}"
        )

    # ---------------------------------------------------------------------------- helpers

    def uri_for(self, dataset: str, symbol: str, session: date) -> str:
        """Full path or s3:// URI of the file holding (symbol, session), for display: the
        compacted file when it covers the session, otherwise the layout's small file."""
        layout = layout_for(dataset)
        sources = self._sources(layout, {validate_symbol(symbol): [session]})
        if sources:
            return self._store.uri(sources[0].path)
        return self._store.uri(layout.relative_path(symbol, session))

    def partition_files(self, dataset: str, partitions: Sequence[Partition]) -> list[str]:
        """Full paths or s3:// URIs of the existing files holding `partitions` (the layout's
        small file where none exists yet), without repeats."""
        wanted = _validate_partitions(dataset, partitions)
        return list(dict.fromkeys(self.uri_for(dataset, s, d) for s, d in wanted))

    @staticmethod
    def _map(function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(min(WRITE_THREADS, len(items))) as pool:
            return list(pool.map(function, items))
