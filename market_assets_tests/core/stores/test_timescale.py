"""TimescaleStore against a real PostgreSQL: partition rewrites, rollbacks, schema, reads."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from market_assets.core.errors import InvalidSymbolError, StoreError
from market_assets.core.schemas import BAR_SCHEMA, QUARANTINE_EXTRA_SCHEMA
from market_assets.core.stores.timescale import TimescaleStore, split_sql
from market_assets.core.validate import split_valid_bars
from market_assets_tests.fixtures.postgres import (
    PgServer,
    create_scratch_database,
    drop_scratch_database,
)

UTC = dt.UTC
D1 = dt.date(2024, 7, 1)
D2 = dt.date(2024, 7, 2)
EVER_START = dt.datetime(2000, 1, 1, tzinfo=UTC)
EVER_END = dt.datetime(2100, 1, 1, tzinfo=UTC)
BAR_TABLES = ["bars_15m", "bars_1d", "bars_1h", "bars_1m", "bars_5m"]


def daily_bars(rows: Sequence[tuple[str, dt.date, float]], source: str = "test") -> pl.DataFrame:
    """Canonical daily bars, one per (symbol, session, close); other prices derive from close."""
    return pl.DataFrame(
        {
            "ts": [dt.datetime.combine(d, dt.time(0), tzinfo=UTC) for _, d, _ in rows],
            "symbol": [s for s, _, _ in rows],
            "open": [c - 0.25 for _, _, c in rows],
            "high": [c + 1.125 for _, _, c in rows],
            "low": [c - 1.5 for _, _, c in rows],
            "close": [c for _, _, c in rows],
            "volume": [1_000 + int(c) for _, _, c in rows],
            "trade_count": [None if c > 150 else 42 for _, _, c in rows],
            "vwap": [None if c > 150 else c + 0.1 for _, _, c in rows],
            "granularity": ["1d"] * len(rows),
            "source": [source] * len(rows),
        },
        schema=BAR_SCHEMA,
    )


def minute_bars(symbol: str, opens: Sequence[dt.datetime], close: float = 10.0) -> pl.DataFrame:
    """Canonical 1-minute bars of one symbol at the given UTC opens."""
    frame = daily_bars([(symbol, D1, close)] * len(opens))
    ts = pl.Series("ts", opens, dtype=BAR_SCHEMA["ts"])
    return frame.with_columns(ts, granularity=pl.lit("1m"))


def read_all(store: TimescaleStore, dataset: str, symbols: str | Sequence[str]) -> pl.DataFrame:
    return store.read(dataset, symbols, EVER_START, EVER_END)


def test_write_partitions_given_new_partitions_round_trips_exact_values_and_dtypes(
    timescale_store: TimescaleStore,
) -> None:
    frame = daily_bars([("MSFT", D1, 456.123456789), ("AAPL", D1, 123.1), ("AAPL", D2, 0.1 + 0.2)])

    written = timescale_store.write_partitions(
        "bars_1d", frame, [("AAPL", D1), ("AAPL", D2), ("MSFT", D1)]
    )

    stored = read_all(timescale_store, "bars_1d", ["AAPL", "MSFT"])
    assert written == 3
    assert stored.schema == pl.Schema(BAR_SCHEMA)
    assert_frame_equal(stored, frame.sort("symbol", "ts"))
    assert stored.filter(symbol="AAPL", ts=dt.datetime(2024, 7, 2, tzinfo=UTC))["close"][0] == (
        0.1 + 0.2
    )


def test_write_partitions_given_same_frame_twice_keeps_one_copy_of_each_row(
    timescale_store: TimescaleStore,
) -> None:
    frame = daily_bars([("AAPL", D1, 100.0), ("AAPL", D2, 101.0)])
    partitions = [("AAPL", D1), ("AAPL", D2)]

    timescale_store.write_partitions("bars_1d", frame, partitions)
    timescale_store.write_partitions("bars_1d", frame, partitions)

    assert_frame_equal(read_all(timescale_store, "bars_1d", ["AAPL"]), frame)


def test_write_partitions_given_rewrite_replaces_only_that_partition(
    timescale_store: TimescaleStore,
) -> None:
    original = daily_bars([("AAPL", D1, 100.0), ("AAPL", D2, 101.0), ("MSFT", D1, 200.0)])
    timescale_store.write_partitions(
        "bars_1d", original, [("AAPL", D1), ("AAPL", D2), ("MSFT", D1)]
    )

    timescale_store.write_partitions(
        "bars_1d", daily_bars([("AAPL", D1, 99.5)], source="fix"), [("AAPL", D1)]
    )

    stored = read_all(timescale_store, "bars_1d", ["AAPL", "MSFT"])
    assert stored.select("symbol", "close", "source").rows() == [
        ("AAPL", 99.5, "fix"),
        ("AAPL", 101.0, "test"),
        ("MSFT", 200.0, "test"),
    ]


def test_write_partitions_given_empty_frame_deletes_the_partition(
    timescale_store: TimescaleStore,
) -> None:
    both_days = daily_bars([("AAPL", D1, 100.0), ("AAPL", D2, 101.0)])
    timescale_store.write_partitions("bars_1d", both_days, [("AAPL", D1), ("AAPL", D2)])

    written = timescale_store.write_partitions("bars_1d", daily_bars([]), [("AAPL", D1)])

    assert written == 0
    assert read_all(timescale_store, "bars_1d", ["AAPL"])["close"].to_list() == [101.0]


def test_write_partitions_given_row_outside_partitions_raises_before_anything_changes(
    timescale_store: TimescaleStore,
) -> None:
    original = daily_bars([("AAPL", D1, 100.0)])
    timescale_store.write_partitions("bars_1d", original, [("AAPL", D1)])
    stray = daily_bars([("AAPL", D1, 50.0), ("AAPL", D2, 51.0)])

    with pytest.raises(StoreError, match=r"symbol='AAPL' ts=2024-07-02 00:00:00\+00:00"):
        timescale_store.write_partitions("bars_1d", stray, [("AAPL", D1)])

    assert_frame_equal(read_all(timescale_store, "bars_1d", ["AAPL"]), original)


@pytest.mark.parametrize("symbol", ["../etc", "x'; drop table bars_1d;--"])
def test_write_partitions_given_hostile_symbol_raises_before_any_sql(
    timescale_store: TimescaleStore, monkeypatch: pytest.MonkeyPatch, symbol: str
) -> None:
    frame = daily_bars([(symbol, D1, 100.0)])

    def no_sql(*args: object, **kwargs: object) -> None:
        raise AssertionError("SQL was sent for a hostile symbol")

    monkeypatch.setattr(timescale_store._conn, "cursor", no_sql)
    monkeypatch.setattr(timescale_store._reader, "fetch_arrow", no_sql)
    with pytest.raises(InvalidSymbolError, match="invalid symbol"):
        timescale_store.write_partitions("bars_1d", frame, [(symbol, D1)])
    with pytest.raises(InvalidSymbolError, match="invalid symbol"):
        timescale_store.read("bars_1d", [symbol], EVER_START, EVER_END)


def test_write_partitions_given_unknown_dataset_raises_value_error(
    timescale_store: TimescaleStore,
) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'bars_2m'"):
        timescale_store.write_partitions("bars_2m", daily_bars([]), [])


def test_write_partitions_given_null_close_rolls_back_and_keeps_old_partition(
    timescale_store: TimescaleStore,
) -> None:
    original = daily_bars([("AAPL", D1, 100.0), ("MSFT", D1, 200.0)])
    timescale_store.write_partitions("bars_1d", original, [("AAPL", D1), ("MSFT", D1)])
    broken = daily_bars([("AAPL", D1, 1.0), ("MSFT", D1, 2.0)]).with_columns(
        close=pl.when(pl.col("symbol") == "MSFT").then(None).otherwise(pl.col("close"))
    )

    with pytest.raises(StoreError, match=r"bars_1d failed and was rolled back.*close"):
        timescale_store.write_partitions("bars_1d", broken, [("AAPL", D1), ("MSFT", D1)])

    assert_frame_equal(read_all(timescale_store, "bars_1d", ["AAPL", "MSFT"]), original)
    timescale_store.write_partitions("bars_1d", original.head(1), [("AAPL", D1)])


def test_write_partitions_given_duplicate_key_raises_and_keeps_old_partition(
    timescale_store: TimescaleStore,
) -> None:
    original = daily_bars([("AAPL", D1, 100.0)])
    timescale_store.write_partitions("bars_1d", original, [("AAPL", D1)])

    with pytest.raises(StoreError, match="bars_1d_pkey"):
        timescale_store.write_partitions(
            "bars_1d", daily_bars([("AAPL", D1, 1.0), ("AAPL", D1, 2.0)]), [("AAPL", D1)]
        )

    assert_frame_equal(read_all(timescale_store, "bars_1d", ["AAPL"]), original)


def test_write_partitions_deletes_by_literal_bounds_under_a_bounded_decompression_limit(
    timescale_store: TimescaleStore, pg_server: PgServer
) -> None:
    executed: list[str] = []

    class RecordingCursor(psycopg.Cursor):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            executed.append(query if isinstance(query, str) else query.as_string(self))
            return super().execute(query, params, **kwargs)

    timescale_store._conn.cursor_factory = RecordingCursor
    frame = daily_bars([("AAPL", D1, 100.0), ("AAPL", D2, 101.0), ("MSFT", D2, 200.0)])

    timescale_store.write_partitions("bars_1d", frame, [("AAPL", D1), ("AAPL", D2), ("MSFT", D2)])

    limits = [q for q in executed if "max_tuples_decompressed_per_dml_transaction" in q]
    deletes = next(q for q in executed if q.startswith("DELETE")).split(";\n")
    assert deletes == [
        """DELETE FROM "bars_1d" WHERE symbol IN ('AAPL') AND "ts" >= """
        """'2024-07-01 00:00:00+00:00'::timestamptz AND "ts" < '2024-07-03 00:00:00+00:00'"""
        "::timestamptz",
        """DELETE FROM "bars_1d" WHERE symbol IN ('MSFT') AND "ts" >= """
        """'2024-07-02 00:00:00+00:00'::timestamptz AND "ts" < '2024-07-03 00:00:00+00:00'"""
        "::timestamptz",
    ]
    if pg_server.timescale:
        # each symbol may decompress at most its bars_1d rows of the touched yearly chunk(s)
        bound = int(limits[0].rsplit("=", 1)[1])
        assert 0 < bound <= 2 * 2 * 366
    else:
        assert limits == []


def test_write_partitions_given_intraday_session_replaces_bars_of_the_whole_new_york_day(
    timescale_store: TimescaleStore,
) -> None:
    # 2024-07-01 in New York (EDT, UTC-4) runs from 04:00 UTC that day to 04:00 UTC the next.
    in_session = [
        dt.datetime(2024, 7, 1, 13, 30, tzinfo=UTC),
        dt.datetime(2024, 7, 1, 20, 59, tzinfo=UTC),
        dt.datetime(2024, 7, 2, 3, 59, tzinfo=UTC),
    ]
    next_session = [dt.datetime(2024, 7, 2, 4, 0, tzinfo=UTC)]
    timescale_store.write_partitions(
        "bars_1m", minute_bars("SPY", in_session + next_session), [("SPY", D1), ("SPY", D2)]
    )

    timescale_store.write_partitions(
        "bars_1m", minute_bars("SPY", in_session[:2], close=11.0), [("SPY", D1)]
    )

    stored = read_all(timescale_store, "bars_1m", ["SPY"])
    assert stored.select("ts", "close").rows() == [
        (in_session[0], 11.0),
        (in_session[1], 11.0),
        (next_session[0], 10.0),
    ]


def test_write_partitions_given_intraday_bar_of_next_session_raises(
    timescale_store: TimescaleStore,
) -> None:
    late = minute_bars("SPY", [dt.datetime(2024, 7, 2, 4, 0, tzinfo=UTC)])

    with pytest.raises(StoreError, match=r"session 2024-07-02"):
        timescale_store.write_partitions("bars_1m", late, [("SPY", D1)])


def test_read_given_special_floats_and_punctuated_text_returns_them_unchanged(
    timescale_store: TimescaleStore,
) -> None:
    frame = daily_bars([("AAPL", D1, 100.0), ("IBM", D1, 100.0), ("MSFT", D1, 100.0)])
    frame = frame.with_columns(
        vwap=pl.Series([float("nan"), float("-inf"), float("inf")]),
        source=pl.Series(["a,b", "new\nline", 'q"uote']),
    )
    timescale_store.write_partitions("bars_1d", frame, [("AAPL", D1), ("IBM", D1), ("MSFT", D1)])

    stored = read_all(timescale_store, "bars_1d", ["AAPL", "IBM", "MSFT"])

    assert_frame_equal(stored, frame)


def quarantined(symbol: str, session: dt.date, rules: Sequence[str]) -> pl.DataFrame:
    """Quarantined daily rows of one partition: the first has a null ts and open."""
    rows = daily_bars([(symbol, session, 100.0)] * len(rules))
    return rows.with_columns(
        ts=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("ts")),
        open=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(-1.0),
        session=pl.lit(session),
        dataset=pl.lit("bars_1d"),
        rule=pl.Series(list(rules)),
        detail=pl.Series(["ts=null o=null", *[None] * (len(rules) - 1)], dtype=pl.String),
        quarantined_at=pl.lit(
            dt.datetime(2024, 7, 3, 12, 0, 0, 123456, tzinfo=UTC),
            dtype=QUARANTINE_EXTRA_SCHEMA["quarantined_at"],
        ),
    )


def test_write_quarantine_round_trips_rows_with_nulls_and_replaces_the_partition(
    timescale_store: TimescaleStore,
) -> None:
    bad = quarantined("AAPL", D1, ["null_timestamp,null_price", "non_positive_price"])
    neighbour = quarantined("AAPL", D2, ["null_timestamp"])
    timescale_store.write_quarantine(
        "bars_1d", pl.concat([bad, neighbour]), [("AAPL", D1), ("AAPL", D2)]
    )
    timescale_store.write_quarantine("bars_1d", bad, [("AAPL", D1)])

    stored = timescale_store.read_quarantine("bars_1d", "AAPL", D1, D2)

    assert stored.schema == pl.Schema({**BAR_SCHEMA, **QUARANTINE_EXTRA_SCHEMA})
    assert_frame_equal(stored, bad.sort("ts", nulls_last=True))
    assert timescale_store.read_quarantine("bars_1d", "AAPL", D2, D2 + dt.timedelta(days=1))[
        "rule"
    ].to_list() == ["null_timestamp"]
    assert read_all(timescale_store, "bars_1d", ["AAPL"]).is_empty()


def test_write_quarantine_given_no_session_column_files_rows_by_their_ts(
    timescale_store: TimescaleStore,
) -> None:
    rows = daily_bars([("AAPL", D2, 100.0)]).with_columns(
        open=pl.lit(-1.0), rule=pl.lit("non_positive_price")
    )

    timescale_store.write_quarantine("bars_1d", rows, [("AAPL", D2)])

    stored = timescale_store.read_quarantine("bars_1d", ["AAPL"], D2, D2 + dt.timedelta(days=1))
    assert stored.select("session", "rule").rows() == [(D2, "non_positive_price")]


def test_write_quarantine_given_split_valid_bars_output_stores_it_as_is(
    timescale_store: TimescaleStore,
) -> None:
    frame = daily_bars([("AAPL", D1, 100.0), ("AAPL", D2, 101.0)]).with_columns(
        high=pl.when(pl.col("ts").dt.date() == D2).then(1.0).otherwise(pl.col("high"))
    )
    partitions = [("AAPL", D1), ("AAPL", D2)]
    result = split_valid_bars(frame, dataset="bars_1d", partitions=partitions)

    timescale_store.write_partitions("bars_1d", result.valid, partitions)
    timescale_store.write_quarantine("bars_1d", result.quarantined, partitions)

    assert read_all(timescale_store, "bars_1d", "AAPL")["close"].to_list() == [100.0]
    assert_frame_equal(
        timescale_store.read_quarantine("bars_1d", "AAPL", D1, D2 + dt.timedelta(days=1)),
        result.quarantined,
    )


def test_write_quarantine_given_row_filed_under_unlisted_session_raises(
    timescale_store: TimescaleStore,
) -> None:
    with pytest.raises(StoreError, match=r"quarantine_bars_1d: 1 row\(s\).*session 2024-07-02"):
        timescale_store.write_quarantine(
            "bars_1d", quarantined("AAPL", D2, ["null_timestamp"]), [("AAPL", D1)]
        )


def test_write_quarantine_given_rows_of_another_dataset_raises(
    timescale_store: TimescaleStore,
) -> None:
    rows = daily_bars([("AAPL", D1, 100.0)]).with_columns(
        dataset=pl.lit("bars_1m"), rule=pl.lit("null_price")
    )

    with pytest.raises(StoreError, match="belong to dataset 'bars_1m'"):
        timescale_store.write_quarantine("bars_1d", rows, [("AAPL", D1)])


def test_read_given_one_symbol_columns_and_naive_bounds_returns_those_columns_in_range(
    timescale_store: TimescaleStore,
) -> None:
    timescale_store.write_partitions(
        "bars_1d",
        daily_bars([("AAPL", D1, 100.0), ("AAPL", D2, 101.0), ("MSFT", D1, 200.0)]),
        [("AAPL", D1), ("AAPL", D2), ("MSFT", D1)],
    )

    stored = timescale_store.read(
        "bars_1d", "AAPL", dt.datetime(2024, 7, 2), dt.datetime(2024, 7, 3), ["close", "ts"]
    )

    assert stored.schema == pl.Schema({"close": pl.Float64(), "ts": BAR_SCHEMA["ts"]})
    assert stored.rows() == [(101.0, dt.datetime(2024, 7, 2, tzinfo=UTC))]


def test_read_given_no_matching_rows_returns_empty_canonical_frame(
    timescale_store: TimescaleStore,
) -> None:
    stored = read_all(timescale_store, "bars_5m", ["AAPL"])

    assert stored.is_empty()
    assert stored.schema == pl.Schema(BAR_SCHEMA)


def test_read_given_unknown_column_raises_value_error(timescale_store: TimescaleStore) -> None:
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['price'\]"):
        timescale_store.read("bars_1d", ["AAPL"], EVER_START, EVER_END, ["price"])


def test_ensure_schema_given_second_run_keeps_tables_and_rows(
    timescale_store: TimescaleStore,
) -> None:
    frame = daily_bars([("AAPL", D1, 100.0)])
    timescale_store.write_partitions("bars_1d", frame, [("AAPL", D1)])

    first = timescale_store.ensure_schema()
    second = timescale_store.ensure_schema()

    assert first == second == timescale_store.uses_timescale
    assert_frame_equal(read_all(timescale_store, "bars_1d", ["AAPL"]), frame)


def test_ensure_schema_creates_primary_key_on_symbol_ts_and_quarantine_indexes(
    timescale_store: TimescaleStore, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        primary_keys = conn.execute(
            """
            SELECT c.relname, array_agg(a.attname ORDER BY k.ord)
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE i.indisprimary AND c.relname LIKE 'bars\\_%'
              AND c.relnamespace = 'public'::regnamespace
            GROUP BY c.relname ORDER BY c.relname
            """
        ).fetchall()
        quarantine_indexes = conn.execute(
            "SELECT tablename, indexdef FROM pg_indexes "
            "WHERE tablename LIKE 'quarantine\\_bars\\_%' "
            "ORDER BY tablename"
        ).fetchall()

    assert primary_keys == [(t, ["symbol", "ts"]) for t in BAR_TABLES]
    assert {(t, d[d.index("(") :]) for t, d in quarantine_indexes} == {
        (f"quarantine_{t}", columns)
        for t in BAR_TABLES
        for columns in ("(symbol, session)", "(symbol, ts)")
    }


def test_ensure_schema_makes_hypertables_exactly_when_the_server_has_timescaledb(
    timescale_store: TimescaleStore, pg_dsn: str, pg_server: PgServer
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        timescale_schemas = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '\\_timescaledb%'"
        ).fetchone()
        hypertables = (
            conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables "
                "WHERE hypertable_name LIKE 'bars\\_%' ORDER BY 1"
            ).fetchall()
            if pg_server.timescale
            else []
        )
        plain_tables = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname = ANY(%s) "
            "AND NOT relhassubclass",
            (BAR_TABLES,),
        ).fetchone()

    assert timescale_store.uses_timescale is pg_server.timescale
    if pg_server.timescale:
        assert [name for (name,) in hypertables] == BAR_TABLES
    else:
        assert timescale_schemas == (0,)
        assert plain_tables == (len(BAR_TABLES),)


def test_ensure_schema_given_failing_statement_names_it_and_rolls_back_the_whole_schema(
    pg_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "001_probe.sql").write_text(
        "CREATE TABLE probe_rolled_back (x int);\nSELECT no_such_function();\n"
    )

    with TimescaleStore(pg_dsn, sql_dir=tmp_path) as store:
        with pytest.raises(StoreError, match=r"'SELECT no_such_function\(\)'"):
            store.ensure_schema()
        with psycopg.connect(pg_dsn) as conn:
            exists = conn.execute("SELECT to_regclass('probe_rolled_back')").fetchone()

    assert exists == (None,)


def test_ensure_schema_given_two_processes_at_once_both_succeed(pg_server: PgServer) -> None:
    dsn = create_scratch_database(pg_server.admin_dsn, prefix="market_assets_test_race")
    try:
        errors: list[BaseException] = []

        def apply() -> None:
            try:
                with TimescaleStore(dsn) as store:
                    store.ensure_schema()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=apply) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        with TimescaleStore(dsn) as store:
            assert store.uses_timescale is pg_server.timescale
            assert store.read("bars_1m", ["AAPL"], EVER_START, EVER_END).is_empty()
    finally:
        drop_scratch_database(dsn, pg_server.admin_dsn)


def test_timescale_sql_statements_make_compressed_hypertables_of_every_bar_table(
    timescale_store: TimescaleStore,
) -> None:
    statements = [" ".join(s.split()) for s in timescale_store.timescale_sql_statements()]
    intervals = {
        "bars_1m": "7 days",
        "bars_5m": "7 days",
        "bars_15m": "30 days",
        "bars_1h": "30 days",
        "bars_1d": "365 days",
    }

    assert statements[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    for table, interval in intervals.items():
        assert (
            f"SELECT create_hypertable('{table}', by_range('ts', INTERVAL '{interval}'), "
            "if_not_exists => TRUE, migrate_data => TRUE)"
        ) in statements
    compression = next(s for s in statements if "timescaledb.compress" in s)
    assert "timescaledb.compress_segmentby = ''symbol''" in compression
    assert "timescaledb.compress_orderby = ''ts DESC''" in compression
    assert all(f"'{table}'" in compression for table in intervals)
    assert not [s for s in statements if "policy" in s]  # policies come from datasets.yaml


def test_split_sql_keeps_semicolons_inside_quotes_dollar_bodies_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    SELECT 'a;b', 'it''s; fine';
    DO $$ BEGIN PERFORM 1; END $$;
    DO $body$ BEGIN PERFORM 2; END $body$;
    """

    assert split_sql(script) == [
        "SELECT 'a;b', 'it''s; fine'",
        "DO $$ BEGIN PERFORM 1; END $$",
        "DO $body$ BEGIN PERFORM 2; END $body$",
    ]
