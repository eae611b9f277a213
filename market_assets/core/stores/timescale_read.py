"""Arrow-native reads from the PostgreSQL / TimescaleDB store over one kept connection.

`TimescaleReader` holds one ADBC PostgreSQL connection (autocommit, so it never sits idle
in a transaction) for its lifetime and returns polars frames in the canonical schemas. The
ADBC driver runs each query as `COPY (...) TO STDOUT (FORMAT BINARY)` and decodes it
straight into Arrow columns: no Python object per value and no text round trip, so floats,
NaN/inf and text come back bit for bit. Queries carry literal bounds (symbols are validated
first, values quoted by psycopg), which lets the planner exclude chunks and compressed
batches by their metadata.

Open it once and reuse it: `MarketData(dsn=...)` does, and closes it on `close()` or at the
end of a `with` block.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import adbc_driver_manager
import polars as pl
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from market_assets.core.errors import StoreError
from market_assets.core.schemas import BAR_SCHEMA, TICK_TS_DTYPE
from market_assets.core.stores.layout import EXCHANGE_TZ, layout_for
from market_assets.core.stores.timescale_rewrite import epoch_ns
from market_assets.core.symbols import validate_symbols


class TimescaleReader:
    """Reads tables of the PostgreSQL store into polars frames through ADBC (Arrow)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the next read opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # a connection the server already dropped has nothing left to release
            with contextlib.suppress(adbc_driver_manager.Error):
                conn.close()

    def __enter__(self) -> TimescaleReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------------------

    def read_table(
        self,
        table: str,
        schema: dict[str, pl.DataType],
        symbols: str | Sequence[str],
        range_column: str,
        start: object,
        end: object,
        columns: list[str] | None = None,
        *,
        order: str = "ts",
    ) -> pl.DataFrame:
        """Rows of `symbols` with `start <= range_column < end`, sorted by (symbol, `order`)
        with nulls last, cast to `schema` (bigint nanosecond columns become Datetime(ns))."""
        names = list(schema) if columns is None else list(columns)
        unknown = [c for c in names if c not in schema]
        if unknown or not names:
            raise ValueError(f"{table}: unknown column(s) {unknown}; choose from {list(schema)}")
        wanted = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        query = sql.SQL(
            "SELECT {columns} FROM {table} WHERE symbol IN ({symbols}) AND {range} >= {lo} "
            "AND {range} < {hi} ORDER BY symbol, {order} NULLS LAST"
        ).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, names)),
            table=sql.Identifier(table),
            symbols=sql.SQL(", ").join(map(sql.Literal, wanted)),
            range=sql.Identifier(range_column),
            lo=sql.Literal(start),
            hi=sql.Literal(end),
            order=sql.Identifier(order),
        )
        table_arrow = self.fetch_arrow(query.as_string(), f"reading {table}")
        return to_schema(pl.from_arrow(table_arrow), {n: schema[n] for n in names})

    def read_aggregate(
        self,
        view: str,
        granularity: str,
        symbols: str | Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
    ) -> pl.DataFrame:
        """Bars of a continuous aggregate (e.g. bars_1d_from_1m) in the canonical bar schema.

        `ts` follows the granularity's convention: 1h bars keep their UTC bucket open; 1d
        bars sit at the session date 00:00 UTC (the bucket is the New York day), so
        [start, end) selects those canonical timestamps.
        """
        daily = granularity == "1d"
        lo, hi = (_new_york_midnight(start), _new_york_midnight(end)) if daily else (start, end)
        frame = self.read_table(view, AGGREGATE_SCHEMA, symbols, "ts", lo, hi)
        ts = pl.col("ts")
        if daily:
            ts = ts.dt.convert_time_zone("America/New_York").dt.date().cast(pl.Datetime("us"))
            ts = ts.dt.replace_time_zone("UTC")
        source = (
            pl.when(pl.col("first_source") == pl.col("last_source"))
            .then(pl.col("first_source"))
            .otherwise(pl.col("first_source") + "+" + pl.col("last_source"))
        )
        return frame.select(
            ts.alias("ts"),
            *[pl.col(c) for c in BAR_SCHEMA if c not in ("ts", "granularity", "source")],
            granularity=pl.lit(granularity, pl.String()),
            source=source,
        ).select(list(BAR_SCHEMA))

    def fetch_arrow(self, query: str, action: str) -> Any:
        """Run one SELECT and return its pyarrow Table; StoreError on any failure."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return cur.fetch_arrow_table()
        except adbc_driver_manager.Error as exc:
            self.close()
            raise StoreError(f"{action} failed: {first_line(exc)}") from exc

    # -- internals ------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            import adbc_driver_postgresql.dbapi as adbc  # pulls in pyarrow.dataset: ~0.6 s

            try:
                conn = adbc.connect(self._dsn, autocommit=True)
            except adbc_driver_manager.Error as exc:
                raise StoreError(
                    f"cannot connect to PostgreSQL ({describe_dsn(self._dsn)}): "
                    f"{first_line(exc)}; check the DSN and that the server is running"
                ) from exc
            # Dates compared with timestamptz bounds (corporate actions) mean UTC midnight.
            with conn.cursor() as cur:
                cur.execute("SET TimeZone = 'UTC'")
            self._conn = conn
        return self._conn


AGGREGATE_SCHEMA: dict[str, pl.DataType] = {
    **{c: t for c, t in BAR_SCHEMA.items() if c not in ("granularity", "source")},
    "first_source": pl.String(),
    "last_source": pl.String(),
}
"""Columns of the continuous aggregates in sql/timescale/aggregates/."""


def read_dataset(
    reader: TimescaleReader,
    dataset: str,
    schema: dict[str, pl.DataType],
    symbols: str | Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Rows of a dataset with its time column in [start, end) (aware datetimes)."""
    time = layout_for(dataset).time_column
    bounds: tuple[object, object] = (start, end)
    if schema[time] == TICK_TS_DTYPE:
        bounds = (epoch_ns(start), epoch_ns(end))
    return reader.read_table(dataset, schema, symbols, time, *bounds, columns, order=time)


def to_schema(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """`frame` (as decoded from Arrow) cast to `schema`; bigint nanoseconds become Datetime."""
    if frame.width == 0:
        return pl.DataFrame(schema=schema)
    casts = []
    for name, dtype in schema.items():
        column = pl.col(name)
        if dtype == TICK_TS_DTYPE and frame.schema[name] == pl.Int64():
            column = column.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
        casts.append(column.cast(dtype))
    if all(frame.schema[n] == t for n, t in schema.items()):
        return frame
    return frame.select(casts)


def describe_dsn(dsn: str) -> str:
    """Host, port and database of a DSN, never its password."""
    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - any parse failure means we cannot describe it
        return "unparseable DSN"
    return (
        f"host={info.get('host', 'default')} port={info.get('port', 5432)} "
        f"dbname={info.get('dbname', 'default')}"
    )


def _new_york_midnight(moment: dt.datetime) -> dt.datetime:
    """New York midnight starting the first UTC date at or after `moment`."""
    day = moment.astimezone(dt.UTC).date()
    if moment.astimezone(dt.UTC) > dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC):
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(0), tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (drivers append hints and context lines)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
