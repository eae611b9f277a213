"""The `files` provider: bars, splits and dividends from CSV or Parquet files a user already has.

Like zipline's csvdir bundle: point a provider entry of kind `files` at a folder with one file
per symbol (`{symbol}.csv`, `.csv.gz`, a `.zip` holding one CSV, `.parquet`), or at one file
with a symbol column, and describe the columns in configs/providers.yaml (`FileMapping`,
files_mapping.py): names or positions, timestamp format and time zone, price scale, and
whether the prices are adjusted.

What the provider guarantees:

- Rows come out in the canonical bar schema: daily bars at the session date 00:00 UTC (the
  date is taken in the mapping's `timezone`), intraday bars at the UTC bar open (files that
  stamp bars at their close are shifted back one bar with `timestamp_marks: close`). Prices
  are multiplied by `price_scale` and rounded to 1e-9; volumes become int64.
- A file that does not match its mapping fails only the symbols it holds, with the file,
  the line (CSV; the row for Parquet), the field and the value in the message; the other
  symbols still load (`FetchResult.failures`). Empty (or NaN) prices and volumes pass on
  as nulls, so validation quarantines those rows and counts them; an unreadable value or a
  missing timestamp is a file error instead, because it means the mapping is wrong.
- Files declared `adjusted: true` are served as they are, never silently as raw: every
  result carries the note `price_adjustment: adjusted`, which the registry copies into the
  attempt records shown in the run's metadata.
- When the mapping names `split` and/or `dividend` columns (zipline's csvdir layout), the
  provider is also a source of corporate actions: a split is any row whose split value is
  neither 1 nor 0 (new shares per old share, 7.0 for AAPL's 7-for-1), a dividend any row
  with a positive cash amount, dated by the row's session (the ex-date).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from market_assets.core.providers.base import (
    ActionsRequest,
    BadRequestError,
    BarRequest,
    FetchResult,
    PermanentError,
    UnknownSymbolError,
)
from market_assets.core.providers.files_mapping import (
    PRICE_FIELDS,
    FileMapping,
    parse_mapping,
)
from market_assets.core.schemas import ACTION_SCHEMA, conform_bars, empty_bars
from market_assets.core.stores.layout import EXCHANGE_TZ, GRANULARITY_DATASET
from market_assets.core.symbols import validate_symbols

SOURCE = "files"
GENERIC_SETTINGS = ("kind", "api_key_env", "secret_key_env", "requests_per_minute")
BAR_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}
PRICE_DECIMALS = 9

LINE = "__line"  # 1-based line (CSV) or row (Parquet) number in the file
SYMBOL = "__symbol"
PROBLEM = "__problem"
RAW = "__raw_"  # prefix of the untouched text of each mapped column, kept for messages


class BadFileError(PermanentError):
    """A file does not match its provider's mapping; the message names file, line and field."""


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
        split or dividend column. Raises ValueError naming each bad `settings.<key>`.
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
        return (GRANULARITY_DATASET[str(settings.get("granularity", "1d"))],)

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
        read (otherwise unreadable symbols are listed in `failures`).
        """
        context = _context(request.dataset, request.start, request.end)
        if request.granularity != self.mapping.granularity:
            raise BadRequestError(
                f"these files hold {self.mapping.granularity} bars, not {request.granularity} "
                f"(settings.granularity)",
                symbols=request.symbols,
                **context,
            )
        rows, failures, files = self._read(request.symbols, context)
        frame = _bars(rows, self.mapping)
        frame = frame.filter(
            _session(self.mapping).is_between(request.start, request.end, closed="left")
        )
        return FetchResult(
            frame=frame.sort("symbol", "ts"),
            source=SOURCE,
            requests=files,
            failures=failures,
            notes=self._notes(),
        )

    def _notes(self) -> dict[str, str]:
        return {"price_adjustment": "adjusted"} if self.mapping.adjusted else {}

    def _read(
        self, symbols: Sequence[str], context: dict[str, Any]
    ) -> tuple[pl.DataFrame, dict[str, str], int]:
        """Parsed rows of `symbols`, a failure message per unreadable symbol, files read."""
        wanted = tuple(validate_symbols(symbols))
        root = self.mapping.root
        if not root.is_dir():
            raise BadRequestError(
                f"folder {root} does not exist (settings.directory "
                f"{self.mapping.directory!r}); put the files there or fix the setting",
                symbols=wanted,
                **context,
            )
        if self.mapping.one_file_per_symbol:
            frames, problems, files = self._read_per_symbol(wanted, context)
        else:
            frames, problems, files = self._read_shared(wanted, context)
        if len(problems) == len(wanted):
            raise _all_failed(wanted, problems, context)
        rows = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        return rows, {symbol: str(error) for symbol, error in problems.items()}, files

    def _read_per_symbol(
        self, wanted: tuple[str, ...], context: dict[str, Any]
    ) -> tuple[list[pl.DataFrame], dict[str, PermanentError], int]:
        """One file per symbol: a missing or unreadable file fails only its symbol."""
        frames: list[pl.DataFrame] = []
        problems: dict[str, PermanentError] = {}
        files = 0
        for symbol in wanted:
            path = self.mapping.path_for(symbol)
            if not path.is_file():
                problems[symbol] = UnknownSymbolError(
                    f"no file for {symbol}: {path} does not exist "
                    f"(pattern {self.mapping.pattern!r} in {self.mapping.root})",
                    symbols=(symbol,),
                    **context,
                )
                continue
            files += 1
            try:
                parsed, bad = read_file(path, self.mapping, wanted=(symbol,))
            except BadFileError as error:
                parsed, bad = None, {symbol: error.reason}
            if symbol in bad:
                problems[symbol] = BadFileError(bad[symbol], symbols=(symbol,), **context)
            elif parsed is not None:
                frames.append(parsed)
        return frames, problems, files

    def _read_shared(
        self, wanted: tuple[str, ...], context: dict[str, Any]
    ) -> tuple[list[pl.DataFrame], dict[str, PermanentError], int]:
        """One file for every symbol: bad rows fail only the symbols they belong to."""
        path = self.mapping.path_for(wanted[0])
        if not path.is_file():
            raise BadRequestError(
                f"file {path} does not exist (settings.directory and settings.pattern)",
                symbols=wanted,
                **context,
            )
        try:
            parsed, bad = read_file(path, self.mapping, wanted=wanted)
        except BadFileError as error:
            raise BadFileError(error.reason, symbols=wanted, **context) from None
        present = set(parsed.get_column(SYMBOL).unique().to_list())
        problems: dict[str, PermanentError] = {}
        for symbol in wanted:
            if symbol in bad:
                problems[symbol] = BadFileError(bad[symbol], symbols=(symbol,), **context)
            elif symbol not in present:
                problems[symbol] = UnknownSymbolError(
                    f"{path} has no rows for {symbol}", symbols=(symbol,), **context
                )
        return [parsed], problems, 1


class FilesActionsProvider(FilesProvider):
    """A FilesProvider whose files also carry split and/or dividend columns."""

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        """Splits and cash dividends with ex_date in [request.start, request.end)."""
        if not request.start < request.end:
            raise ValueError(
                f"start {request.start} must be before end {request.end} (end exclusive)"
            )
        context = _context("corporate_actions", request.start, request.end)
        rows, failures, files = self._read(request.symbols, context)
        frame = _actions(rows, self.mapping).filter(
            pl.col("ex_date").is_between(request.start, request.end, closed="left")
        )
        return FetchResult(
            frame=frame.sort("symbol", "ex_date", "action_type"),
            source=SOURCE,
            requests=files,
            failures=failures,
            notes=self._notes(),
        )


# ---------------------------------------------------------------------------- reading files


def read_file(
    path: Path, mapping: FileMapping, wanted: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rows of `wanted` symbols in one file, parsed into canonical fields.

    Returns the parsed rows (canonical field columns plus SYMBOL and LINE) of the symbols
    whose rows all parsed, and for every other symbol the first problem (file, line or row,
    field, value). Raises BadFileError when the file as a whole cannot be read with the
    mapping (not a CSV, a missing column, a ragged line).
    """
    raw, unit = _read_table(path, mapping)
    missing = {
        field: mapping.column_for(field)
        for field in mapping.wanted_fields()
        if mapping.column_for(field) not in raw.columns
    }
    if missing:
        shown = ", ".join(f"{col!r} for {field}" for field, col in missing.items())
        raise BadFileError(
            f"{path}: no column {shown} (settings.columns); the file's columns are {raw.columns}",
            vendor=SOURCE,
        )
    fields = mapping.wanted_fields()
    frame = raw.select(
        pl.col(LINE),
        *(pl.col(mapping.column_for(field)).alias(RAW + field) for field in fields),
    )
    frame = _drop_blank_rows(frame, fields)
    if mapping.one_file_per_symbol:
        frame = frame.with_columns(pl.lit(wanted[0]).alias(SYMBOL))
    else:
        frame = frame.with_columns(
            pl.col(RAW + "symbol").cast(pl.String).str.strip_chars().alias(SYMBOL)
        ).filter(pl.col(SYMBOL).is_in(list(wanted)))
    parsed = _parse_fields(frame, fields, mapping, path)
    problems = _first_problems(parsed, path, unit)
    good = parsed.filter(~pl.col(SYMBOL).is_in(list(problems)))
    return good.select(SYMBOL, LINE, *(f for f in fields if f != "symbol")), problems


def _read_table(path: Path, mapping: FileMapping) -> tuple[pl.DataFrame, str]:
    """The file as a frame (CSV: every column as text) with LINE numbers; "line" or "row"."""
    if mapping.file_format == "parquet":
        try:
            table = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise BadFileError(
                f"{path}: not a readable Parquet file: {exc}", vendor=SOURCE
            ) from None
        return table.with_row_index(LINE, offset=1), "row"
    data = _csv_bytes(path)
    first_line = mapping.skip_rows + (1 if mapping.header else 0) + 1
    columns = mapping.file_columns()
    try:
        table = pl.read_csv(
            io.BytesIO(data),
            has_header=mapping.header,
            new_columns=list(columns) if columns else None,
            infer_schema=False,
            skip_rows=mapping.skip_rows,
            separator=mapping.delimiter,
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:
        hint = _ragged_line(data, mapping, len(columns) if columns else None)
        raise BadFileError(
            f"{path}: cannot read it as CSV with this mapping{hint}: {exc}", vendor=SOURCE
        ) from None
    table = table.rename({name: name.strip() for name in table.columns})
    return table.with_row_index(LINE, offset=first_line), "line"


def _csv_bytes(path: Path) -> bytes:
    """The CSV text of `path`: plain, gzip-compressed, or the one CSV inside a zip."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [
                    m
                    for m in archive.infolist()
                    if not m.is_dir() and not m.filename.startswith("__MACOSX/")
                ]
                if len(members) != 1:
                    names = [m.filename for m in members]
                    raise BadFileError(
                        f"{path}: a zip must hold exactly one CSV file, it holds {names}",
                        vendor=SOURCE,
                    )
                return archive.read(members[0])
        if path.name.lower().endswith(".gz"):
            return gzip.decompress(path.read_bytes())
        return path.read_bytes()
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise BadFileError(f"{path}: cannot open it: {exc}", vendor=SOURCE) from None


def _ragged_line(data: bytes, mapping: FileMapping, expected: int | None) -> str:
    """ ", line N has K fields (expected E)" for the first line whose field count differs."""
    text = io.StringIO(data.decode("utf-8", errors="replace"))
    for _ in range(mapping.skip_rows):
        text.readline()
    reader = csv.reader(text, delimiter=mapping.delimiter)
    for row in reader:
        if not row:
            continue
        if expected is None:
            expected = len(row)
            continue
        if len(row) != expected:
            line = mapping.skip_rows + reader.line_num
            return f" (line {line} has {len(row)} fields, expected {expected})"
    return ""


def _drop_blank_rows(frame: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    """Blank CSV lines read as all-null rows; they carry nothing and are dropped."""
    return frame.filter(~pl.all_horizontal(pl.col(RAW + f).is_null() for f in fields))


def _parse_fields(
    frame: pl.DataFrame, fields: Sequence[str], mapping: FileMapping, path: Path
) -> pl.DataFrame:
    """Add a parsed column per field and PROBLEM: the first unreadable field of each row."""
    parsed = frame.with_columns(_timestamp(frame, mapping, path).alias("ts"))
    numbers = [f for f in fields if f not in ("ts", "symbol")]
    parsed = parsed.with_columns(_number(frame.schema[RAW + f], f, path) for f in numbers)
    checks = [_problem("ts", mapping.column_for("ts"), _timestamp_wanted(mapping), ts=True)]
    checks += [_problem(f, mapping.column_for(f), "a number") for f in numbers]
    return parsed.with_columns(pl.coalesce(checks).alias(PROBLEM))


def _text(field: str) -> pl.Expr:
    return pl.col(RAW + field).cast(pl.String).str.strip_chars()


def _problem(field: str, column: str, wanted: str, ts: bool = False) -> pl.Expr:
    """Message for a row whose `field` holds text that did not parse (or no timestamp).

    Empty or NaN prices and volumes are not problems: they pass on as nulls for quarantine.
    """
    given = _text(field)
    empty = given.is_null() | given.str.to_lowercase().is_in(["", "nan"])
    unreadable = ~empty & pl.col(field).is_null()
    quoted = pl.concat_str(pl.lit(f"field {field} (column '{column}'): '"), given.str.slice(0, 40))
    message = pl.when(unreadable).then(pl.concat_str(quoted, pl.lit(f"' is not {wanted}")))
    if ts:
        message = message.when(empty).then(pl.lit(f"field {field} (column '{column}') is empty"))
    return message.otherwise(None)


def _number(dtype: pl.DataType, field: str, path: Path) -> pl.Expr:
    if dtype == pl.String:
        value = _text(field).cast(pl.Float64, strict=False)
    elif dtype.is_numeric():
        value = pl.col(RAW + field).cast(pl.Float64)
    else:
        raise BadFileError(
            f"{path}: field {field} has type {dtype}, expected numbers", vendor=SOURCE
        )
    return value.fill_nan(None).alias(field)


def _timestamp_wanted(mapping: FileMapping) -> str:
    if mapping.timestamp_unit:
        return f"an epoch timestamp in {mapping.timestamp_unit}"
    if mapping.timestamp_format:
        return f"a timestamp in format '{mapping.timestamp_format}' ({mapping.timezone})"
    return f"a timestamp ({mapping.timezone})"


def _timestamp(frame: pl.DataFrame, mapping: FileMapping, path: Path) -> pl.Series:
    """UTC-aware bar timestamps; naive values are read in `mapping.timezone`."""
    raw = frame.get_column(RAW + "ts")
    dtype = raw.dtype
    if dtype == pl.String:
        text = raw.str.strip_chars()
        if mapping.timestamp_unit:
            value = pl.from_epoch(
                text.cast(pl.Int64, strict=False), time_unit=mapping.timestamp_unit
            )
        else:
            try:
                value = text.str.to_datetime(mapping.timestamp_format, strict=False, time_unit="us")
            except pl.exceptions.PolarsError:
                first = text.drop_nulls().head(1).to_list()
                raise BadFileError(
                    f"{path}: cannot work out the timestamp format of column "
                    f"'{mapping.column_for('ts')}' from values like {first}; set "
                    "settings.timestamp_format (e.g. '%Y-%m-%d %H:%M:%S')",
                    vendor=SOURCE,
                ) from None
    elif dtype.is_integer() and mapping.timestamp_unit:
        value = pl.from_epoch(raw, time_unit=mapping.timestamp_unit)
    elif dtype == pl.Date:
        value = raw.cast(pl.Datetime("us"))
    elif isinstance(dtype, pl.Datetime):
        value = raw.cast(pl.Datetime("us", dtype.time_zone))
    else:
        raise BadFileError(
            f"{path}: timestamp column '{mapping.column_for('ts')}' has type {dtype}; "
            "integers need settings.timestamp_unit (s, ms, us or ns)",
            vendor=SOURCE,
        )
    if getattr(value.dtype, "time_zone", None):
        return value.dt.convert_time_zone("UTC")
    local = value.dt.replace_time_zone(mapping.timezone, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def _first_problems(parsed: pl.DataFrame, path: Path, unit: str) -> dict[str, str]:
    """For each symbol with unreadable rows: its first one, and how many there are."""
    bad = parsed.filter(pl.col(PROBLEM).is_not_null())
    if bad.is_empty():
        return {}
    summary = bad.group_by(SYMBOL, maintain_order=True).agg(
        pl.col(LINE).first(), pl.col(PROBLEM).first(), pl.len().alias("count")
    )
    problems: dict[str, str] = {}
    for symbol, line, problem, count in summary.iter_rows():
        more = f" ({count - 1} more bad {unit}s)" if count > 1 else ""
        problems[symbol] = f"{path} {unit} {line}: {problem}{more}"
    return problems


# ---------------------------------------------------------------------------- canonical rows


def _session(mapping: FileMapping) -> pl.Expr:
    """The session (a date) of each canonical bar."""
    if mapping.granularity == "1d":
        return pl.col("ts").dt.date()
    return pl.col("ts").dt.convert_time_zone(str(EXCHANGE_TZ)).dt.date()


def _local_date(mapping: FileMapping) -> pl.Expr:
    return pl.col("ts").dt.convert_time_zone(mapping.timezone).dt.date()


def _bars(rows: pl.DataFrame, mapping: FileMapping) -> pl.DataFrame:
    """Parsed rows -> canonical bars (source `files`; the registry relabels it)."""
    if rows.is_empty():
        return empty_bars()
    if mapping.granularity == "1d":
        ts = _local_date(mapping).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif mapping.timestamp_marks == "close":
        ts = pl.col("ts") - pl.duration(minutes=BAR_MINUTES[mapping.granularity])
    else:
        ts = pl.col("ts")
    prices = [
        (pl.col(f) * mapping.price_scale).round(PRICE_DECIMALS).alias(f)
        for f in PRICE_FIELDS
        if f in rows.columns and f != "dividend"
    ]
    counts = [
        pl.col(f).round(0).cast(pl.Int64).alias(f)
        for f in ("volume", "trade_count")
        if f in rows.columns
    ]
    return conform_bars(
        rows.with_columns(
            ts.alias("ts"),
            pl.col(SYMBOL).alias("symbol"),
            *prices,
            *counts,
            pl.lit(mapping.granularity).alias("granularity"),
            pl.lit(SOURCE).alias("source"),
        )
    )


def _actions(rows: pl.DataFrame, mapping: FileMapping) -> pl.DataFrame:
    """Split and dividend columns -> ACTION_SCHEMA rows (ex_date = the row's session)."""
    if rows.is_empty():
        return pl.DataFrame(schema=ACTION_SCHEMA)
    base = rows.with_columns(pl.col(SYMBOL).alias("symbol"), _local_date(mapping).alias("ex_date"))
    frames = []
    if "split" in rows.columns:
        frames.append(
            base.filter(pl.col("split").is_not_null() & (pl.col("split") > 0))
            .filter(pl.col("split") != 1.0)
            .select(
                "symbol",
                "ex_date",
                pl.lit("split").alias("action_type"),
                pl.col("split").alias("ratio"),
                pl.lit(None, pl.Float64).alias("amount"),
                pl.lit(None, pl.String).alias("currency"),
            )
        )
    if "dividend" in rows.columns:
        frames.append(
            base.filter(pl.col("dividend") > 0).select(
                "symbol",
                "ex_date",
                pl.lit("dividend").alias("action_type"),
                pl.lit(None, pl.Float64).alias("ratio"),
                (pl.col("dividend") * mapping.price_scale).round(PRICE_DECIMALS).alias("amount"),
                pl.lit(mapping.currency).alias("currency"),
            )
        )
    frame = pl.concat(frames).with_columns(pl.lit(SOURCE).alias("source"))
    return frame.select(pl.col(name).cast(dtype) for name, dtype in ACTION_SCHEMA.items())


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
