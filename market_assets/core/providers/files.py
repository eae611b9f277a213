"""The `files` provider: bars, splits and dividends from CSV or Parquet files a user already has.

Like zipline's csvdir bundle: point a provider entry of kind `files` at a folder with one file
per symbol (`{symbol}.csv`, `.csv.gz`, a `.zip` holding one CSV, `.parquet`), one file per
symbol and day (`{symbol_lower}/{date:%Y%m%d}_trade.zip`), or one file with a symbol
column, and describe the columns in configs/providers.yaml (`FileMapping`,
files_mapping.py): names or positions, timestamp format and time zone, price scale, and
how the vendor adjusted the prices.

What the provider guarantees:

- Rows come out in the canonical bar schema: daily bars at the session date 00:00 UTC (the
  date the file writes, at the timestamp's own UTC offset when it has one), intraday bars at
  the UTC bar open (files that stamp bars at their close are shifted back one bar with
  `timestamp_marks: close`). Prices are multiplied by `price_scale` and rounded to 1e-9;
  volumes become int64.
- A file that does not match its mapping fails only the symbols it holds, with the file,
  the line (CSV; the row for Parquet), the field and the value in the message; the other
  symbols still load (`FetchResult.failures`). A file whose rows all fall outside the
  requested range says which dates it holds, rather than "no data".
- Prices are never served under a false label: split-adjusted files are restored to raw
  prices with the splits they list, fully adjusted files carry the note
  `price_adjustment: fully_adjusted`, which the registry copies into the attempt records
  shown in the run's metadata.
- `regular_hours_only: true` leaves out intraday bars outside the regular session of
  `calendar` and counts them (`FetchResult.dropped["extended_hours"]`).
- When the mapping names `split` and/or `dividend` columns (zipline's csvdir layout) or a
  separate actions file, the provider is also a source of corporate actions: a split is any
  row whose split value is neither 1 nor 0 (new shares per old share, 7.0 for AAPL's
  7-for-1), a dividend any row with a positive cash amount, dated by the row's session.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.errors import cannot
from market_assets.core.providers.base import (
    ActionsRequest,
    BadRequestError,
    BarRequest,
    FetchResult,
    NoDataError,
    PermanentError,
    UnknownSymbolError,
)
from market_assets.core.providers.files_actions import (
    actions_from_columns,
    read_actions_file,
    restore_raw_prices,
    splits_of,
)
from market_assets.core.providers.files_mapping import (
    PRICE_FIELDS,
    FileMapping,
    parse_mapping,
)
from market_assets.core.providers.files_read import (
    LOCAL_DATE,
    SOURCE,
    SYMBOL,
    BadFileError,
    file_exists,
    open_folder,
    read_file,
)
from market_assets.core.schemas import ACTION_SCHEMA, conform_bars, empty_bars
from market_assets.core.stores.layout import EXCHANGE_TZ, GRANULARITY_DATASET
from market_assets.core.symbols import validate_symbols
from market_assets.core.transforms.resample import regular_hours_mask

__all__ = ["BadFileError", "FilesActionsProvider", "FilesProvider", "read_file"]

GENERIC_SETTINGS = ("kind", "api_key_env", "secret_key_env", "requests_per_minute")
BAR_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}
PRICE_DECIMALS = 9
EXTENDED_HOURS = "extended_hours"


class FilesProvider:
    """Bars from a folder of CSV or Parquet files, read through a `FileMapping`.

    Serves one granularity: the one the files hold (`settings.granularity`, default 1d).
    Every call re-reads the files it needs; the count of files read is reported as the
    call's `requests`.
    """

    name = SOURCE

    def __init__(self, mapping: FileMapping) -> None:
        self.mapping = mapping
        self.granularities: tuple[str, ...] = (mapping.granularity,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mapping.root / self.mapping.pattern})"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> FilesProvider:
        """Build from a providers.yaml entry's settings (validated by FileMapping).

        `kind` must be "files" when present; the vendor-generic keys (`api_key_env`, ...)
        are accepted and ignored. Returns a FilesActionsProvider when the mapping names a
        split or dividend column or an actions file. Raises ValueError naming each bad
        `settings.<key>`.
        """
        options = dict(settings)
        kind = options.get("kind", SOURCE)
        if kind != SOURCE:
            raise ValueError(f"FilesProvider cannot be built from kind {kind!r}")
        for key in GENERIC_SETTINGS:
            options.pop(key, None)
        mapping = parse_mapping(options)
        if mapping.has_actions:
            return FilesActionsProvider(mapping)
        return FilesProvider(mapping)

    @classmethod
    def file_datasets(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The bar dataset of the files' granularity (market_assets.core.providers.files_route)."""
        dataset = GRANULARITY_DATASET.get(str(settings.get("granularity", "1d")))
        return (dataset,) if dataset else ()

    @classmethod
    def file_patterns(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        pattern = str(settings.get("pattern", "{symbol}.csv"))
        return (re.sub(r"{[^{}]*}", "*", pattern),)

    @classmethod
    def from_files(cls, settings: Mapping[str, Any], directory: str | Path) -> FilesProvider:
        """This mapping reading `directory` instead of its configured folder."""
        return cls.from_config({**settings, "directory": str(directory)})

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        """Canonical bars for the sessions in [request.start, request.end).

        Raises BadRequestError when the folder is missing or the granularity is not the
        files' own; UnknownSymbolError or BadFileError when no requested symbol could be
        read (otherwise unreadable symbols are listed in `failures`); NoDataError naming the
        dates each file holds when none has a row in the range.
        """
        context = _context(request.dataset, request.start, request.end)
        if request.granularity != self.mapping.granularity:
            raise BadRequestError(
                f"these files hold {self.mapping.granularity} bars, not {request.granularity} "
                f"(settings.granularity)",
                symbols=request.symbols,
                **context,
            )
        rows, failures, files = self._read(request.symbols, context, request.start, request.end)
        rows, notes = self._in_raw_terms(rows, request.symbols, context)
        frame = _bars(rows, self.mapping)
        frame = frame.filter(
            _session(self.mapping).is_between(request.start, request.end, closed="left")
        )
        dropped: dict[str, int] = {}
        if self.mapping.regular_hours_only and not frame.is_empty():
            calendar = get_calendar(self.mapping.calendar)
            regular = regular_hours_mask(frame.get_column("ts"), calendar)
            kept = frame.filter(regular.fill_null(True))
            dropped[EXTENDED_HOURS] = frame.height - kept.height
            frame = kept
        failures.update(self._empty_symbols(rows, frame, request.symbols, failures, context))
        return FetchResult(
            frame=frame.sort("symbol", "ts"),
            source=SOURCE,
            requests=files,
            failures=failures,
            notes=notes,
            dropped={reason: count for reason, count in dropped.items() if count},
        )

    def fetch_vendor_adjusted_closes(
        self, symbols: Sequence[str], start: dt.date, end: dt.date
    ) -> pl.DataFrame:
        """The vendor's adjusted close (the `adj_close` column) as (symbol, ts,
        vendor_adj_close) for sessions in [start, end); empty when the files have none.
        Symbols that cannot be read are left out."""
        schema = {
            "symbol": pl.String(),
            "ts": empty_bars().schema["ts"],
            "vendor_adj_close": pl.Float64(),
        }
        if "adj_close" not in self.mapping.wanted_fields():
            return pl.DataFrame(schema=schema)
        context = _context("bars_1d", start, end)
        try:
            rows, _, _ = self._read(tuple(symbols), context, start, end)
        except PermanentError:
            return pl.DataFrame(schema=schema)
        if rows.is_empty():
            return pl.DataFrame(schema=schema)
        scaled = _scaled(rows, self.mapping)
        return (
            scaled.with_columns(_bar_ts(self.mapping).alias("ts"))
            .filter(_session(self.mapping).is_between(start, end, closed="left"))
            .select(
                pl.col(SYMBOL).alias("symbol"),
                "ts",
                pl.col("adj_close").alias("vendor_adj_close"),
            )
            .sort("symbol", "ts")
        )

    def _notes(self, detail: str = "") -> dict[str, str]:
        mode = self.mapping.price_adjustment
        if mode == "raw":
            return {}
        return {"price_adjustment": f"{mode}{detail}"}

    def _in_raw_terms(
        self, rows: pl.DataFrame, symbols: Sequence[str], context: dict[str, Any]
    ) -> tuple[pl.DataFrame, dict[str, str]]:
        """Scaled rows; split-adjusted ones restored to raw with the listed splits."""
        rows = _scaled(rows, self.mapping)
        if self.mapping.price_adjustment != "split_adjusted":
            return rows, self._notes()
        splits = splits_of(self._listed_actions(rows, tuple(symbols), context))
        if splits.is_empty():
            return rows, self._notes(" (no split listed: prices as the files give them)")
        restored = restore_raw_prices(rows, splits, PRICE_FIELDS)
        return restored, self._notes(f", restored to raw with {splits.height} listed split(s)")

    def _listed_actions(
        self, rows: pl.DataFrame, symbols: tuple[str, ...], context: dict[str, Any]
    ) -> pl.DataFrame:
        """Every action the files list for `symbols`: columns of `rows` plus the actions file."""
        frames = [actions_from_columns(rows, self.mapping)]
        if self.mapping.actions is not None:
            listed, _ = read_actions_file(self.mapping, symbols, context)
            frames.append(listed)
        return pl.concat(frames)

    def _empty_symbols(
        self,
        rows: pl.DataFrame,
        frame: pl.DataFrame,
        symbols: Sequence[str],
        failures: dict[str, str],
        context: dict[str, Any],
    ) -> dict[str, str]:
        """A message for each symbol read without error but with no row in the range, naming
        the dates its file holds; raises NoDataError when that is every symbol."""
        served = set(frame.get_column("symbol").unique().to_list())
        empty = [s for s in symbols if s not in served and s not in failures]
        if not empty:
            return {}
        spans = {
            symbol: (first, last)
            for symbol, first, last in rows.group_by(SYMBOL)
            .agg(pl.col(LOCAL_DATE).min().alias("first"), pl.col(LOCAL_DATE).max().alias("last"))
            .iter_rows()
        }
        where = f"[{context['start']}, {context['end']})"
        messages = {}
        for symbol in empty:
            source = self.mapping.root if self.mapping.per_day else self.mapping.path_for(symbol)
            if symbol in spans:
                first, last = spans[symbol]
                held = f"{source} holds {symbol} from {first} to {last}"
                reason = "no regular-hours row" if self.mapping.regular_hours_only else "no row"
                messages[symbol] = f"{held}: {reason} in {where}"
            else:
                messages[symbol] = f"{source} has no rows for {symbol} in {where}"
        if not served and not failures:
            raise NoDataError("; ".join(messages.values()), symbols=tuple(symbols), **context)
        return messages

    def _read(
        self,
        symbols: Sequence[str],
        context: dict[str, Any],
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> tuple[pl.DataFrame, dict[str, str], int]:
        """Parsed rows of `symbols`, a failure message per unreadable symbol, files read.

        Per-day files are read for the days in [start, end); other files whole.
        """
        wanted = tuple(validate_symbols(symbols))
        root = self.mapping.root
        try:
            open_folder(root)
        except FileNotFoundError:
            raise BadRequestError(
                f"folder {root} does not exist (settings.directory "
                f"{self.mapping.directory!r}); put the files there or fix the setting",
                symbols=wanted,
                **context,
            ) from None
        except OSError as exc:
            raise BadRequestError(
                f"{cannot('open folder', root, exc)} (settings.directory)",
                symbols=wanted,
                **context,
            ) from None
        days = _days(start, end) if self.mapping.per_day else [None]
        if self.mapping.one_file_per_symbol:
            frames, problems, files = self._read_per_symbol(wanted, days, context)
        else:
            frames, problems, files = self._read_shared(wanted, days, context)
        if len(problems) == len(wanted):
            raise _all_failed(wanted, problems, context)
        rows = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        return rows, {symbol: str(error) for symbol, error in problems.items()}, files

    def _read_per_symbol(
        self, wanted: tuple[str, ...], days: list[dt.date | None], context: dict[str, Any]
    ) -> tuple[list[pl.DataFrame], dict[str, PermanentError], int]:
        """One file per symbol (and day): a missing or unreadable file fails only its symbol."""
        frames: list[pl.DataFrame] = []
        problems: dict[str, PermanentError] = {}
        files = 0
        for symbol in wanted:
            found = [(day, self.mapping.path_for(symbol, day)) for day in days]
            try:
                found = [(day, path) for day, path in found if file_exists(path)]
            except BadFileError as error:
                problems[symbol] = BadFileError(error.reason, symbols=(symbol,), **context)
                continue
            if not found:
                problems[symbol] = UnknownSymbolError(
                    self._no_file(symbol, days), symbols=(symbol,), **context
                )
                continue
            for day, path in found:
                files += 1
                try:
                    parsed, bad = read_file(path, self.mapping, wanted=(symbol,), day=day)
                except BadFileError as error:
                    parsed, bad = None, {symbol: error.reason}
                if symbol in bad:
                    problems[symbol] = BadFileError(bad[symbol], symbols=(symbol,), **context)
                    break
                if parsed is not None:
                    frames.append(parsed)
        return frames, problems, files

    def _read_shared(
        self, wanted: tuple[str, ...], days: list[dt.date | None], context: dict[str, Any]
    ) -> tuple[list[pl.DataFrame], dict[str, PermanentError], int]:
        """One file for every symbol (per day): bad rows fail only the symbols they belong to."""
        found = [(day, self.mapping.path_for(wanted[0], day)) for day in days]
        try:
            found = [(day, path) for day, path in found if file_exists(path)]
        except BadFileError as error:
            raise BadFileError(error.reason, symbols=wanted, **context) from None
        if not found:
            raise BadRequestError(
                self._no_file(None, days) + " (settings.directory and settings.pattern)",
                symbols=wanted,
                **context,
            )
        frames: list[pl.DataFrame] = []
        bad: dict[str, str] = {}
        for day, path in found:
            try:
                parsed, problems = read_file(path, self.mapping, wanted=wanted, day=day)
            except BadFileError as error:
                raise BadFileError(error.reason, symbols=wanted, **context) from None
            frames.append(parsed)
            for symbol, problem in problems.items():
                bad.setdefault(symbol, problem)
        present = set(pl.concat(frames).get_column(SYMBOL).unique().to_list())
        errors: dict[str, PermanentError] = {}
        where = found[0][1] if len(found) == 1 else f"{len(found)} files in {self.mapping.root}"
        for symbol in wanted:
            if symbol in bad:
                errors[symbol] = BadFileError(bad[symbol], symbols=(symbol,), **context)
            elif symbol not in present:
                errors[symbol] = UnknownSymbolError(
                    f"{where} has no rows for {symbol}", symbols=(symbol,), **context
                )
        frames = [frame.filter(~pl.col(SYMBOL).is_in(list(errors))) for frame in frames]
        return frames, errors, len(found)

    def _no_file(self, symbol: str | None, days: list[dt.date | None]) -> str:
        """Why no file was found for `symbol` (None: the one shared file)."""
        pattern = f"pattern {self.mapping.pattern!r} in {self.mapping.root}"
        if days == [None] and symbol is None:
            return f"file {self.mapping.path_for('')} does not exist"
        if days == [None]:
            path = self.mapping.path_for(symbol)
            return f"no file for {symbol}: {path} does not exist ({pattern})"
        span = f"{days[0]} .. {days[-1]}" if days else "no day"
        owner = f"for {symbol} " if symbol else ""
        return f"no file {owner}on any day of {span} ({pattern})"


class FilesActionsProvider(FilesProvider):
    """A FilesProvider whose files also carry splits and/or dividends (columns or a file)."""

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        """Splits and cash dividends with ex_date in [request.start, request.end)."""
        if not request.start < request.end:
            raise ValueError(
                f"start {request.start} must be before end {request.end} (end exclusive)"
            )
        context = _context("corporate_actions", request.start, request.end)
        symbols = tuple(validate_symbols(request.symbols))
        frames: list[pl.DataFrame] = []
        failures: dict[str, str] = {}
        files = 0
        columns = {"split", "dividend"} & set(self.mapping.wanted_fields())
        if columns:
            rows, failures, files = self._read(symbols, context, request.start, request.end)
            rows, _ = self._in_raw_terms(rows, symbols, context)
            frames.append(actions_from_columns(rows, self.mapping))
        if self.mapping.actions is not None:
            listed, problems = read_actions_file(self.mapping, symbols, context)
            files += len({self.mapping.actions.path_for(self.mapping.root, s) for s in symbols})
            if len(problems) == len(symbols) and not frames:
                raise _all_failed(symbols, problems, context)
            failures.update({s: str(e) for s, e in problems.items() if s not in failures})
            frames.append(listed)
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=ACTION_SCHEMA)
        frame = frame.filter(
            pl.col("ex_date").is_between(request.start, request.end, closed="left")
        ).unique(maintain_order=True)
        return FetchResult(
            frame=frame.sort("symbol", "ex_date", "action_type"),
            source=SOURCE,
            requests=files,
            failures=failures,
            notes=self._notes(),
        )


# ---------------------------------------------------------------------------- canonical rows


def _days(start: dt.date | None, end: dt.date | None) -> list[dt.date | None]:
    """Every calendar day in [start, end) (per-day files may exist for any of them)."""
    if start is None or end is None:
        raise ValueError("per-day files are read for a range of days: give start and end")
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]


def _session(mapping: FileMapping) -> pl.Expr:
    """The session (a date) of each canonical bar."""
    if mapping.granularity == "1d":
        return pl.col("ts").dt.date()
    return pl.col("ts").dt.convert_time_zone(str(EXCHANGE_TZ)).dt.date()


def _scaled(rows: pl.DataFrame, mapping: FileMapping) -> pl.DataFrame:
    """Prices (and dividends) x `price_scale`, rounded to 1e-9."""
    if rows.is_empty():
        return rows
    return rows.with_columns(
        (pl.col(f) * mapping.price_scale).round(PRICE_DECIMALS).alias(f)
        for f in PRICE_FIELDS
        if f in rows.columns
    )


def _bar_ts(mapping: FileMapping) -> pl.Expr:
    """The canonical `ts` of parsed rows: the local date 00:00 UTC for daily bars, else the
    UTC bar open."""
    if mapping.granularity == "1d":
        return pl.col(LOCAL_DATE).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if mapping.timestamp_marks == "close":
        return pl.col("ts") - pl.duration(minutes=BAR_MINUTES[mapping.granularity])
    return pl.col("ts")


def _bars(rows: pl.DataFrame, mapping: FileMapping) -> pl.DataFrame:
    """Scaled rows -> canonical bars (source `files`; the registry relabels it)."""
    if rows.is_empty():
        return empty_bars()
    counts = [
        pl.col(f).round(0).cast(pl.Int64).alias(f)
        for f in ("volume", "trade_count")
        if f in rows.columns
    ]
    return conform_bars(
        rows.with_columns(
            _bar_ts(mapping).alias("ts"),
            pl.col(SYMBOL).alias("symbol"),
            *counts,
            pl.lit(mapping.granularity).alias("granularity"),
            pl.lit(SOURCE).alias("source"),
        )
    )


def _context(dataset: str, start: dt.date, end: dt.date) -> dict[str, Any]:
    return {"vendor": SOURCE, "dataset": dataset, "start": start, "end": end}


def _all_failed(
    symbols: tuple[str, ...], problems: Mapping[str, PermanentError], context: dict[str, Any]
) -> PermanentError:
    """One error for a call where no requested symbol could be read."""
    reasons = "; ".join(error.reason for error in problems.values())
    kind = (
        UnknownSymbolError
        if all(isinstance(e, UnknownSymbolError) for e in problems.values())
        else BadFileError
    )
    return kind(reasons, symbols=symbols, **context)

