"""Corporate actions of the `files` provider, and split-adjusted prices turned back into raw.

Actions come from the bar files' own `split` / `dividend` columns, or from a separate file
(`settings.actions`): a list of splits and dividends, or QuantConnect Lean factor files.

Lean factor files (`yyyymmdd,price_factor,split_factor,reference_price`) hold, per row, the
factors that apply to every bar on or before that date. Between two rows whose split factor
changes lies a split of ratio split_factor[next] / split_factor[row]; between two rows whose
price factor changes, a cash dividend D with price_factor[row] = price_factor[next] x
(1 - D / reference_price[row]). Both take effect on the first session after the row's date.

Split-adjusted prices (`adjustment: split_adjusted`) are multiplied back by the product of
the ratios of every listed split after the bar's session (volumes divided by it; dividend
amounts, which such vendors adjust too, multiplied by it), so the stored bars are raw and
adjusting them never applies a split twice.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.providers.base import PermanentError, UnknownSymbolError
from market_assets.core.providers.files_mapping import ActionsFileMapping, FileMapping
from market_assets.core.providers.files_read import (
    LOCAL_DATE,
    SOURCE,
    SYMBOL,
    BadFileError,
    csv_bytes,
    file_exists,
    refuse_truncated,
)
from market_assets.core.schemas import ACTION_SCHEMA

PRICE_DECIMALS = 9
RATIO_DECIMALS = 6
LEAN_COLUMNS = ("date", "price_factor", "split_factor", "reference_price")
SPLITS_SCHEMA = {"symbol": pl.String(), "ex_date": pl.Date(), "ratio": pl.Float64()}


def actions_from_columns(rows: pl.DataFrame, mapping: FileMapping) -> pl.DataFrame:
    """Split and dividend columns of parsed bar rows -> ACTION_SCHEMA rows (ex_date = the
    row's session date as the file writes it)."""
    if rows.is_empty() or not ({"split", "dividend"} & set(rows.columns)):
        return pl.DataFrame(schema=ACTION_SCHEMA)
    base = rows.select(
        pl.col(SYMBOL).alias("symbol"),
        pl.col(LOCAL_DATE).alias("ex_date"),
        *(pl.col(c) for c in ("split", "dividend") if c in rows.columns),
    )
    return _actions(base, mapping.currency)


def read_actions_file(
    mapping: FileMapping, symbols: tuple[str, ...], context: dict[str, Any]
) -> tuple[pl.DataFrame, dict[str, PermanentError]]:
    """Actions of `symbols` from the separate actions file(s), every date; problems by symbol
    (a missing file for one symbol is a problem of that symbol only)."""
    spec = mapping.actions
    assert spec is not None
    frames: list[pl.DataFrame] = []
    problems: dict[str, PermanentError] = {}
    paths = {symbol: spec.path_for(mapping.root, symbol) for symbol in symbols}
    for path in dict.fromkeys(paths.values()):
        owners = tuple(s for s, p in paths.items() if p == path)
        try:
            present = file_exists(path)
        except BadFileError as error:
            for symbol in owners:
                problems[symbol] = BadFileError(error.reason, symbols=(symbol,), **context)
            continue
        if not present:
            for symbol in owners:
                problems[symbol] = UnknownSymbolError(
                    f"no actions file for {symbol}: {path} does not exist "
                    f"(settings.actions.pattern {spec.pattern!r})",
                    symbols=(symbol,),
                    **context,
                )
            continue
        try:
            if spec.format == "lean_factors":
                frames.append(_lean_factors(path, owners[0], mapping))
            else:
                frames.append(_action_list(path, spec, owners, mapping.currency))
        except BadFileError as error:
            for symbol in owners:
                problems[symbol] = BadFileError(error.reason, symbols=(symbol,), **context)
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=ACTION_SCHEMA)
    return frame.filter(pl.col("symbol").is_in(list(symbols))), problems


def _action_list(
    path: Path, spec: ActionsFileMapping, owners: tuple[str, ...], currency: str | None
) -> pl.DataFrame:
    """A CSV list of splits and dividends (one file per symbol, or one with a symbol column)."""
    data = csv_bytes(path)
    refuse_truncated(path, data, spec.delimiter)
    try:
        table = pl.read_csv(
            io.BytesIO(data),
            has_header=spec.header,
            infer_schema=False,
            separator=spec.delimiter,
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise BadFileError(f"{path}: cannot read it as CSV: {exc}", vendor=SOURCE) from None
    table = table.rename({name: name.strip() for name in table.columns})
    wanted = ["ex_date", *(f for f in ("split", "dividend", "symbol") if f in spec.columns)]
    missing = [spec.column_for(f) for f in wanted if spec.column_for(f) not in table.columns]
    if missing:
        raise BadFileError(
            f"{path}: no column {missing} (settings.actions.columns); the file's columns "
            f"are {table.columns}",
            vendor=SOURCE,
        )
    first_line = 2 if spec.header else 1
    table = table.with_row_index("__line", offset=first_line)
    date_text = pl.col(spec.column_for("ex_date")).str.strip_chars()
    parsed = table.select(
        "__line",
        (
            pl.col(spec.column_for("symbol")).str.strip_chars()
            if "symbol" in spec.columns
            else pl.lit(owners[0])
        ).alias("symbol"),
        date_text.alias("__date_text"),
        date_text.str.to_date(spec.date_format, strict=False).alias("ex_date"),
        *(
            pl.col(spec.column_for(f)).str.strip_chars().cast(pl.Float64, strict=False).alias(f)
            for f in ("split", "dividend")
            if f in spec.columns
        ),
    )
    bad = parsed.filter(pl.col("ex_date").is_null()).head(1)
    if bad.height:
        line, text = bad.row(0, named=True)["__line"], bad.row(0, named=True)["__date_text"]
        raise BadFileError(
            f"{path} line {line}: field ex_date (column '{spec.column_for('ex_date')}'): "
            f"'{text}' is not a date"
            + (f" in format '{spec.date_format}'" if spec.date_format else ""),
            vendor=SOURCE,
        )
    return _actions(parsed.drop("__line", "__date_text"), currency)


def _lean_factors(path: Path, symbol: str, mapping: FileMapping) -> pl.DataFrame:
    """Splits and dividends from a Lean factor file (see the module docstring)."""
    data = csv_bytes(path)
    refuse_truncated(path, data, ",")
    try:
        table = pl.read_csv(
            io.BytesIO(data),
            has_header=False,
            new_columns=list(LEAN_COLUMNS),
            schema_overrides={"date": pl.String},
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise BadFileError(
            f"{path}: not a Lean factor file (date,price_factor,split_factor,reference_price):"
            f" {exc}",
            vendor=SOURCE,
        ) from None
    rows = table.with_columns(pl.col("date").str.to_date("%Y%m%d", strict=False)).sort("date")
    if rows.get_column("date").null_count():
        raise BadFileError(f"{path}: a date is not yyyymmdd", vendor=SOURCE)
    calendar = get_calendar(mapping.calendar)
    following = rows.with_columns(
        pl.col("price_factor").shift(-1).alias("next_price_factor"),
        pl.col("split_factor").shift(-1).alias("next_split_factor"),
    ).filter(pl.col("next_price_factor").is_not_null())
    records: list[dict[str, Any]] = []
    for row in following.iter_rows(named=True):
        ex_date = _next_session(calendar, row["date"])
        ratio = row["next_split_factor"] / row["split_factor"]
        if abs(ratio - 1.0) > 1e-6:
            records.append({"ex_date": ex_date, "split": round(ratio, RATIO_DECIMALS)})
        step = row["price_factor"] / row["next_price_factor"]
        if abs(step - 1.0) > 1e-9 and row["reference_price"] > 0:
            amount = (1.0 - step) * row["reference_price"]
            records.append({"ex_date": ex_date, "dividend": round(amount, 4)})
    frame = pl.DataFrame(
        records, schema={"ex_date": pl.Date(), "split": pl.Float64(), "dividend": pl.Float64()}
    ).with_columns(pl.lit(symbol).alias("symbol"))
    return _actions(frame, mapping.currency)


def _next_session(calendar: Any, day: dt.date) -> dt.date:
    following = calendar.sessions(day + dt.timedelta(days=1), day + dt.timedelta(days=15))
    return following[0] if following else day + dt.timedelta(days=1)


def _actions(base: pl.DataFrame, currency: str | None) -> pl.DataFrame:
    """(symbol, ex_date, split?, dividend?) rows -> ACTION_SCHEMA rows (source `files`);
    dividends are already scaled by the mapping's price_scale."""
    frames = []
    if "split" in base.columns:
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
    if "dividend" in base.columns:
        frames.append(
            base.filter(pl.col("dividend") > 0).select(
                "symbol",
                "ex_date",
                pl.lit("dividend").alias("action_type"),
                pl.lit(None, pl.Float64).alias("ratio"),
                pl.col("dividend").round(PRICE_DECIMALS).alias("amount"),
                pl.lit(currency, pl.String).alias("currency"),
            )
        )
    if not frames:
        return pl.DataFrame(schema=ACTION_SCHEMA)
    frame = pl.concat(frames).with_columns(pl.lit(SOURCE).alias("source"))
    return frame.select(pl.col(name).cast(dtype) for name, dtype in ACTION_SCHEMA.items())


def splits_of(actions: pl.DataFrame) -> pl.DataFrame:
    """The split rows of ACTION_SCHEMA actions as (symbol, ex_date, ratio)."""
    return actions.filter(pl.col("action_type") == "split").select(
        pl.col(name).cast(dtype) for name, dtype in SPLITS_SCHEMA.items()
    )


def restore_raw_prices(
    rows: pl.DataFrame, splits: pl.DataFrame, price_fields: tuple[str, ...]
) -> pl.DataFrame:
    """Parsed split-adjusted rows (SYMBOL, LOCAL_DATE, prices, volume, dividend) back in raw
    terms: prices and dividends x the product of later split ratios, volume / it."""
    if rows.is_empty() or splits.is_empty():
        return rows
    later = (
        splits.group_by("symbol", "ex_date")
        .agg(pl.col("ratio").product())
        .sort("symbol", "ex_date", descending=[False, True])
        .with_columns(pl.col("ratio").cum_prod().over("symbol").alias("__factor"))
        .sort("symbol", "ex_date")
        .select(pl.col("symbol").alias(SYMBOL), pl.col("ex_date").alias("__ex"), "__factor")
    )
    keyed = rows.with_row_index("__order").sort(SYMBOL, LOCAL_DATE)
    joined = keyed.join_asof(
        later,
        left_on=LOCAL_DATE,
        right_on="__ex",
        by=SYMBOL,
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,
    ).with_columns(pl.col("__factor").fill_null(1.0))
    factor = pl.col("__factor")
    scaled = [
        (pl.col(f) * factor).round(PRICE_DECIMALS).alias(f)
        for f in dict.fromkeys((*price_fields, "dividend"))
        if f in rows.columns and f != "adj_close"
    ]
    if "volume" in rows.columns:
        scaled.append((pl.col("volume") / factor).alias("volume"))
    return joined.with_columns(scaled).sort("__order").drop("__order", "__ex", "__factor")
