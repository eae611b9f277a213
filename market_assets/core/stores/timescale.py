"""PostgreSQL / TimescaleDB store for bars: one table per dataset, partitions rewritten whole.

A partition is one (symbol, session); its rows are those with `ts` inside
`layout_for(dataset).session_bounds(session)`. Writing a partition deletes that range and
binary-COPYs the new rows in one transaction, so a reader sees the old partition or the new
one, never a mix, and a failed write leaves the old rows in place. Quarantined rows live in
`quarantine_<dataset>` and are filed by their `session` column (the partition they were
quarantined from), since their own `ts` may be null.

Tick datasets (trades, tbbo, statistics) are placed by `ts_event` instead of `ts` and have no
unique key. Their nanosecond timestamps are stored as `bigint` nanoseconds since the epoch,
because `timestamptz` holds microseconds; reads turn them back into Datetime("ns", "UTC").

The schema lives in `sql/*.sql` (plain PostgreSQL tables, primary key (symbol, ts)) and
`sql/timescale/*.sql` (hypertables with compression), the latter applied only when the
`timescaledb` extension is available. Retention is deliberately not configured: bars are the
system of record. A deployment that wants it adds, per table,
`SELECT add_retention_policy('bars_1m', drop_after => INTERVAL '2 years', if_not_exists => TRUE)`
with a window per granularity.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pgpq
import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from market_assets.core.errors import StoreError
from market_assets.core.schemas import (
    BAR_SCHEMA,
    QUARANTINE_EXTRA_SCHEMA,
    TICK_TS_DTYPE,
    TS_DTYPE,
    stored_schema,
)
from market_assets.core.stores.layout import known_datasets, layout_for
from market_assets.core.symbols import validate_symbols

DEFAULT_SQL_DIR = Path(__file__).resolve().parents[3] / "sql"
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**BAR_SCHEMA, **QUARANTINE_EXTRA_SCHEMA}

# Key of the transaction-level advisory lock held while the schema is applied, so two
# processes starting at once do not race on CREATE TABLE / create_hypertable.
SCHEMA_LOCK_KEY = 0x6D61726B65745F61  # "market_a"
# Rows per Arrow batch handed to the binary COPY encoder: small enough that encoding the next
# batch overlaps the server parsing the previous one, large enough to amortise the calls.
COPY_BATCH_ROWS = 32_768
_CSV_TS_FORMAT = "%Y-%m-%d %H:%M:%S%.f%#z"

Partition = tuple[str, dt.date]


class TimescaleStore:
    """Bars in PostgreSQL, as hypertables when TimescaleDB is available.

    Holds one connection (autocommit off); every public method runs in its own transaction and
    rolls it back on failure. Use as a context manager, or call `close()`.
    """

    def __init__(self, dsn: str, *, sql_dir: Path | str | None = None) -> None:
        self._sql_dir = Path(sql_dir) if sql_dir is not None else DEFAULT_SQL_DIR
        self._uses_timescale: bool | None = None
        try:
            self._conn = psycopg.connect(dsn, autocommit=False)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL ({_describe_dsn(dsn)}): {exc}; check the DSN "
                "and that the server is running"
            ) from exc

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (rolling back anything uncommitted)."""
        if not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> TimescaleStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------

    def schema_sql_statements(self) -> list[str]:
        """Statements of `sql/*.sql` in file order: plain tables, keys and indexes."""
        return _statements_in(self._sql_dir)

    def timescale_sql_statements(self) -> list[str]:
        """Statements of `sql/timescale/*.sql`: what `ensure_schema` runs when TimescaleDB is
        available (extension, hypertables, compression settings and policies)."""
        return _statements_in(self._sql_dir / "timescale")

    def ensure_schema(self) -> bool:
        """Create missing tables (and hypertables when TimescaleDB is available).

        Idempotent and safe to run from several processes at once (an advisory lock serialises
        them); everything is applied in one transaction. Returns whether TimescaleDB is in use.
        """
        with self._transaction("applying the schema") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            _execute_all(cur, self.schema_sql_statements())
            cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            available = cur.fetchone() is not None
            if available:
                _execute_all(cur, self.timescale_sql_statements())
        self._uses_timescale = available
        return available

    @property
    def uses_timescale(self) -> bool:
        """Whether the `timescaledb` extension is installed in this database."""
        if self._uses_timescale is None:
            with self._transaction("detecting TimescaleDB") as cur:
                cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
                self._uses_timescale = cur.fetchone() is not None
        return self._uses_timescale

    # -- writes ---------------------------------------------------------------------------

    def write_partitions(
        self, dataset: str, frame: pl.DataFrame, partitions: Sequence[Partition]
    ) -> int:
        """Replace exactly the listed (symbol, session) partitions of `dataset` with `frame`.

        Every row of `frame` must fall inside a listed partition (StoreError names the first
        row that does not, before anything is written). A listed partition with no rows in
        `frame` is emptied. Runs in one transaction: on any failure (a null price, a duplicate
        (symbol, ts)) the old partitions stay as they were. Returns the rows written.
        """
        _check_dataset(dataset)
        schema = stored_schema(dataset)
        try:
            rows = _conform(frame, schema, fill_missing=schema is not BAR_SCHEMA)
        except (ValueError, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"{dataset}: frame does not fit the {dataset} schema: {exc}") from exc
        return self._replace(dataset, rows, partitions)

    def write_quarantine(
        self, dataset: str, frame: pl.DataFrame, partitions: Sequence[Partition]
    ) -> int:
        """Replace the quarantined rows of the listed partitions of `dataset`.

        `frame` holds bar columns (any may be null) plus `session` (the partition each row was
        quarantined from), `dataset`, `rule`, `detail` and `quarantined_at`. Rows are filed by
        `symbol` and `session`, not by `ts`; a missing `session` column is derived from `ts`,
        a missing `dataset` column is `dataset`, other missing columns are null. Same replace
        semantics as `write_partitions`; duplicate keys are allowed here.
        """
        _check_dataset(dataset)
        table = f"quarantine_{dataset}"
        missing = [c for c in ("rule", "source") if c not in frame.columns]
        if missing:
            raise StoreError(f"{table}: frame is missing required column(s) {missing}")
        if "dataset" not in frame.columns:
            frame = frame.with_columns(pl.lit(dataset).alias("dataset"))
        if "session" not in frame.columns:
            frame = frame.with_columns(layout_for(dataset).session_expr().alias("session"))
        try:
            rows = _conform(frame, _quarantine_schema(dataset), fill_missing=True)
        except pl.exceptions.PolarsError as exc:
            raise StoreError(f"{table}: frame does not fit: {exc}") from exc
        foreign = rows.filter(pl.col("dataset").ne_missing(dataset))
        if not foreign.is_empty():
            raise StoreError(
                f"{table}: {foreign.height} row(s) belong to dataset "
                f"{foreign['dataset'][0]!r}; write them to that dataset's quarantine"
            )
        return self._replace(table, rows, partitions)

    # -- reads ----------------------------------------------------------------------------

    def read(
        self,
        dataset: str,
        symbols: str | Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of `symbols` with `start <= ts < end`, sorted by (symbol, ts), canonical dtypes
        (tick datasets: by their time column `ts_event`).

        `start` is inclusive and `end` exclusive; naive datetimes are taken as UTC. `symbols`
        may be one symbol or several. `columns` selects and orders bar columns (default all).
        """
        _check_dataset(dataset)
        schema, time = stored_schema(dataset), layout_for(dataset).time_column
        lower, upper = _as_utc(start), _as_utc(end)
        bounds = (lower, upper)
        if schema[time] == TICK_TS_DTYPE:
            bounds = (_epoch_ns(lower), _epoch_ns(upper))
        return self._read(dataset, schema, symbols, time, *bounds, columns, order=time)

    def read_quarantine(
        self,
        dataset: str,
        symbols: str | Sequence[str],
        start: dt.date,
        end: dt.date,
    ) -> pl.DataFrame:
        """Quarantined rows of `dataset` filed under sessions in [start, end) (datetimes: their
        date), sorted by (symbol, ts), nulls last."""
        _check_dataset(dataset)
        first = start.date() if isinstance(start, dt.datetime) else start
        stop = end.date() if isinstance(end, dt.datetime) else end
        return self._read(
            f"quarantine_{dataset}",
            _quarantine_schema(dataset),
            symbols,
            "session",
            first,
            stop,
            None,
            order=layout_for(dataset).time_column,
        )

    # -- internals ------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, action: str) -> Iterator[psycopg.Cursor]:
        """A cursor whose work is committed on success and rolled back on any error."""
        if self._conn.closed:
            raise StoreError(f"{action}: the store is closed")
        try:
            with self._conn.cursor() as cur:
                yield cur
            self._conn.commit()
        except psycopg.Error as exc:
            self._rollback()
            raise StoreError(f"{action} failed and was rolled back: {exc}") from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if not self._conn.closed:
            self._conn.rollback()

    def _replace(self, table: str, rows: pl.DataFrame, partitions: Sequence[Partition]) -> int:
        """Delete the listed partitions of `table` and COPY `rows` in, in one transaction.

        Bar tables place a row in a partition by its `ts` (tick tables by `ts_event`) within
        the session's bounds; quarantine tables by its `session` column.
        """
        layout = layout_for(table)
        time = layout.time_column
        wanted = _partition_frame(partitions)
        validate_symbols(wanted["symbol"])
        _check_rows_inside(table, rows, wanted, layout.session_expr(), time)
        rows = _sorted_by_key(rows, time)
        ns_time = rows.schema.get(time) == TICK_TS_DTYPE
        rows = _ns_as_bigint(rows)
        symbols = wanted["symbol"].to_list()
        if layout.session_column:
            delete = sql.SQL(
                "DELETE FROM {table} AS t "
                "USING unnest(%s::text[], %s::date[]) AS p(symbol, session) "
                "WHERE t.symbol = p.symbol AND t.{column} = p.session"
            ).format(table=sql.Identifier(table), column=sql.Identifier(layout.session_column))
            delete_params: tuple[list[object], ...] = (symbols, wanted["session"].to_list())
        else:
            bounds = [layout.session_bounds(session) for session in wanted["session"]]
            lows: list[object] = [lo for lo, _ in bounds]
            highs: list[object] = [hi for _, hi in bounds]
            if ns_time:
                lows, highs = [_epoch_ns(lo) for lo in lows], [_epoch_ns(hi) for hi in highs]
            delete = sql.SQL(
                "DELETE FROM {table} AS t "
                "USING unnest(%s::text[], {kind}[], {kind}[]) "
                "AS p(symbol, lo, hi) "
                "WHERE t.symbol = p.symbol AND t.{time} >= p.lo AND t.{time} < p.hi"
            ).format(
                table=sql.Identifier(table),
                kind=sql.SQL("%s::bigint" if ns_time else "%s::timestamptz"),
                time=sql.Identifier(time),
            )
            delete_params = (symbols, lows, highs)
        copy = sql.SQL("COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)").format(
            table=sql.Identifier(table),
            columns=sql.SQL(", ").join(map(sql.Identifier, rows.columns)),
        )
        action = f"writing {wanted.height} partition(s) of {table}"
        lift_decompression_limit = self.uses_timescale
        with self._transaction(action) as cur:
            if lift_decompression_limit:
                cur.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")
            cur.execute(delete, delete_params)
            if not rows.is_empty():
                with cur.copy(copy) as copier:
                    for chunk in _binary_copy_chunks(rows):
                        copier.write(chunk)
        return rows.height

    def _read(
        self,
        table: str,
        schema: dict[str, pl.DataType],
        symbols: str | Sequence[str],
        range_column: str,
        start: dt.date,
        end: dt.date | int,
        columns: list[str] | None,
        *,
        order: str = "ts",
    ) -> pl.DataFrame:
        """Rows of `symbols` with `start <= range_column < end` via COPY ... TO STDOUT (CSV),
        sorted by (symbol, `order`)."""
        names = list(schema) if columns is None else list(columns)
        unknown = [c for c in names if c not in schema]
        if unknown or not names:
            raise ValueError(f"{table}: unknown column(s) {unknown}; choose from {list(schema)}")
        wanted = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        query = sql.SQL(
            "COPY (SELECT {columns} FROM {table} WHERE symbol = ANY(%s) AND {range} >= %s "
            "AND {range} < %s ORDER BY symbol, {order} NULLS LAST) TO STDOUT (FORMAT CSV)"
        ).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, names)),
            table=sql.Identifier(table),
            range=sql.Identifier(range_column),
            order=sql.Identifier(order),
        )
        buffer = bytearray()
        with self._transaction(f"reading {table}") as cur:
            # ISO timestamps in UTC and shortest exact float text make the CSV lossless.
            cur.execute(
                "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO', true),"
                " set_config('extra_float_digits', '1', true)"
            )
            with cur.copy(query, (wanted, start, end)) as copier:
                for data in copier:
                    buffer += data
        if not buffer:
            return pl.DataFrame(schema={n: schema[n] for n in names})
        timestamps = [n for n in names if schema[n] == TS_DTYPE]
        nanoseconds = [n for n in names if schema[n] == TICK_TS_DTYPE]
        booleans = [n for n in names if schema[n] == pl.Boolean()]  # CSV spells them t / f
        stored = {n: pl.Int64() for n in nanoseconds} | {
            n: pl.String() for n in (*timestamps, *booleans)
        }
        frame = pl.read_csv(
            bytes(buffer),
            has_header=False,
            new_columns=names,
            schema={n: stored.get(n, schema[n]) for n in names},
        )
        return frame.with_columns(
            *(pl.col(n).str.strptime(TS_DTYPE, _CSV_TS_FORMAT) for n in timestamps),
            *(pl.col(n).cast(TICK_TS_DTYPE) for n in nanoseconds),
            *(pl.col(n).replace_strict({"t": True, "f": False}, default=None) for n in booleans),
        )


# Session x symbol datasets that are not bar tables but have a table in sql/.
TABLE_DATASETS = ("corporate_actions", "options_chains")


def _check_dataset(dataset: str) -> None:
    if dataset not in known_datasets() and dataset not in TABLE_DATASETS:
        raise ValueError(
            f"unknown dataset {dataset!r}; the TimescaleDB store holds {known_datasets()}"
        )


def _conform(
    frame: pl.DataFrame, schema: dict[str, pl.DataType], *, fill_missing: bool = False
) -> pl.DataFrame:
    """`frame` with exactly `schema`'s columns, in order, cast to its dtypes.

    Only the nullable bar columns (or, with `fill_missing`, every column) may be absent and
    become null. Costs nothing when the frame is already canonical.
    """
    optional = set(schema) if fill_missing else {"trade_count", "vwap"}
    missing = [c for c in schema if c not in frame.columns and c not in optional]
    if missing:
        raise ValueError(f"missing required column(s) {missing}")
    if list(frame.schema.items()) == list(schema.items()):
        return frame
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


def _partition_frame(partitions: Sequence[Partition]) -> pl.DataFrame:
    """Distinct (symbol, session) pairs, checked to be a str and a date each."""
    for symbol, session in partitions:
        if not isinstance(session, dt.date) or isinstance(session, dt.datetime):
            raise ValueError(
                f"partition ({symbol!r}, {session!r}): the session must be a datetime.date"
            )
    return pl.DataFrame(
        {"symbol": [p[0] for p in partitions], "session": [p[1] for p in partitions]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    ).unique(maintain_order=True)


def _check_rows_inside(
    table: str, rows: pl.DataFrame, wanted: pl.DataFrame, session: pl.Expr, time: str = "ts"
) -> None:
    """Raise StoreError naming the first row of `rows` outside the `wanted` partitions."""
    if rows.is_empty():
        return
    outside = (
        rows.lazy()
        .select("symbol", time, session.alias("session"))
        .join(wanted.lazy(), on=["symbol", "session"], how="anti")
        .collect()
    )
    if not outside.is_empty():
        symbol, ts, session_date = outside.row(0)
        raise StoreError(
            f"{table}: {outside.height} row(s) fall outside the partitions being written, "
            f"first symbol={symbol!r} ts={ts} (session {session_date}); add that partition "
            "to `partitions` or drop the rows"
        )


def _sorted_by_key(rows: pl.DataFrame, time: str = "ts") -> pl.DataFrame:
    """`rows` ordered by (symbol, time), which COPYs faster; skips the sort when already so."""
    if rows.height < 2:
        return rows
    previous_symbol = pl.col("symbol").shift(1)
    ordered = rows.select(
        (
            (pl.col("symbol") > previous_symbol)
            | ((pl.col("symbol") == previous_symbol) & (pl.col(time) >= pl.col(time).shift(1)))
        )
        .slice(1)
        .all()
    ).item()
    return rows if ordered else rows.sort("symbol", time, nulls_last=True)


def _quarantine_schema(dataset: str) -> dict[str, pl.DataType]:
    base = stored_schema(dataset)
    return QUARANTINE_SCHEMA if base is BAR_SCHEMA else {**base, **QUARANTINE_EXTRA_SCHEMA}


def _ns_as_bigint(rows: pl.DataFrame) -> pl.DataFrame:
    """Nanosecond timestamps as Int64 nanoseconds since the epoch (their `bigint` columns)."""
    columns = [name for name, dtype in rows.schema.items() if dtype == TICK_TS_DTYPE]
    return rows.with_columns(pl.col(c).dt.epoch("ns") for c in columns) if columns else rows


def _epoch_ns(moment: dt.datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (no float rounding)."""
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000


def _binary_copy_chunks(rows: pl.DataFrame) -> Iterator[bytes]:
    """PostgreSQL binary COPY payload of `rows`, encoded by pgpq batch by batch."""
    table = rows.to_arrow()
    encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
    yield encoder.write_header()
    for batch in table.to_batches(max_chunksize=COPY_BATCH_ROWS):
        chunk = encoder.write_batch(batch)
        if chunk:
            yield chunk
    yield encoder.finish()


def _statements_in(folder: Path) -> list[str]:
    """SQL statements of `folder/*.sql`, files in name order."""
    if not folder.is_dir():
        raise StoreError(f"SQL folder {folder} not found; pass sql_dir= to TimescaleStore")
    statements: list[str] = []
    for path in sorted(folder.glob("*.sql")):
        statements.extend(split_sql(path.read_text(encoding="utf-8")))
    return statements


def _execute_all(cur: psycopg.Cursor, statements: list[str]) -> None:
    """Run `statements` in order; a failure names the statement that failed."""
    for statement in statements:
        try:
            cur.execute(statement)
        except psycopg.Error as exc:
            summary = " ".join(statement.split())[:120]
            raise StoreError(f"schema statement failed: {summary!r}: {exc}") from exc


def split_sql(text: str) -> list[str]:
    """Split a SQL script on top-level semicolons, respecting quotes, $$ bodies and comments.

    Comment-only fragments are dropped; each statement is returned without its semicolon.
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if char == "'":
            end = i + 1
            while end < n and not (text[end] == "'" and text[end + 1 : end + 2] != "'"):
                end += 2 if text.startswith("''", end) else 1
            current.append(text[i : end + 1])
            i = end + 1
            continue
        if char == "$":
            tag_end = text.find("$", i + 1)
            tag = text[i : tag_end + 1] if tag_end != -1 else ""
            if tag and (tag == "$$" or tag[1:-1].isidentifier()):
                close = text.find(tag, tag_end + 1)
                end = n if close == -1 else close + len(tag)
                current.append(text[i:end])
                i = end
                continue
        if char == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """Aware datetimes unchanged; naive ones taken as UTC."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _describe_dsn(dsn: str) -> str:
    """Host, port and database of a DSN, never its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "unparseable DSN"
    return (
        f"host={info.get('host', 'default')} port={info.get('port', 5432)} "
        f"dbname={info.get('dbname', 'default')}"
    )
