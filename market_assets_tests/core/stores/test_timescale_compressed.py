"""TimescaleStore on a real TimescaleDB: rewrites inside compressed chunks, policies, aggregates.

These tests need what only TimescaleDB has (compression, jobs, continuous aggregates), so they
run on the TimescaleDB server alone, each module on its own scratch database; the store tests
that hold on any PostgreSQL run on both servers (test_timescale.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from market_assets.core.calendar import get_calendar
from market_assets.core.config import TimescalePolicy
from market_assets.core.errors import StoreError
from market_assets.core.stores.layout import layout_for
from market_assets.core.stores.timescale import TimescaleStore
from market_assets.core.transforms.resample import resample_bars
from market_assets_tests.fixtures.postgres import (
    PgServer,
    create_scratch_database,
    drop_scratch_database,
    empty_tables,
)
from market_assets_tests.helpers import make_bars

SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY"]
SESSIONS = get_calendar().sessions(dt.date(2024, 3, 4), dt.date(2024, 3, 29))  # 20 sessions
NEXT_SESSION = dt.date(2024, 4, 1)
EVER = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def ts_dsn(timescaledb_server: PgServer) -> Iterator[str]:
    dsn = create_scratch_database(timescaledb_server.admin_dsn, prefix="market_assets_compressed")
    try:
        yield dsn
    finally:
        drop_scratch_database(dsn, timescaledb_server.admin_dsn)


@pytest.fixture
def store(ts_dsn: str) -> Iterator[TimescaleStore]:
    with TimescaleStore(ts_dsn) as opened:
        assert opened.ensure_schema() is True
        empty_tables(ts_dsn)
        yield opened


@pytest.fixture
def history(store: TimescaleStore, ts_dsn: str) -> pl.DataFrame:
    """Twenty sessions of 1m bars of four symbols, every chunk compressed."""
    frame = make_bars(SYMBOLS, SESSIONS, "1m", seed=3)
    store.write_partitions("bars_1m", frame, [(s, d) for s in SYMBOLS for d in SESSIONS])
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('bars_1m') AS c")
    return frame


def compressed_rows(dsn: str, table: str = "bars_1m") -> dict[str, int]:
    """Rows per symbol held in compressed batches of `table`'s chunks."""
    with psycopg.connect(dsn) as conn:
        chunks = conn.execute(
            "SELECT cc.schema_name, cc.table_name FROM _timescaledb_catalog.chunk c "
            "JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id "
            "JOIN _timescaledb_catalog.chunk cc ON cc.id = c.compressed_chunk_id "
            "WHERE h.table_name = %s",
            (table,),
        ).fetchall()
        counts: dict[str, int] = {}
        for schema, name in chunks:
            rows = conn.execute(
                sql.SQL("SELECT symbol, sum(_ts_meta_count) FROM {} GROUP BY symbol").format(
                    sql.Identifier(schema, name)
                )
            ).fetchall()
            for symbol, count in rows:
                counts[symbol] = counts.get(symbol, 0) + int(count)
    return counts


def tuples_decompressed(dsn: str, statements: list[str], guard: int = 0) -> int:
    """Tuples decompressed by EXPLAIN (ANALYZE, FORMAT JSON) of `statements`, rolled back."""
    total = 0
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL(
                "SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = {}"
            ).format(sql.Literal(guard))
        )
        for statement in statements:
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).fetchone()[0]
            total += _sum_key(plan[0]["Plan"], "Tuples decompressed")
        conn.rollback()
    return total


def _sum_key(node: dict[str, Any], key: str) -> int:
    return int(node.get(key, 0)) + sum(_sum_key(child, key) for child in node.get("Plans", []))


def rows_of_symbol_in_chunks_of(dsn: str, symbol: str, session: dt.date) -> int:
    """Rows of `symbol` in the chunk(s) that hold `session`: its compressed segment there."""
    lo, hi = layout_for("bars_1m").session_bounds(session)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT sum(c) FROM (SELECT (SELECT count(*) FROM bars_1m b WHERE b.symbol = %s "
            "AND b.ts >= ch.range_start AND b.ts < ch.range_end) AS c "
            "FROM timescaledb_information.chunks ch WHERE ch.hypertable_name = 'bars_1m' "
            "AND ch.range_start < %s AND ch.range_end > %s) AS per_chunk",
            (symbol, hi, lo),
        ).fetchone()
    return int(row[0])


def legacy_unnest_delete(symbol: str, session: dt.date) -> str:
    """The delete the store used before: a join against unnest(...)."""
    lo, hi = layout_for("bars_1m").session_bounds(session)
    return (
        "DELETE FROM bars_1m AS t USING unnest("
        f"ARRAY['{symbol}']::text[], ARRAY['{lo.isoformat()}']::timestamptz[], "
        f"ARRAY['{hi.isoformat()}']::timestamptz[]) AS p(symbol, lo, hi) "
        "WHERE t.symbol = p.symbol AND t.ts >= p.lo AND t.ts < p.hi"
    )


def test_rewriting_one_partition_in_compressed_history_decompresses_only_its_segment(
    store: TimescaleStore, ts_dsn: str, history: pl.DataFrame
) -> None:
    session = SESSIONS[7]
    segment = rows_of_symbol_in_chunks_of(ts_dsn, "MSFT", session)
    before = compressed_rows(ts_dsn)
    replacement = make_bars(["MSFT"], [session], "1m", seed=99)

    explained = tuples_decompressed(
        ts_dsn, store.partition_delete_sql("bars_1m", [("MSFT", session)])
    )
    legacy = tuples_decompressed(ts_dsn, [legacy_unnest_delete("MSFT", session)])
    store.write_partitions("bars_1m", replacement, [("MSFT", session)])

    after = compressed_rows(ts_dsn)
    assert 0 < explained <= segment < legacy
    assert before["MSFT"] - after["MSFT"] <= segment
    assert {s: after[s] for s in ("AAPL", "NVDA", "SPY")} == {
        s: before[s] for s in ("AAPL", "NVDA", "SPY")
    }
    expected = pl.concat(
        [
            history.filter(~((pl.col("symbol") == "MSFT") & (pl.col("ts").dt.date() == session))),
            replacement,
        ]
    ).sort("symbol", "ts")
    assert_frame_equal(store.read("bars_1m", SYMBOLS, *EVER), expected)


def test_appending_a_new_session_after_compressed_history_decompresses_nothing(
    store: TimescaleStore, ts_dsn: str, history: pl.DataFrame
) -> None:
    before = compressed_rows(ts_dsn)
    new_session = make_bars(SYMBOLS, [NEXT_SESSION], "1m", seed=5)
    partitions = [(s, NEXT_SESSION) for s in SYMBOLS]

    explained = tuples_decompressed(ts_dsn, store.partition_delete_sql("bars_1m", partitions))
    store.write_partitions("bars_1m", new_session, partitions)

    assert explained == 0
    assert compressed_rows(ts_dsn) == before
    assert store.read("bars_1m", SYMBOLS, *EVER).height == history.height + new_session.height


def test_rewriting_a_whole_backfill_rectangle_in_compressed_history_fits_the_budget(
    store: TimescaleStore, ts_dsn: str, history: pl.DataFrame
) -> None:
    # bars_1m runs cover backfill_sessions_per_run = 20 sessions: this history is one run
    replacement = make_bars(SYMBOLS, SESSIONS, "1m", seed=4)

    store.write_partitions("bars_1m", replacement, [(s, d) for s in SYMBOLS for d in SESSIONS])

    assert compressed_rows(ts_dsn) == {}
    assert_frame_equal(store.read("bars_1m", SYMBOLS, *EVER), replacement)


def test_a_delete_that_misses_the_compressed_batches_is_stopped_by_a_one_segment_guard(
    store: TimescaleStore, ts_dsn: str, history: pl.DataFrame
) -> None:
    session = SESSIONS[12]
    segment = rows_of_symbol_in_chunks_of(ts_dsn, "NVDA", session)
    literal = store.partition_delete_sql("bars_1m", [("NVDA", session)])

    assert tuples_decompressed(ts_dsn, literal, guard=segment) <= segment
    with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="decompression limit"):
        tuples_decompressed(ts_dsn, [legacy_unnest_delete("NVDA", session)], guard=segment)


def jobs(dsn: str) -> dict[tuple[str, str], str]:
    """(table, policy) -> its configured threshold, for this database's policy jobs."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT hypertable_name, proc_name, coalesce(config ->> 'compress_after', "
            "config ->> 'drop_after') FROM timescaledb_information.jobs "
            "WHERE hypertable_name IS NOT NULL"
        ).fetchall()
    return {(table, proc): value for table, proc, value in rows}


def test_ensure_schema_makes_policy_jobs_match_the_configured_policies(
    store: TimescaleStore, ts_dsn: str
) -> None:
    store.ensure_schema(
        {
            "bars_1m": TimescalePolicy(compress_after="30 days"),
            "trades": TimescalePolicy(compress_after="7 days", drop_after="52 weeks"),
        }
    )
    first = jobs(ts_dsn)
    store.ensure_schema(
        {
            "bars_1m": TimescalePolicy(compress_after="10 days", drop_after="3 weeks"),
            "trades": TimescalePolicy(),
        }
    )
    second = jobs(ts_dsn)
    store.ensure_schema({"bars_1m": TimescalePolicy()})

    assert first == {
        ("bars_1m", "policy_compression"): "30 days",
        ("trades", "policy_compression"): str(7 * 86_400 * 10**9),
        ("trades", "policy_retention"): str(52 * 7 * 86_400 * 10**9),
    }
    assert second == {
        ("bars_1m", "policy_compression"): "10 days",
        ("bars_1m", "policy_retention"): "21 days",
    }
    assert jobs(ts_dsn) == {}


def test_ensure_schema_given_policies_for_a_plain_table_names_the_dataset(
    store: TimescaleStore,
) -> None:
    with pytest.raises(StoreError, match="corporate_actions: timescale policies apply to hyper"):
        store.ensure_schema({"corporate_actions": TimescalePolicy(compress_after="30 days")})


def test_a_compression_policy_run_in_the_foreground_compresses_old_chunks(
    store: TimescaleStore, ts_dsn: str
) -> None:
    frame = make_bars(["AAPL"], SESSIONS[:5], "1m")
    store.write_partitions("bars_1m", frame, [("AAPL", d) for d in SESSIONS[:5]])
    store.ensure_schema({"bars_1m": TimescalePolicy(compress_after="30 days")})

    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        (job,) = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE hypertable_name = 'bars_1m' AND proc_name = 'policy_compression'"
        ).fetchone()
        conn.execute("CALL run_job(%s)", (job,))
        compressed = conn.execute(
            "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'bars_1m'"
        ).fetchone()
    store.ensure_schema({"bars_1m": TimescalePolicy()})

    assert compressed == (True,)
    assert compressed_rows(ts_dsn) == {"AAPL": frame.height}
    assert_frame_equal(store.read("bars_1m", "AAPL", *EVER), frame)


def daily_from_minutes(minutes: pl.DataFrame) -> pl.DataFrame:
    """1d bars aggregated in polars from 1m bars, at the session date 00:00 UTC."""
    session = layout_for("bars_1m").session_expr()
    return (
        minutes.sort("symbol", "ts")
        .group_by("symbol", session.alias("session"), maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("trade_count").sum(),
            ((pl.col("vwap") * pl.col("volume")).sum() / pl.col("volume").sum()).alias("vwap"),
        )
        .select(
            pl.col("session").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
            pl.exclude("session"),
        )
    )


@pytest.fixture
def with_aggregates(store: TimescaleStore) -> Iterator[TimescaleStore]:
    store.ensure_schema({"bars_1m": TimescalePolicy(continuous_aggregates=["1h", "1d"])})
    yield store
    store.ensure_schema({"bars_1m": TimescalePolicy()})


def test_continuous_aggregates_serve_1h_and_1d_from_1m_right_after_each_write(
    with_aggregates: TimescaleStore,
) -> None:
    store = with_aggregates
    sessions = SESSIONS[:3]
    minutes = make_bars(["AAPL", "MSFT"], sessions, "1m", seed=8)
    store.write_partitions("bars_1m", minutes, [(s, d) for s in ("AAPL", "MSFT") for d in sessions])
    fixed = make_bars(["MSFT"], sessions[1:2], "1m", seed=9)
    store.write_partitions("bars_1m", fixed, [("MSFT", sessions[1])])
    stored = store.read("bars_1m", ["AAPL", "MSFT"], *EVER)

    hourly = store.read_aggregate("bars_1m", "1h", ["AAPL", "MSFT"], *EVER)
    daily = store.read_aggregate("bars_1m", "1d", ["AAPL", "MSFT"], *EVER)

    assert_frame_equal(hourly, resample_bars(stored, "1h"), rel_tol=1e-12, abs_tol=1e-8)
    assert daily["granularity"].unique().to_list() == ["1d"]
    assert daily["source"].unique().to_list() == ["synthetic"]
    assert_frame_equal(
        daily.drop("granularity", "source"),
        daily_from_minutes(stored),
        rel_tol=1e-12,
        abs_tol=1e-8,
    )
    assert daily.filter(symbol="MSFT")["close"][1] == fixed["close"][-1]


def test_unconfigured_continuous_aggregates_are_dropped_and_reads_name_the_setting(
    with_aggregates: TimescaleStore,
) -> None:
    with_aggregates.ensure_schema({"bars_1m": TimescalePolicy(continuous_aggregates=["1d"])})

    with pytest.raises(StoreError, match="bars_1m.timescale.continuous_aggregates"):
        with_aggregates.read_aggregate("bars_1m", "1h", "AAPL", *EVER)
    assert with_aggregates.read_aggregate("bars_1m", "1d", "AAPL", *EVER).is_empty()


def test_ensure_schema_on_a_server_with_timescaledb_installed_but_not_preloaded_stays_plain(
    unpreloaded_timescaledb: str, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = create_scratch_database(unpreloaded_timescaledb, prefix="market_assets_unpreloaded")
    try:
        with psycopg.connect(dsn) as conn:
            available = conn.execute(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
        frame = make_bars(["AAPL"], SESSIONS[:2], "1m")

        with caplog.at_level(logging.INFO), TimescaleStore(dsn) as store:
            uses_timescale = store.ensure_schema(
                {"bars_1m": TimescalePolicy(compress_after="30 days")}
            )
            store.write_partitions("bars_1m", frame, [("AAPL", d) for d in SESSIONS[:2]])
            stored = store.read("bars_1m", "AAPL", *EVER)
        with psycopg.connect(dsn) as conn:
            extensions = conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall()
    finally:
        drop_scratch_database(dsn, unpreloaded_timescaledb)

    assert available == (1,)
    assert uses_timescale is False
    assert extensions == [("plpgsql",)]
    assert_frame_equal(stored, frame)
    (line,) = [r for r in caplog.records if "TimescaleDB not used" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "must be preloaded" in line.getMessage()
    assert "shared_preload_libraries" in line.getMessage()


def test_ensure_schema_as_a_role_that_cannot_read_the_preload_list_probes_and_stays_plain(
    unpreloaded_timescaledb: str, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = create_scratch_database(unpreloaded_timescaledb, prefix="market_assets_unpreloaded")
    role = "market_assets_writer"
    with psycopg.connect(unpreloaded_timescaledb, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(conninfo_to_dict(dsn)["dbname"]), sql.Identifier(role)
            )
        )
    try:
        with caplog.at_level(logging.INFO), TimescaleStore(make_conninfo(dsn, user=role)) as store:
            uses_timescale = store.ensure_schema()
            store.write_partitions(
                "bars_1d", make_bars(["AAPL"], SESSIONS[:1]), [("AAPL", SESSIONS[0])]
            )
            stored = store.read("bars_1d", "AAPL", *EVER)
    finally:
        drop_scratch_database(dsn, unpreloaded_timescaledb)
        with psycopg.connect(unpreloaded_timescaledb, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

    assert uses_timescale is False
    assert stored.height == 1
    (line,) = [r for r in caplog.records if "TimescaleDB not used" in r.getMessage()]
    assert "installed but cannot be created" in line.getMessage()
