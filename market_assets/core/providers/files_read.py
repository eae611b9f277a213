"""Reading one user file through a `FileMapping`: parsed fields, problems by file and line.

A file that does not match its mapping fails only the symbols it holds, with the file, the
line (CSV; the row for Parquet), the field and the value in the message. Empty (or NaN)
prices and volumes pass on as nulls, so validation quarantines those rows and counts them; an
unreadable value or a missing timestamp is a file error instead, because it means the
mapping is wrong.

Timestamps: a value carrying its own UTC offset (or a zone-aware Parquet column) is read at
that offset, and its LOCAL date (the session date of a daily bar) is the date at that offset,
never the date in another zone. When `settings.timezone` is set and disagrees with a value's
own offset, the row is a problem naming file, line and both offsets: reading it either way
could move a bar to another day. Naive values are read in `settings.timezone` (UTC when
unset); epoch numbers are UTC instants. Per-day files add the time of day in the rows to the
date in the file name.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from market_assets.core.errors import cannot
from market_assets.core.providers.base import PermanentError
from market_assets.core.providers.files_mapping import FileMapping

SOURCE = "files"
LINE = "__line"  # 1-based line (CSV) or row (Parquet) number in the file
SYMBOL = "__symbol"
PROBLEM = "__problem"
LOCAL_DATE = "__local_date"  # the date of each timestamp where it was written
RAW = "__raw_"  # prefix of the untouched text of each mapped column, kept for messages
ZONE_PROBLEM = "__zone_problem"
OFFSET = r"(Z|z|[+-]\d{2}:?\d{2})$"
UNIT_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


class BadFileError(PermanentError):
    """A file does not match its provider's mapping; the message names file, line and field."""


def read_file(
    path: Path, mapping: FileMapping, wanted: Sequence[str], day: dt.date | None = None
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rows of `wanted` symbols in one file, parsed into canonical fields.

    `day` is the date a per-day file holds (from its name). Returns the parsed rows
    (canonical field columns plus SYMBOL, LINE and LOCAL_DATE) of the symbols whose rows all
    parsed, and for every other symbol the first problem (file, line or row, field, value).
    Raises BadFileError when the file as a whole cannot be read with the mapping (not a CSV,
    a missing column, a ragged line).
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
    parsed = _parse_fields(frame, fields, mapping, path, day)
    problems = _first_problems(parsed, path, unit)
    good = parsed.filter(~pl.col(SYMBOL).is_in(list(problems)))
    kept = (f for f in fields if f != "symbol")
    return good.select(SYMBOL, LINE, LOCAL_DATE, *kept), problems


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
    data = csv_bytes(path)
    first_line = mapping.skip_rows + (1 if mapping.header else 0) + 1
    columns = mapping.file_columns()
    refuse_truncated(path, data, mapping.delimiter, mapping.skip_rows)
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


def file_exists(path: Path) -> bool:
    """Whether `path` is a file; BadFileError naming it when this user may not look there."""
    try:
        return path.is_file()
    except OSError as exc:
        raise BadFileError(cannot("look for", path, exc), vendor=SOURCE) from None


def open_folder(root: Path) -> None:
    """Raise OSError unless `root` is a folder this user may look into (os.stat of `root/.`
    needs search permission on it); FileNotFoundError when it does not exist."""
    if not root.is_dir():
        raise FileNotFoundError(2, "No such folder", str(root))
    os.stat(os.path.join(root, os.curdir))


def csv_bytes(path: Path) -> bytes:
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


def refuse_truncated(path: Path, data: bytes, delimiter: str, skip_rows: int = 0) -> None:
    """Raise BadFileError when the last line of a CSV has fewer fields than the line before it
    (the `skip_rows` first lines aside): the file was cut short, by an interrupted download
    or copy, so the rows that followed the cut are missing too.

    One error for the whole file and none of its rows used: a partial last line cannot be
    trusted field by field, and storing the complete rows would replace the stored partitions
    the file no longer reaches with nothing. A cut that leaves every field of the last line
    (inside its last value, with no newline after it) cannot be told from a complete file.
    """
    first = 0
    for _ in range(skip_rows):
        first = data.find(b"\n", first) + 1
        if first == 0:
            return
    last = _last_line(data, first, len(data))
    previous = _last_line(data, first, last[0]) if last is not None else None
    if last is None or previous is None:
        return
    text = data[last[0] : last[1]].decode("utf-8", errors="replace")
    fields = _fields(text, delimiter)
    expected = len(_fields(data[previous[0] : previous[1]].decode("utf-8", "replace"), delimiter))
    if len(fields) >= expected:
        return
    line = data.count(b"\n", 0, last[0]) + 1
    cut = "" if data.endswith((b"\n", b"\r")) else ", and the file ends inside it"
    raise BadFileError(
        f"{path} line {line}: truncated file: its last line has {len(fields)} of {expected} "
        f"fields ({text.strip()[:60]!r}){cut}; it was cut short (an interrupted download or "
        "copy?) and rows after the cut are missing, so none of its rows were used: fetch or "
        "copy the file again",
        vendor=SOURCE,
    )


def _last_line(data: bytes, first: int, end: int) -> tuple[int, int] | None:
    """(start, end) of the last line of `data[first:end]` that is not blank, or None."""
    while end > first:
        while end > first and data[end - 1] in b"\r\n":
            end -= 1
        start = max(data.rfind(b"\n", first, end) + 1, first)
        if data[start:end].strip():
            return start, end
        end = start
    return None


def _fields(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line.rstrip("\r")], delimiter=delimiter), [])


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
    frame: pl.DataFrame,
    fields: Sequence[str],
    mapping: FileMapping,
    path: Path,
    day: dt.date | None,
) -> pl.DataFrame:
    """Add a parsed column per field and PROBLEM: the first unreadable field of each row."""
    parsed = frame.with_columns(_timestamps(frame, mapping, path, day))
    numbers = [f for f in fields if f not in ("ts", "symbol")]
    parsed = parsed.with_columns(_number(frame.schema[RAW + f], f, path) for f in numbers)
    checks = [
        pl.col(ZONE_PROBLEM),
        _problem("ts", mapping.column_for("ts"), _timestamp_wanted(mapping), ts=True),
    ]
    checks += [_problem(f, mapping.column_for(f), "a number") for f in numbers]
    return parsed.with_columns(pl.coalesce(checks).alias(PROBLEM)).drop(ZONE_PROBLEM)


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
    if mapping.per_day:
        if mapping.timestamp_unit:
            return f"a time of day in {mapping.timestamp_unit} since midnight"
        return f"a time of day in format '{mapping.timestamp_format}' ({mapping.zone})"
    if mapping.timestamp_unit:
        return f"an epoch timestamp in {mapping.timestamp_unit}"
    if mapping.timestamp_format:
        return f"a timestamp in format '{mapping.timestamp_format}' ({mapping.zone})"
    return f"a timestamp ({mapping.zone})"


def _timestamps(
    frame: pl.DataFrame, mapping: FileMapping, path: Path, day: dt.date | None
) -> list[pl.Series]:
    """UTC-aware `ts`, the LOCAL_DATE of each value and ZONE_PROBLEM (offset disagreements)."""
    raw = frame.get_column(RAW + "ts")
    offsets: pl.Series | None = None  # seconds east of UTC written with each value
    if day is not None:
        value = _time_of_day(raw, mapping, day)
    elif raw.dtype == pl.String:
        text = raw.str.strip_chars()
        value = _parse_text(text, mapping, path)
        if getattr(value.dtype, "time_zone", None):
            offsets = _written_offsets(text)
    elif raw.dtype.is_integer() and mapping.timestamp_unit:
        value = pl.from_epoch(raw, time_unit=mapping.timestamp_unit).dt.replace_time_zone("UTC")
    elif raw.dtype == pl.Date:
        value = raw.cast(pl.Datetime("us"))
    elif isinstance(raw.dtype, pl.Datetime):
        value = raw.cast(pl.Datetime("us", raw.dtype.time_zone))
        if raw.dtype.time_zone:
            offsets = _zone_offsets(value, raw.dtype.time_zone)
    else:
        raise BadFileError(
            f"{path}: timestamp column '{mapping.column_for('ts')}' has type {raw.dtype}; "
            "integers need settings.timestamp_unit (s, ms, us or ns)",
            vendor=SOURCE,
        )
    if not getattr(value.dtype, "time_zone", None):  # naive: a wall clock in mapping.zone
        local = value.dt.replace_time_zone(mapping.zone, ambiguous="earliest", non_existent="null")
        utc = local.dt.convert_time_zone("UTC")
        return [utc.alias("ts"), value.dt.date().alias(LOCAL_DATE), _no_problem(len(raw))]
    utc = value.dt.convert_time_zone("UTC")
    if offsets is None:  # epoch instants: dated in the configured zone
        local_date = utc.dt.convert_time_zone(mapping.zone).dt.date()
        return [utc.alias("ts"), local_date.alias(LOCAL_DATE), _no_problem(len(raw))]
    local_date = (utc.dt.replace_time_zone(None) + pl.duration(seconds=offsets)).dt.date()
    return [
        utc.alias("ts"),
        local_date.alias(LOCAL_DATE),
        _zone_disagreements(frame, utc, offsets, mapping),
    ]


def _parse_text(text: pl.Series, mapping: FileMapping, path: Path) -> pl.Series:
    if mapping.timestamp_unit:
        return pl.from_epoch(
            text.cast(pl.Int64, strict=False), time_unit=mapping.timestamp_unit
        ).dt.replace_time_zone("UTC")
    try:
        return text.str.to_datetime(mapping.timestamp_format, strict=False, time_unit="us")
    except pl.exceptions.PolarsError:
        first = text.drop_nulls().head(1).to_list()
        raise BadFileError(
            f"{path}: cannot work out the timestamp format of column "
            f"'{mapping.column_for('ts')}' from values like {first}; set "
            "settings.timestamp_format (e.g. '%Y-%m-%d %H:%M:%S')",
            vendor=SOURCE,
        ) from None


def _time_of_day(raw: pl.Series, mapping: FileMapping, day: dt.date) -> pl.Series:
    """Naive wall-clock timestamps: `day` (from the file name) plus the row's time of day."""
    midnight = pl.lit(dt.datetime.combine(day, dt.time(0)), dtype=pl.Datetime("us"))
    if mapping.timestamp_unit:
        number = raw.cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)
        per_unit = UNIT_MICROSECONDS[mapping.timestamp_unit]
        micros = number // 1000 if per_unit is None else number * per_unit
        offset = pl.duration(microseconds=pl.lit(micros))
    else:
        times = raw.cast(pl.String).str.strip_chars().str.to_time(
            mapping.timestamp_format, strict=False
        )
        offset = pl.duration(microseconds=pl.lit(times).cast(pl.Int64) // 1000)
    return pl.select((midnight + offset).alias("ts")).to_series()


def _written_offsets(text: pl.Series) -> pl.Series:
    """Seconds east of UTC written at the end of each timestamp text (Z, +08:00, -0500)."""
    written = text.str.extract(OFFSET, 1)
    digits = written.str.replace(":", "").str.replace(r"^[Zz]$", "+0000")
    sign = pl.when(digits.str.slice(0, 1) == "-").then(-1).otherwise(1)
    hours = digits.str.slice(1, 2).cast(pl.Int64, strict=False)
    minutes = digits.str.slice(3, 2).cast(pl.Int64, strict=False)
    return pl.select((sign * (hours * 3600 + minutes * 60)).alias("offset")).to_series()


def _zone_offsets(instants: pl.Series, zone: str) -> pl.Series:
    """Seconds east of UTC of `zone` at each instant."""
    local = instants.dt.convert_time_zone(zone)
    total = local.dt.base_utc_offset() + local.dt.dst_offset()
    return total.dt.total_seconds().cast(pl.Int64)


def _zone_disagreements(
    frame: pl.DataFrame, utc: pl.Series, offsets: pl.Series, mapping: FileMapping
) -> pl.Series:
    """A problem for each value whose own offset is not `settings.timezone`'s at that moment."""
    if mapping.timezone is None:
        return _no_problem(len(utc))
    expected = _zone_offsets(utc, mapping.timezone)
    column = mapping.column_for("ts")
    given = frame.get_column(RAW + "ts").cast(pl.String).str.strip_chars().str.slice(0, 40)
    table = pl.DataFrame({"given": given, "own": offsets, "zone": expected})
    message = pl.format(
        "field ts (column '{}'): '{}' carries UTC offset {} but settings.timezone {} is at "
        "UTC{} then; remove settings.timezone to use the file's offsets, or fix it",
        pl.lit(column),
        pl.col("given"),
        _offset_text(pl.col("own")),
        pl.lit(mapping.timezone),
        _offset_text(pl.col("zone")),
    )
    disagree = (pl.col("own") != pl.col("zone")).fill_null(False)
    return table.select(
        pl.when(disagree).then(message).otherwise(None).alias(ZONE_PROBLEM)
    ).to_series()


def _offset_text(seconds: pl.Expr) -> pl.Expr:
    sign = pl.when(seconds < 0).then(pl.lit("-")).otherwise(pl.lit("+"))
    magnitude = seconds.abs()
    hours = (magnitude // 3600).cast(pl.String).str.zfill(2)
    minutes = (magnitude % 3600 // 60).cast(pl.String).str.zfill(2)
    return pl.concat_str(sign, hours, pl.lit(":"), minutes)


def _no_problem(height: int) -> pl.Series:
    return pl.Series(ZONE_PROBLEM, [None] * height, dtype=pl.String)


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
