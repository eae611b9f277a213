"""scripts/restore_check.py: a real pg_dump / pg_restore round trip on both servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from market_assets.core.calendar import get_calendar
from market_assets.core.config import TimescalePolicy
from market_assets.core.stores.timescale import TimescaleStore
from market_assets_tests.fixtures.postgres import (
    PgServer,
    create_scratch_database,
    drop_scratch_database,
)
from market_assets_tests.helpers import make_bars

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "restore_check.py"
SESSIONS = get_calendar().sessions("2024-03-04", "2024-03-06")


def test_restore_check_restores_every_row_of_the_store_into_a_scratch_database(
    pg_server: PgServer,
) -> None:
    dsn = create_scratch_database(pg_server.admin_dsn, prefix="market_assets_backup")
    try:
        with TimescaleStore(dsn) as store:
            store.ensure_schema(
                {"bars_1m": TimescalePolicy(compress_after="30 days", continuous_aggregates=["1d"])}
                if pg_server.timescale
                else None
            )
            minutes = make_bars(["AAPL", "MSFT"], SESSIONS, "1m")
            store.write_partitions(
                "bars_1m", minutes, [(s, d) for s in ("AAPL", "MSFT") for d in SESSIONS]
            )
            store.write_partitions(
                "bars_1d", make_bars(["AAPL"], SESSIONS), [("AAPL", d) for d in SESSIONS]
            )
        if pg_server.timescale:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('bars_1m') c")

        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--dsn", dsn, "--keep"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        kept = done.stdout.rsplit("kept=", 1)[-1].strip()
        restored = make_conninfo(dsn, dbname=kept)
        with psycopg.connect(restored) as conn:
            counts = dict(
                conn.execute(
                    "SELECT 'bars_1m', count(*) FROM bars_1m UNION ALL "
                    "SELECT 'bars_1d', count(*) FROM bars_1d"
                ).fetchall()
            )
            compressed = (
                conn.execute(
                    "SELECT count(*) FROM timescaledb_information.chunks "
                    "WHERE hypertable_name = 'bars_1m' AND is_compressed"
                ).fetchone()[0]
                if pg_server.timescale
                else 0
            )
        drop_scratch_database(restored, pg_server.admin_dsn)
    finally:
        drop_scratch_database(dsn, pg_server.admin_dsn)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "RESULT restore_check=ok" in done.stdout
    assert f"timescaledb={pg_server.timescale}" in done.stdout
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:-1]}
    assert lines["bars_1m"] == [str(minutes.height)] * 2
    assert counts == {"bars_1m": minutes.height, "bars_1d": len(SESSIONS)}
    if pg_server.timescale:
        assert lines["bars_1d_from_1m"] == [str(2 * len(SESSIONS))] * 2
        assert compressed > 0


def test_restore_check_given_a_database_that_changes_after_the_count_reports_mismatch(
    pg_server: PgServer, monkeypatch
) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import restore_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    dsn = create_scratch_database(pg_server.admin_dsn, prefix="market_assets_backup")
    counted = restore_check.row_counts
    calls: list[str] = []

    def count_then_change(target: str) -> dict[str, int]:
        counts = counted(target)
        if not calls:  # after counting the source, the source gains a row the dump will hold
            with psycopg.connect(target, autocommit=True) as conn:
                conn.execute("INSERT INTO probe VALUES (2)")
        calls.append(conninfo_to_dict(target)["dbname"])
        return counts

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE probe (x int)")
            conn.execute("INSERT INTO probe VALUES (1)")
        monkeypatch.setattr(restore_check, "row_counts", count_then_change)

        same = restore_check.restore_check(dsn)
    finally:
        drop_scratch_database(dsn, pg_server.admin_dsn)

    assert same is False
    assert len(calls) == 2 and calls[1] != calls[0]
    with psycopg.connect(pg_server.admin_dsn) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (calls[1],)
        ).fetchone()
    assert left == (0,)
