"""PostgreSQL becomes unavailable mid-run: the step says which store holds what and why, and
the next run brings PostgreSQL back in line with the lake (defs/store_sync.py).

A real PostgreSQL scratch database is made unavailable right after a step's lake write:
`ALLOW_CONNECTIONS false` plus `pg_terminate_backend` from a second connection, so the step's
open connection dies and reconnecting is refused, as when a server goes away.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.utils import make_new_run_id
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.pending import PendingPartitions
from market_assets.core.stores.timescale import TimescaleStore
from market_assets.defs.process_runs import process_tags
from market_assets.defs.run_errors import one_line, root_cause, run_failure
from market_assets.defs.runner import step_metadata
from market_assets.defs.store_sync import RUN_ID, abandoned_by
from market_assets.query import MarketData
from market_assets_tests.defs.test_bar_pipeline import make_pipeline, partition_status
from market_assets_tests.fixtures.postgres import (
    PgServer,
    create_scratch_database,
    drop_scratch_database,
)

SESSIONS = [dt.date(2024, 3, 7), dt.date(2024, 3, 8), dt.date(2024, 3, 11)]
NEXT = dt.date(2024, 3, 12)
SYMBOLS = ["AAPL", "MSFT"]
PASSWORD = "not-for-logs"  # trust auth ignores it; it must never show in a message


@pytest.fixture
def dsn(pg_server: PgServer) -> Iterator[str]:
    """A scratch database on each test server in turn, with a password in its DSN."""
    plain = create_scratch_database(pg_server.admin_dsn, prefix="market_assets_diverge")
    try:
        with TimescaleStore(plain) as store:
            store.ensure_schema()
        yield make_conninfo(plain, password=PASSWORD)
    finally:
        set_connections(plain, allowed=True)
        drop_scratch_database(plain, pg_server.admin_dsn)


def server_of(dsn: str) -> str:
    """How messages name the server of `dsn` (never with its password)."""
    info = conninfo_to_dict(dsn)
    return f"host={info['host']} port={info['port']} dbname={info['dbname']}"


def set_connections(dsn: str, *, allowed: bool) -> None:
    """Let clients into the database again, or refuse new ones and end the open ones."""
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allowed else "false")
            )
        )
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def fail_postgresql_after_lake_write(monkeypatch, dsn: str, *datasets: str) -> None:
    """Make the database unavailable right after the next lake write of one of `datasets`."""
    original = ParquetLake.write_partitions

    def write_then_fail(self, name, frame, partitions):  # noqa: ANN001, ANN202
        summary = original(self, name, frame, partitions)
        if name in datasets:
            monkeypatch.setattr(ParquetLake, "write_partitions", original)
            set_connections(dsn, allowed=False)
        return summary

    monkeypatch.setattr(ParquetLake, "write_partitions", write_then_fail)


def rows_in_postgresql(dsn: str, dataset: str) -> int:
    with psycopg.connect(dsn) as conn:
        count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(dataset))
        return conn.execute(count).fetchone()[0]


def lake_bars(data_dir: Path, granularity: str, sessions: list[dt.date]) -> pl.DataFrame:
    end = sessions[-1] + dt.timedelta(days=1)
    return MarketData(root=data_dir).bars(SYMBOLS, sessions[0], end, granularity)


def postgresql_bars(data_dir: Path, dsn: str, granularity: str, sessions: list[dt.date]):
    end = sessions[-1] + dt.timedelta(days=1)
    with MarketData(root=data_dir, dsn=dsn) as market:
        return market.bars(SYMBOLS, sessions[0], end, granularity, store="timescale")


def test_postgresql_lost_mid_run_names_the_cause_and_the_next_run_copies_from_the_lake(
    tmp_path, monkeypatch, dsn
):
    pipeline = make_pipeline(tmp_path, dsn=dsn)
    pipeline.run(["bars_1m", "bars_5m"], SESSIONS[:1], SYMBOLS)
    assert rows_in_postgresql(dsn, "bars_5m") == 2 * 78

    fail_postgresql_after_lake_write(monkeypatch, dsn, "bars_5m")
    failed = pipeline.run(["bars_1m", "bars_5m"], SESSIONS, SYMBOLS, expect_failure=True)

    line = run_failure(pipeline.instance, failed.failed_runs[0]).line()
    assert "\n" not in line
    assert " in bars_5m failed: " in line
    assert (
        "bars_5m: 6 partition(s) (2024-03-07|AAPL .. 2024-03-11|MSFT) are in the lake but not "
        f"in PostgreSQL ({server_of(dsn)}), which keeps their previous rows"
    ) in line
    assert "terminating connection due to administrator command" in line
    assert "the store is closed" not in line and PASSWORD not in line
    assert "the next write of bars_5m to PostgreSQL copies them from the lake" in line
    set_connections(dsn, allowed=True)
    assert len(lake_bars(pipeline.data_dir, "5m", SESSIONS)) == 6 * 78
    assert rows_in_postgresql(dsn, "bars_5m") == 2 * 78  # the first run's, rolled back to
    assert rows_in_postgresql(dsn, "bars_1m") == 6 * 390  # written before the server went
    failed_keys, _ = partition_status(pipeline, "bars_5m")
    assert failed_keys == {f"{d}|{s}" for d in SESSIONS for s in SYMBOLS}
    behind = PendingPartitions(ParquetLake(str(pipeline.data_dir)).store, "bars_5m").read()
    assert behind.height == 6

    repaired = pipeline.run(["bars_1m", "bars_5m"], [NEXT], SYMBOLS)  # another session

    every = [*SESSIONS, NEXT]
    assert rows_in_postgresql(dsn, "bars_5m") == 8 * 78
    assert postgresql_bars(pipeline.data_dir, dsn, "5m", every).equals(
        lake_bars(pipeline.data_dir, "5m", every)
    )
    metadata = step_metadata(pipeline.instance, repaired.run_ids[0])["bars_5m"]
    assert metadata["postgresql_copied_partitions"] == 6
    assert metadata["postgresql_copied_rows"] == 6 * 78
    failed_keys, materialized = partition_status(pipeline, "bars_5m")
    assert failed_keys == set()
    assert materialized == {f"{d}|{s}" for d in every for s in SYMBOLS}
    assert PendingPartitions(ParquetLake(str(pipeline.data_dir)).store, "bars_5m").read().is_empty()


def test_postgresql_refusing_the_first_connection_is_repaired_by_a_plain_re_run(
    tmp_path, monkeypatch, dsn
):
    pipeline = make_pipeline(tmp_path, dsn=dsn)
    fail_postgresql_after_lake_write(monkeypatch, dsn, "bars_1m")

    failed = pipeline.run(["bars_1m"], SESSIONS, SYMBOLS, expect_failure=True)

    line = run_failure(pipeline.instance, failed.failed_runs[0]).line()
    assert "bars_1m: 6 partition(s) (2024-03-07|AAPL .. 2024-03-11|MSFT) are in the lake" in line
    assert f"cannot connect to PostgreSQL ({server_of(dsn)}): " in line
    assert "is not currently accepting connections" in line
    assert PASSWORD not in line
    set_connections(dsn, allowed=True)
    assert len(lake_bars(pipeline.data_dir, "1m", SESSIONS)) == 6 * 390
    assert rows_in_postgresql(dsn, "bars_1m") == 0

    pipeline.run(["bars_1m"], SESSIONS, SYMBOLS)

    assert rows_in_postgresql(dsn, "bars_1m") == 6 * 390
    assert postgresql_bars(pipeline.data_dir, dsn, "1m", SESSIONS).equals(
        lake_bars(pipeline.data_dir, "1m", SESSIONS)
    )
    assert PendingPartitions(ParquetLake(str(pipeline.data_dir)).store, "bars_1m").read().is_empty()


def test_every_step_after_the_server_went_away_names_the_cause(tmp_path, monkeypatch, dsn):
    pipeline = make_pipeline(tmp_path, dsn=dsn)
    fail_postgresql_after_lake_write(monkeypatch, dsn, "bars_5m", "bars_15m", "bars_1h")

    failed = pipeline.run(
        ["bars_1m", "bars_5m", "bars_15m", "bars_1h"], SESSIONS[:1], SYMBOLS, expect_failure=True
    )

    records = pipeline.instance.get_records_for_run(
        failed.failed_runs[0], of_type=DagsterEventType.STEP_FAILURE
    ).records
    causes = [
        one_line(root_cause(r.event_log_entry.dagster_event.step_failure_data.error))
        for r in records
    ]
    assert len(causes) == 3  # every derived step: the first lost the connection, then refused
    assert not [c for c in causes if "the store is closed" in c or PASSWORD in c]
    assert sum("terminating connection due to administrator command" in c for c in causes) == 1
    assert sum(
        "was lost and reconnecting failed" in c and "is not currently accepting connections" in c
        for c in causes
    ) == 2


def test_quarantined_rows_are_copied_to_postgresql_with_their_partitions(
    tmp_path, monkeypatch, dsn
):
    pipeline = make_pipeline(tmp_path, dsn=dsn)
    original = SyntheticProvider.fetch_bars

    def null_first_close(self, request):  # noqa: ANN001, ANN202
        result = original(self, request)
        first = pl.int_range(pl.len()) == 0
        result.frame = result.frame.with_columns(
            pl.when(first).then(None).otherwise(pl.col("close")).alias("close")
        )
        return result

    monkeypatch.setattr(SyntheticProvider, "fetch_bars", null_first_close)
    fail_postgresql_after_lake_write(monkeypatch, dsn, "bars_1d")
    pipeline.run(["bars_1d"], SESSIONS, SYMBOLS, expect_failure=True)
    set_connections(dsn, allowed=True)
    monkeypatch.setattr(SyntheticProvider, "fetch_bars", original)
    assert rows_in_postgresql(dsn, "quarantine_bars_1d") == 0

    pipeline.run(["bars_1d"], [NEXT], SYMBOLS)

    every = [*SESSIONS, NEXT]
    assert rows_in_postgresql(dsn, "bars_1d") == len(lake_bars(pipeline.data_dir, "1d", every))
    lake = ParquetLake(str(pipeline.data_dir))
    in_lake = lake.read_quarantine("bars_1d", SYMBOLS, SESSIONS[0], NEXT)
    assert in_lake["rule"].to_list() == ["null_price"]  # the first bar of the one request
    assert rows_in_postgresql(dsn, "quarantine_bars_1d") == in_lake.height


def test_an_intent_is_abandoned_when_its_process_is_gone_or_elsewhere_its_run_finished():
    with DagsterInstance.ephemeral() as instance:
        runs = {}
        for status in (DagsterRunStatus.STARTED, DagsterRunStatus.FAILURE):
            run = DagsterRun("job", make_new_run_id(), status=status)
            instance.add_run(run)
            runs[status] = run.run_id
        abandoned = abandoned_by(instance)
        here = {**process_tags(), RUN_ID: runs[DagsterRunStatus.FAILURE]}
        gone = {**here, "market_assets/pid": "999999999"}
        elsewhere = {"market_assets/host": "another-host", "market_assets/pid": "1"}

        assert not abandoned(here)  # this process is alive, whatever its run says
        assert abandoned(gone)
        assert not abandoned({**elsewhere, RUN_ID: runs[DagsterRunStatus.STARTED]})
        assert abandoned({**elsewhere, RUN_ID: runs[DagsterRunStatus.FAILURE]})
        assert abandoned({**elsewhere, RUN_ID: make_new_run_id()})  # not in this instance
        assert not abandoned({**elsewhere, RUN_ID: ""})  # nothing to judge it by
        assert not abandoned_by(None)({**elsewhere, RUN_ID: runs[DagsterRunStatus.FAILURE]})
