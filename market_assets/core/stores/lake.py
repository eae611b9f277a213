"""The Parquet lake: canonical frames stored as Parquet files in a local folder or on S3.

A partition is one (symbol, session); files group partitions as the layout says (one file per
symbol-year for daily bars, one per symbol-session for intraday bars). Writes replace exactly
the listed partitions: a file holding only listed partitions is overwritten, a shared file is
read, merged and rewritten. Each file is replaced atomically (temp file + rename, or one PUT),
and writers of one shared file never lose each other's rows: a file lock beside the file on
local disk, conditional PUTs (If-Match on the ETag, retried with jitter) on S3. A write of
several files is atomic per file, not across files.

Reads build the exact list of candidate files from the layout and the exchange calendar and
never list or glob a folder, because listing thousands of files dominates query time.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import TypeVar

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.errors import StoreError
from market_assets.core.schemas import (
    BAR_SCHEMA,
    QUARANTINE_EXTRA_SCHEMA,
    conform_bars,
    stored_schema,
)
from market_assets.core.stores.layout import DatasetLayout, layout_for, quarantine_layout
from market_assets.core.stores.objectstore import (
    ObjectStore,
    VersionConflict,
    open_store,
)
from market_assets.core.symbols import validate_symbol, validate_symbols

log = logging.getLogger(__name__)

Partition = tuple[str, date]

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**BAR_SCHEMA, **QUARANTINE_EXTRA_SCHEMA}
SORT_KEY = ("symbol", "ts")  # bars; other datasets sort by (symbol, layout.time_column)
MAX_WRITE_ATTEMPTS = 30
RETRY_BASE_SECONDS = 0.02
RETRY_CAP_SECONDS = 1.0
# Files are encoded, fsynced and renamed (or PUT) by a small pool: compression and I/O release
# the GIL, so this is ~1.7x faster than one at a time on local disk and ~2x on S3.
WRITE_THREADS = 8

_SESSION = "__session"
_FILE = "__file"
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
    """The new content of the listed partitions that live in one file."""

    layout: DatasetLayout
    path: str
    sessions: frozenset[date]
    rows: pl.DataFrame
    shared: bool


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


def _validate_partitions(dataset: str, partitions: Iterable[Partition]) -> list[Partition]:
    """Check every (symbol, session); return them de-duplicated in first-seen order."""
    seen: dict[Partition, None] = {}
    for symbol, session in partitions:
        validate_symbol(symbol)
        if isinstance(session, datetime) or not isinstance(session, date):
            raise TypeError(
                f"{dataset}: the session of partition ({symbol!r}, {session!r}) must be a "
                "datetime.date (the exchange-local session date)"
            )
        seen[(symbol, session)] = None
    return list(seen)


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


def _to_parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


class ParquetLake:
    """Canonical bars (and their quarantine) as Parquet under a local folder or `s3://` prefix.

    S3 credentials come only from boto3's default chain (the standard AWS_* environment
    variables, profiles or instance roles); `s3_endpoint_url` points at MinIO, moto or another
    S3-compatible server, `s3_region` sets the signing region.
    """

    def __init__(
        self,
        root: str,
        *,
        s3_endpoint_url: str | None = None,
        s3_region: str | None = None,
    ) -> None:
        self.root = root
        self._store = open_store(root, s3_endpoint_url=s3_endpoint_url, s3_region=s3_region)

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
        wanted = _validate_partitions(layout.dataset, partitions)
        rows = _conform(frame, schema, layout)
        validate_symbols(rows.get_column("symbol").drop_nulls().unique(maintain_order=True))
        tagged = rows.with_columns(layout.session_expr().alias(_SESSION))
        self._check_rows_belong(layout, tagged, wanted)
        if schema is BAR_SCHEMA:
            self._check_unique_keys(layout, rows)
        plans = self._plan(layout, tagged, wanted)
        outcomes = self._map(self._apply, plans)
        return WriteSummary(
            rows=rows.height,
            files_written=sum(written for written, _ in outcomes),
            files_deleted=sum(deleted for _, deleted in outcomes),
            seconds=time.perf_counter() - started,
        )

    @staticmethod
    def _check_rows_belong(
        layout: DatasetLayout, tagged: pl.DataFrame, wanted: list[Partition]
    ) -> None:
        listed = pl.DataFrame(
            {"symbol": [s for s, _ in wanted], _SESSION: [d for _, d in wanted]},
            schema={"symbol": pl.String(), _SESSION: pl.Date()},
        )
        stray = tagged.join(listed, on=["symbol", _SESSION], how="anti")
        if stray.height:
            first = stray.row(0, named=True)
            raise StoreError(
                f"{layout.dataset}: {stray.height} row(s) fall outside the listed partitions, "
                f"first symbol {first['symbol']!r} {layout.time_column} "
                f"{first[layout.time_column]} (session "
                f"{first[_SESSION]}); list that (symbol, session) or drop the row. "
                "Nothing was written."
            )

    @staticmethod
    def _check_unique_keys(layout: DatasetLayout, rows: pl.DataFrame) -> None:
        duplicated = rows.filter(pl.struct(*SORT_KEY).is_duplicated())
        if duplicated.height:
            first = duplicated.row(0, named=True)
            raise StoreError(
                f"{layout.dataset}: {duplicated.height} rows share a (symbol, ts) key, first "
                f"symbol {first['symbol']!r} ts {first['ts']}; de-duplicate before writing. "
                "Nothing was written."
            )

    @staticmethod
    def _plan(
        layout: DatasetLayout, tagged: pl.DataFrame, wanted: list[Partition]
    ) -> list[_FilePlan]:
        """Group the listed partitions and their rows by the file that holds them."""
        files: dict[tuple[str, tuple[int, ...]], tuple[str, set[date]]] = {}
        for symbol, session in wanted:
            key = (symbol, layout.file_key(session))
            if key not in files:
                files[key] = (layout.relative_path(symbol, session), set())
            files[key][1].add(session)
        unit = {"year": pl.col(_SESSION).dt.year(), "symbol": pl.lit(0)}.get(
            layout.file_unit, pl.col(_SESSION)
        )
        groups = tagged.with_columns(unit.alias(_FILE)).partition_by("symbol", _FILE, as_dict=True)
        by_file = {
            (str(symbol), layout.file_key(group.get_column(_SESSION)[0])): group
            for (symbol, _), group in groups.items()
        }
        schema = _schema_for(layout)
        empty = _empty(schema, list(schema))
        return [
            _FilePlan(
                layout=layout,
                path=path,
                sessions=frozenset(sessions),
                rows=by_file[key].select(list(schema)) if key in by_file else empty,
                shared=layout.file_unit != "day",
            )
            for key, (path, sessions) in files.items()
        ]

    def _apply(self, plan: _FilePlan) -> tuple[int, int]:
        """Write one file; return (files written, files deleted)."""
        if not plan.shared:
            if plan.rows.is_empty():
                existed = self._store.exists(plan.path)
                self._store.delete(plan.path)
                return 0, int(existed)
            self._store.put(plan.path, _to_parquet(plan.rows.sort(_sort_key(plan.layout))))
            return 1, 0
        with self._store.locked(plan.path):
            for attempt in range(MAX_WRITE_ATTEMPTS):
                data, version = self._store.get(plan.path)
                merged = self._merge(plan, data)
                try:
                    if merged.is_empty():
                        if data is None:
                            return 0, 0
                        self._store.delete(plan.path, expected_version=version)
                        return 0, 1
                    self._store.put(plan.path, _to_parquet(merged), expected_version=version)
                    return 1, 0
                except VersionConflict:
                    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt)
                    delay = random.uniform(0.0, ceiling)
                    log.debug("%s changed under us; retrying in %.3fs", plan.path, delay)
                    time.sleep(delay)
        raise StoreError(
            f"gave up writing {self._store.uri(plan.path)} after {MAX_WRITE_ATTEMPTS} attempts: "
            "other writers kept changing it; retry the write"
        )

    def _merge(self, plan: _FilePlan, data: bytes | None) -> pl.DataFrame:
        """The new rows plus the existing rows of sessions that are not being replaced."""
        if data is None:
            return plan.rows.sort(_sort_key(plan.layout), maintain_order=True)
        try:
            existing = pl.read_parquet(data).select(
                pl.col(name).cast(dtype) for name, dtype in plan.rows.schema.items()
            )
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise StoreError(
                f"cannot merge into {self._store.uri(plan.path)}: the existing file is not "
                f"readable as {plan.layout.dataset} Parquet ({exc}); move it aside and rewrite "
                "the year"
            ) from exc
        kept = existing.filter(~plan.layout.session_expr().is_in(list(plan.sessions)))
        return pl.concat([kept, plan.rows]).sort(_sort_key(plan.layout), maintain_order=True)

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
        paths = self._paths_of(layout, wanted)
        frame = self._load(paths, schema, list(schema), None, _sort_key(layout))
        if frame.is_empty():
            return frame
        listed = pl.DataFrame(
            {"symbol": [s for s, _ in wanted], _SESSION: [d for _, d in wanted]},
            schema={"symbol": pl.String(), _SESSION: pl.Date()},
        )
        return (
            frame.with_columns(layout.session_expr().alias(_SESSION))
            .join(listed, on=["symbol", _SESSION], how="semi")
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
        paths = [layout.relative_path(symbol, day) for symbol in names for day in sessions]
        ts = pl.col(layout.time_column)
        if schema[layout.time_column] == pl.Date():  # a date column: compare as 00:00 UTC
            ts = ts.cast(pl.Datetime("us", "UTC"))
        return self._load(paths, schema, selected, (ts >= lower) & (ts < upper), _sort_key(layout))

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

    @staticmethod
    def _paths_of(layout: DatasetLayout, partitions: Iterable[Partition]) -> list[str]:
        """Relative paths of the files holding `partitions`, without repeats, in order."""
        return list(dict.fromkeys(layout.relative_path(s, d) for s, d in partitions))

    def _load(
        self,
        paths: list[str],
        schema: dict[str, pl.DataType],
        selected: list[str],
        predicate: pl.Expr | None,
        key: tuple[str, str] = SORT_KEY,
    ) -> pl.DataFrame:
        """Read the existing files of `paths` in one polars call; canonical, sorted by `key`."""
        sources = self._store.read_sources(paths)
        if not sources:
            return _empty(schema, selected)
        needed = list(dict.fromkeys([*key, *selected]))
        try:
            frame = pl.read_parquet(sources, columns=needed)
        except (pl.exceptions.PolarsError, OSError) as exc:
            shown = ", ".join(self._store.uri(path) for path in paths[:3])
            raise StoreError(
                f"cannot read Parquet from {len(sources)} file(s) among {shown}"
                f"{' ...' if len(paths) > 3 else ''}: {exc}"
            ) from exc
        if predicate is not None:
            frame = frame.filter(predicate)
        return frame.sort(key, maintain_order=True).select(
            pl.col(name).cast(schema[name]) for name in selected
        )

    # ---------------------------------------------------------------------------- helpers

    def uri_for(self, dataset: str, symbol: str, session: date) -> str:
        """Full path or s3:// URI of the file holding (symbol, session), for display."""
        return self._store.uri(layout_for(dataset).relative_path(symbol, session))

    def partition_files(self, dataset: str, partitions: Sequence[Partition]) -> list[str]:
        """Full paths or s3:// URIs of the files holding `partitions`, without repeats."""
        layout = layout_for(dataset)
        wanted = _validate_partitions(dataset, partitions)
        return [self._store.uri(path) for path in self._paths_of(layout, wanted)]

    @staticmethod
    def _map(function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(min(WRITE_THREADS, len(items))) as pool:
            return list(pool.map(function, items))
