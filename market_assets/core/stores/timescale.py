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
`sql/timescale/*.sql` (hypertables with compression settings), the latter applied when the
`timescaledb` extension exists in the database or can be created there (it must be in the
server's `shared_preload_libraries`); otherwise the store keeps plain tables and logs why.
Compression, retention and continuous aggregates follow configs/datasets.yaml
(timescale_policies.py). How a rewrite touches only its partitions, even inside compressed
chunks, and how concurrent writers of the same partitions are serialised: timescale_rewrite.py.
Reads go through one kept ADBC connection (timescale_read.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pgpq
import polars as pl
import psycopg
from psycopg import sql

from market_assets.core.config import TimescalePolicy
from market_assets.core.errors import StoreError
from market_assets.core.schemas import (
    BAR_SCHEMA,
    QUARANTINE_EXTRA_SCHEMA,
    TICK_TS_DTYPE,
    stored_schema,
)
from market_assets.core.stores.layout import known_datasets, layout_for
from market_assets.core.stores.timescale_policies import (
    ContinuousAggregate,
    aggregates_of,
    apply_policies,
    refresh_aggregate,
)
from market_assets.core.stores.timescale_read import (
    TimescaleReader,
    describe_dsn,
    first_line,
    read_dataset,
)
from market_assets.core.stores.timescale_rewrite import (
    TICK_ROWS_PER_SESSION,
    decompression_budget,
    delete_statements,
    lock_namespace,
    lock_slots,
    partition_blocks,
)
from market_assets.core.symbols import validate_symbols

log = logging.getLogger(__name__)

DEFAULT_SQL_DIR = Path(__file__).resolve().parents[3] / "sql"
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**BAR_SCHEMA, **QUARANTINE_EXTRA_SCHEMA}

# Key of the transaction-level advisory lock held while the schema is applied, so two
# processes starting at once do not race on CREATE TABLE / create_hypertable.
SCHEMA_LOCK_KEY = 0x6D61726B65745F61  # "market_a"
# Rows per Arrow batch handed to the binary COPY encoder: small enough that encoding the next
# batch overlaps the server parsing the previous one, large enough to amortise the calls.
COPY_BATCH_ROWS = 32_768
# Spacing of bar timestamps, for the rows a session or a chunk can hold.
BAR_SPACING = {
    "bars_1m": dt.timedelta(minutes=1),
    "bars_5m": dt.timedelta(minutes=5),
    "bars_15m": dt.timedelta(minutes=15),
    "bars_1h": dt.timedelta(hours=1),
    "bars_1d": dt.timedelta(days=1),
}
LONGEST_SESSION = dt.timedelta(hours=25)  # a New York day that leaves daylight saving time

Partition = tuple[str, dt.date]
Rows = pl.DataFrame | Callable[[], pl.DataFrame]
"""Rows to write, or a function returning them (called once the partitions are locked)."""


@dataclass(frozen=True)
class Hypertable:
    """A hypertable's time dimension: chunk interval, in epoch ns for integer time columns."""

    name: str
    chunk_interval: dt.timedelta | int

    @property
    def integer_time(self) -> bool:
        return isinstance(self.chunk_interval, int)


class TimescaleStore:
    """Bars in PostgreSQL, as hypertables when TimescaleDB is available.

    Holds one connection (autocommit off); every public method runs in its own transaction and
    rolls it back on failure. Use as a context manager, or call `close()`.
    """

    def __init__(self, dsn: str, *, sql_dir: Path | str | None = None) -> None:
        self._sql_dir = Path(sql_dir) if sql_dir is not None else DEFAULT_SQL_DIR
        self._dsn = dsn
        self._uses_timescale: bool | None = None
        self._hypertables: dict[str, Hypertable] | None = None
        self._aggregates: dict[str, list[ContinuousAggregate]] = {}
        self._reader = TimescaleReader(dsn)
        self._closed = False
        try:
            self._conn = psycopg.connect(dsn, autocommit=False)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL ({describe_dsn(dsn)}): {exc}; check the DSN "
                "and that the server is running"
            ) from exc

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections (rolling back anything uncommitted)."""
        self._closed = True
        self._reader.close()
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
        available (extension, hypertables, compression settings)."""
        return _statements_in(self._sql_dir / "timescale")

    def ensure_schema(self, policies: Mapping[str, TimescalePolicy] | None = None) -> bool:
        """Create missing tables, and hypertables when TimescaleDB can be used here.

        TimescaleDB is used when the `timescaledb` extension exists in the database or can be
        created now (it must be preloaded by the server); otherwise the tables stay plain and
        a log line says why. `policies` (dataset -> TimescalePolicy, from configs/datasets.yaml)
        makes compression and retention policies and continuous aggregates match; None leaves
        them as they are. Idempotent and safe to run from several processes at once (an
        advisory lock serialises them); everything is applied in one transaction, then new
        continuous aggregates get their first refresh. Returns whether TimescaleDB is in use.
        """
        created: list[ContinuousAggregate] = []
        with self._transaction("applying the schema") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            _execute_all(cur, self.schema_sql_statements())
            unusable = _timescaledb_unusable(cur, self._dsn)
            if unusable is None:
                _execute_all(cur, self.timescale_sql_statements())
                self._hypertables = _load_hypertables(cur)
                if policies is not None:
                    created = apply_policies(
                        cur,
                        policies,
                        {n: h.integer_time for n, h in self._hypertables.items()},
                        self._sql_dir / "timescale" / "aggregates",
                    )
        self._uses_timescale = unusable is None
        self._aggregates = {}
        if unusable is not None:
            log.log(
                unusable[0],
                "TimescaleDB not used for %s: %s; storing plain PostgreSQL tables",
                describe_dsn(self._dsn),
                unusable[1],
            )
        for aggregate in created:
            refresh_aggregate(self._conn, aggregate, None, None)
        return self._uses_timescale

    @property
    def uses_timescale(self) -> bool:
        """Whether the `timescaledb` extension is installed in this database."""
        if self._uses_timescale is None:
            with self._transaction("detecting TimescaleDB") as cur:
                cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
                self._uses_timescale = cur.fetchone() is not None
        return self._uses_timescale

    # -- writes ---------------------------------------------------------------------------

    def write_partitions(self, dataset: str, frame: Rows, partitions: Sequence[Partition]) -> int:
        """Replace exactly the listed (symbol, session) partitions of `dataset` with `frame`.

        Every row of `frame` must fall inside a listed partition (StoreError names the first
        row that does not, before anything is written). A listed partition with no rows in
        `frame` is emptied. Runs in one transaction: on any failure (a null price, a duplicate
        (symbol, ts)) the old partitions stay as they were. Returns the rows written.

        `frame` may be a function returning the rows: it is called once the partitions are
        locked against other writers, inside the transaction, so rows copied from another
        store are never older than what a concurrent writer of the same partitions wrote.
        """
        _check_dataset(dataset)
        schema = stored_schema(dataset)

        def conform(raw: pl.DataFrame) -> pl.DataFrame:
            try:
                return _conform(raw, schema, fill_missing=schema is not BAR_SCHEMA)
            except (ValueError, pl.exceptions.PolarsError) as exc:
                raise StoreError(
                    f"{dataset}: frame does not fit the {dataset} schema: {exc}"
                ) from exc

        return self._replace(dataset, _then(frame, conform), partitions)

    def write_quarantine(self, dataset: str, frame: Rows, partitions: Sequence[Partition]) -> int:
        """Replace the quarantined rows of the listed partitions of `dataset`.

        `frame` holds bar columns (any may be null) plus `session` (the partition each row was
        quarantined from), `dataset`, `rule`, `detail` and `quarantined_at`. Rows are filed by
        `symbol` and `session`, not by `ts`; a missing `session` column is derived from `ts`,
        a missing `dataset` column is `dataset`, other missing columns are null. Same replace
        semantics as `write_partitions` (`frame` may be a function too); duplicate keys are
        allowed here.
        """
        _check_dataset(dataset)
        table = f"quarantine_{dataset}"

        def conform(frame: pl.DataFrame) -> pl.DataFrame:
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
            return rows

        return self._replace(table, _then(frame, conform), partitions)

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
        schema = stored_schema(dataset)
        return read_dataset(
            self._reader, dataset, schema, symbols, _as_utc(start), _as_utc(end), columns
        )

    def read_aggregate(
        self,
        dataset: str,
        granularity: str,
        symbols: str | Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
    ) -> pl.DataFrame:
        """`granularity` bars served by the continuous aggregate over `dataset` (e.g. 1d from
        bars_1m), canonical bar schema, ts in [start, end) by the granularity's convention.

        Raises StoreError when that aggregate is not configured in this database.
        """
        if not self.uses_timescale:
            raise StoreError(f"{dataset}: continuous aggregates need TimescaleDB")
        with self._transaction(f"finding continuous aggregates of {dataset}") as cur:
            found = {a.granularity: a for a in aggregates_of(cur, dataset)}
        if granularity not in found:
            raise StoreError(
                f"{dataset}: no continuous aggregate serves {granularity} bars here (have "
                f"{sorted(found)}); add it to {dataset}.timescale.continuous_aggregates in "
                "configs/datasets.yaml"
            )
        return self._reader.read_aggregate(
            found[granularity].view, granularity, symbols, _as_utc(start), _as_utc(end)
        )

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
        return self._reader.read_table(
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
            self._reconnect(action)
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

    def _reconnect(self, action: str) -> None:
        """A new connection after the server dropped ours (terminated, restarted); StoreError
        saying why when this store was closed or the server cannot be reached."""
        if self._closed:
            raise StoreError(f"{action}: this TimescaleStore was closed; open a new one")
        try:
            self._conn = psycopg.connect(self._dsn, autocommit=False)
        except psycopg.Error as exc:
            raise StoreError(
                f"{action}: the connection to PostgreSQL ({describe_dsn(self._dsn)}) was lost "
                f"and reconnecting failed: {' '.join(str(exc).split())}"
            ) from exc
        self._hypertables = None
        self._aggregates = {}

    def _rollback(self) -> None:
        if not self._conn.closed:
            self._conn.rollback()

    def _replace(self, table: str, rows: Rows, partitions: Sequence[Partition]) -> int:
        """Delete the listed partitions of `table` and COPY `rows` in, in one transaction.

        Bar tables place a row in a partition by its `ts` (tick tables by `ts_event`) within
        the session's bounds; quarantine tables by its `session` column. Writers of the same
        partitions wait for each other (advisory locks); on a hypertable the transaction may
        decompress at most `decompression_budget` tuples. Continuous aggregates over the table
        are refreshed over the written window after the commit. `rows` given as a function is
        called after the locks are taken.
        """
        layout = layout_for(table)
        time = layout.time_column
        wanted = _partition_frame(partitions)
        validate_symbols(wanted["symbol"])

        def ready(frame: pl.DataFrame) -> pl.DataFrame:
            _check_rows_inside(table, frame, wanted, layout.session_expr(), time)
            return _sorted_by_key(frame, time)

        if not callable(rows):
            rows = ready(rows)
        ns_time = stored_schema(table.removeprefix("quarantine_")).get(time) == TICK_TS_DTYPE
        pairs = list(wanted.iter_rows())
        blocks = partition_blocks(layout, pairs, ns=ns_time)
        deletes = delete_statements(table, layout.session_column or time, blocks)
        action = f"writing {wanted.height} partition(s) of {table}"
        timescale = self.uses_timescale  # detected before the write transaction starts
        with self._transaction(action) as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, slot) FROM unnest(%s::int[]) AS slot",
                (lock_namespace(table), lock_slots(pairs)),
            )
            hypertable = self._hypertable(cur, table) if timescale else None
            if hypertable is not None:
                budget = decompression_budget(
                    blocks,
                    rows_per_session=_rows_per_session(table),
                    chunk_interval=hypertable.chunk_interval,
                    rows_per_chunk=_rows_per_chunk(table, hypertable),
                )
                cur.execute(
                    sql.SQL(
                        "SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = {}"
                    ).format(sql.Literal(budget))
                )
            if callable(rows):
                rows = ready(rows())
            if deletes:
                cur.execute(sql.SQL(";\n").join(deletes))
            rows = _ns_as_bigint(rows)
            copy = sql.SQL("COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)").format(
                table=sql.Identifier(table),
                columns=sql.SQL(", ").join(map(sql.Identifier, rows.columns)),
            )
            if not rows.is_empty():
                with cur.copy(copy) as copier:
                    for chunk in _binary_copy_chunks(rows):
                        copier.write(chunk)
            aggregates = self._aggregates_over(cur, table) if hypertable is not None else []
        if blocks and aggregates:
            lo, hi = min(b.lo for b in blocks), max(b.hi for b in blocks)
            for aggregate in aggregates:
                refresh_aggregate(self._conn, aggregate, lo, hi)  # type: ignore[arg-type]
        return rows.height

    def partition_delete_sql(self, dataset: str, partitions: Sequence[Partition]) -> list[str]:
        """The DELETE statements a rewrite of `partitions` runs, as text (for EXPLAIN)."""
        layout = layout_for(dataset)
        ns_time = stored_schema(dataset).get(layout.time_column) == TICK_TS_DTYPE
        pairs = list(_partition_frame(partitions).iter_rows())
        blocks = partition_blocks(layout, pairs, ns=ns_time)
        column = layout.session_column or layout.time_column
        return [s.as_string(self._conn) for s in delete_statements(dataset, column, blocks)]

    def _hypertable(self, cur: psycopg.Cursor, table: str) -> Hypertable | None:
        """`table` as a hypertable, or None (a plain table); needs TimescaleDB in use."""
        if self._hypertables is None:
            self._hypertables = _load_hypertables(cur)
        return self._hypertables.get(table)

    def _aggregates_over(self, cur: psycopg.Cursor, table: str) -> list[ContinuousAggregate]:
        if table not in self._aggregates:
            self._aggregates[table] = aggregates_of(cur, table)
        return self._aggregates[table]


def _then(rows: Rows, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Rows:
    """`change(rows)`, or for a function of rows a function that applies `change` later."""
    if callable(rows):
        return lambda: change(rows())
    return change(rows)


def _timescaledb_unusable(cur: psycopg.Cursor, dsn: str) -> tuple[int, str] | None:
    """None when TimescaleDB is (or now was made) available in this database, else the log
    level and the reason. Never leaves the transaction aborted.

    CREATE EXTENSION on a server that does not preload timescaledb ends the session (FATAL),
    so the preload list is read first; when this role may not read it, the creation is
    tried on a separate, throwaway connection.
    """
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cur.fetchone() is not None:
        return None
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if cur.fetchone() is None:
        return logging.INFO, "the timescaledb extension is not installed on this server"
    preload = _preload_libraries(cur)
    if preload is not None and "timescaledb" not in preload:
        return logging.WARNING, (
            "the timescaledb extension is installed but not preloaded (shared_preload_libraries "
            f'= {",".join(preload) or "empty"}): extension "timescaledb" must be preloaded; add '
            "timescaledb to shared_preload_libraries in postgresql.conf and restart the server "
            "to use hypertables"
        )
    failure = _probe_create_extension(dsn) if preload is None else None
    if failure is None:
        cur.execute("SAVEPOINT timescaledb_create")
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT timescaledb_create")
            failure = first_line(exc)
        else:
            cur.execute("RELEASE SAVEPOINT timescaledb_create")
            return None
    todo = (
        "add timescaledb to shared_preload_libraries in postgresql.conf and restart the server"
        if "preload" in failure
        else "ask an administrator to run CREATE EXTENSION timescaledb in this database"
    )
    return logging.WARNING, (
        f"the timescaledb extension is installed but cannot be created ({failure}); {todo}"
    )


def _preload_libraries(cur: psycopg.Cursor) -> list[str] | None:
    """Library names in shared_preload_libraries, or None when this role may not read it."""
    cur.execute("SAVEPOINT preload_probe")
    try:
        cur.execute("SELECT current_setting('shared_preload_libraries')")
    except psycopg.errors.InsufficientPrivilege:
        cur.execute("ROLLBACK TO SAVEPOINT preload_probe")
        return None
    row = cur.fetchone()
    cur.execute("RELEASE SAVEPOINT preload_probe")
    entries = (row[0] if row else "").split(",")
    return [e.strip().strip('"').rsplit("/", 1)[-1] for e in entries if e.strip()]


def _probe_create_extension(dsn: str) -> str | None:
    """Try CREATE EXTENSION timescaledb on a throwaway connection and roll it back; the
    failure's first line, or None when it can be created."""
    try:
        with psycopg.connect(dsn, connect_timeout=10) as probe:
            probe.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            probe.rollback()
    except psycopg.Error as exc:
        return first_line(exc)
    return None


def _load_hypertables(cur: psycopg.Cursor) -> dict[str, Hypertable]:
    cur.execute(
        "SELECT hypertable_name, time_interval, integer_interval "
        "FROM timescaledb_information.dimensions "
        "WHERE hypertable_schema = current_schema() AND dimension_number = 1"
    )
    return {
        name: Hypertable(name, interval if interval is not None else int(integer))
        for name, interval, integer in cur.fetchall()
    }


def _rows_per_session(table: str) -> int:
    """Most rows one (symbol, session) partition of `table` can hold."""
    spacing = BAR_SPACING.get(table)
    if spacing is None:
        return TICK_ROWS_PER_SESSION
    return 1 if spacing >= dt.timedelta(days=1) else math.ceil(LONGEST_SESSION / spacing)


def _rows_per_chunk(table: str, hypertable: Hypertable) -> int:
    """Most rows one symbol can have in one chunk of `hypertable`."""
    interval = hypertable.chunk_interval
    spacing = BAR_SPACING.get(table)
    if spacing is None:
        days = interval / 86_400_000_000_000 if isinstance(interval, int) else interval.days
        return math.ceil(max(days, 1)) * TICK_ROWS_PER_SESSION
    if isinstance(interval, int):
        raise StoreError(f"{table}: bar hypertables are chunked on a timestamptz column")
    return math.ceil(interval / spacing)


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
