"""The CLI as real processes: killed mid-run, stopped by SIGTERM, started twice at once.

Every test starts `python -m market_assets.cli` subprocesses (synthetic provider, a scratch
data folder and DAGSTER_HOME), waits for them with time limits, then counts the rows they
stored and the runs and pool slots they left in the instance.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.utils import make_new_run_id
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.calendar import get_calendar
from market_assets.defs.runner import step_metadata
from market_assets.query import MarketData
from market_assets_tests.fixtures.postgres import create_scratch_database, drop_scratch_database

REPO = Path(__file__).resolve().parents[1]
POOL = "vendor_synthetic"  # the pool of every bar asset the synthetic provider fetches
SESSIONS_PER_RUN = 20  # bars_1m backfill_sessions_per_run in configs/datasets.yaml
SYMBOLS = ("AAPL", "MSFT")
PROCESS_TIMEOUT_S = 240  # one CLI process, startup included, on a busy 2-core machine
SIGTERM_EXIT = 128 + signal.SIGTERM


def sessions(count: int) -> list[dt.date]:
    return get_calendar().sessions(dt.date(2024, 3, 1), dt.date(2024, 6, 28))[:count]


def minute_rows(days: list[dt.date]) -> int:
    calendar = get_calendar()
    return sum(calendar.minutes_in_session(day) for day in days) * len(SYMBOLS)


class Workdir:
    """A scratch DAGSTER_HOME and data folder, and the CLI processes started on them (each
    with its output in a log file)."""

    def __init__(self, root: Path, instance_yaml: dict[str, Any] | None, env: dict[str, str]):
        self.root = root
        self.home = root / "home"
        self.data = root / "data"
        self.home.mkdir()
        if instance_yaml is not None:
            (self.home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("MARKET_ASSETS_", "DAGSTER"))
        }
        self.env = {
            **inherited,
            **env,
            "PYTHONPATH": str(REPO),
            "MARKET_ASSETS_CONFIG_DIR": str(REPO / "configs"),
            "DAGSTER_HOME": str(self.home),
            "COLUMNS": "200",
        }
        self.logs: dict[int, Path] = {}

    def start(self, *command: str) -> subprocess.Popen:
        log = self.root / f"process-{len(self.logs)}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, *command],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.logs[process.pid] = log
        return process

    def output(self, process: subprocess.Popen) -> str:
        return self.logs[process.pid].read_text()

    def stored_rows(self) -> pl.DataFrame:
        """The (symbol, ts) of every bars_1m row stored in the lake (query API)."""
        if not self.data.exists():  # nothing was ever stored
            return pl.DataFrame({"symbol": [], "ts": []})
        market = MarketData(root=str(self.data))
        first, end = dt.date(2024, 1, 1), dt.date(2025, 1, 1)
        return market.bars(list(SYMBOLS), first, end, granularity="1m", columns=["symbol", "ts"])

    def wait_for(self, condition: Callable[[], Any], what: str, process: subprocess.Popen) -> Any:
        """Poll `condition` until it returns something truthy; fail when `process` ends
        first or PROCESS_TIMEOUT_S passes."""
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if process.poll() is not None:
                pytest.fail(
                    f"process ended ({process.returncode}) before {what}:\n{self.output(process)}"
                )
            time.sleep(0.05)
        process.kill()
        pytest.fail(f"timed out waiting for {what}:\n{self.output(process)}")

    def finish(self, process: subprocess.Popen, timeout: float = PROCESS_TIMEOUT_S) -> int:
        """The process's exit code; killed, and the test failed, when it runs past `timeout`."""
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"still running after {timeout:.0f} s:\n{self.output(process)}")


def ingest_args(days: list[dt.date], data: Path) -> list[str]:
    end = days[-1] + dt.timedelta(days=1)
    return [
        "ingest", "--dataset", "bars_1m", "--symbols", ",".join(SYMBOLS),
        "--start", days[0].isoformat(), "--end", end.isoformat(),
        "--no-with-derived", "--data-dir", str(data),
    ]  # fmt: skip


def ingest(work: Workdir, days: list[dt.date]) -> subprocess.Popen:
    return work.start("-m", "market_assets.cli", *ingest_args(days, work.data))


def started_runs(instance: DagsterInstance) -> list[DagsterRun]:
    return [run for run in instance.get_runs() if run.status == DagsterRunStatus.STARTED]


def claimed_by(instance: DagsterInstance) -> set[str]:
    return instance.event_log_storage.get_concurrency_info(POOL).active_run_ids


def waiting_for_slot(instance: DagsterInstance) -> set[str]:
    """Runs with a step waiting for a slot of POOL (not yet given one)."""
    return instance.event_log_storage.get_concurrency_info(POOL).pending_run_ids


def sqlite_instance_yaml(pool_limit: int) -> dict[str, Any]:
    return {
        "telemetry": {"enabled": False},
        "concurrency": {"pools": {"default_limit": pool_limit}},
    }


@pytest.fixture
def full_stack(tmp_path, monkeypatch):
    """The repository's dagster.yaml (PostgreSQL storage, pools) on a scratch database, with
    one slot per pool so that one killed run is enough to block the next."""
    dsn = create_scratch_database(prefix="market_assets_dagster")
    params = conninfo_to_dict(dsn)
    env = {
        "DAGSTER_PG_HOST": params.get("host", "127.0.0.1"),
        "DAGSTER_PG_USER": params.get("user", "postgres"),
        "DAGSTER_PG_PASSWORD": params.get("password", ""),
        "DAGSTER_PG_DB": params["dbname"],
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # for the instance this test opens
    instance_yaml = yaml.safe_load((REPO / "dagster.yaml").read_text())
    instance_yaml["concurrency"]["pools"]["default_limit"] = 1
    try:
        yield Workdir(tmp_path, instance_yaml, env)
    finally:
        drop_scratch_database(dsn)


def test_ingest_after_a_killed_ingest_fails_its_run_frees_its_slot_and_stores_every_row(
    full_stack,
):
    work = full_stack
    days = sessions(SESSIONS_PER_RUN)  # one run
    with DagsterInstance.from_config(str(work.home)) as instance:
        killed = ingest(work, days)
        holders = work.wait_for(lambda: claimed_by(instance), "a run to claim a slot", killed)
        killed.kill()  # SIGKILL: nothing in the process runs
        killed.wait()
        (orphan,) = holders
        assert instance.get_run_by_id(orphan).status == DagsterRunStatus.STARTED

        again = ingest(work, days)
        code = work.finish(again)

        output = work.output(again)
        assert code == 0, output
        assert f"run {orphan} was left STARTED" in output
        assert instance.get_run_by_id(orphan).status == DagsterRunStatus.FAILURE
        others = [run.status for run in instance.get_runs() if run.run_id != orphan]
        assert others == [DagsterRunStatus.SUCCESS]
        info = instance.event_log_storage.get_concurrency_info(POOL)
        assert info.claimed_slots == [] and info.pending_steps == []
        materialized = instance.get_materialized_partitions(AssetKey("bars_1m"))
        assert len(materialized) == len(days) * len(SYMBOLS)
    stored = work.stored_rows()
    assert stored.height == minute_rows(days)
    assert stored.unique().height == stored.height
    assert f"{minute_rows(days):,}" in output  # the summary counts them


def test_sigterm_finishes_the_current_run_starts_no_other_and_exits_143(tmp_path):
    work = Workdir(tmp_path, sqlite_instance_yaml(pool_limit=1), {})
    days = sessions(2 * SESSIONS_PER_RUN)  # two runs
    with DagsterInstance.from_config(str(work.home)) as instance:
        process = ingest(work, days)
        work.wait_for(lambda: started_runs(instance), "the first run to start", process)
        process.send_signal(signal.SIGTERM)
        code = work.finish(process)

        output = work.output(process)
        assert code == SIGTERM_EXIT, output
        assert output.strip().splitlines()[-1].startswith("error: stopped by SIGTERM: 1 run(s)")
        assert [run.status for run in instance.get_runs()] == [DagsterRunStatus.SUCCESS]
        assert claimed_by(instance) == set() and waiting_for_slot(instance) == set()
        materialized = instance.get_materialized_partitions(AssetKey("bars_1m"))
        assert len(materialized) == SESSIONS_PER_RUN * len(SYMBOLS)
    first_run = days[:SESSIONS_PER_RUN]
    assert work.stored_rows().height == minute_rows(first_run)
    assert f"{minute_rows(first_run):,}" in output  # the summary counts every stored row


def test_second_sigterm_stops_a_run_waiting_for_a_pool_slot_and_frees_its_claim(tmp_path):
    work = Workdir(tmp_path, sqlite_instance_yaml(pool_limit=1), {})
    with DagsterInstance.from_config(str(work.home)) as instance:
        # Another live run holds the pool's only slot.
        holder = DagsterRun("holder", make_new_run_id(), status=DagsterRunStatus.STARTED)
        instance.add_run(holder)
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        assert storage.claim_concurrency_slot(POOL, holder.run_id, "holder_step").is_claimed

        process = ingest(work, sessions(SESSIONS_PER_RUN))
        waiting = work.wait_for(lambda: waiting_for_slot(instance), "a run to wait", process)
        process.send_signal(signal.SIGTERM)
        time.sleep(2)
        assert process.poll() is None  # the first signal lets the current run finish
        process.send_signal(signal.SIGTERM)
        code = work.finish(process, timeout=60)

        output = work.output(process)
        (waiter,) = waiting
        assert code == SIGTERM_EXIT, output
        assert f"run(s) {waiter} marked failed" in output
        assert instance.get_run_by_id(waiter).status == DagsterRunStatus.FAILURE
        assert claimed_by(instance) == {holder.run_id}
        assert waiting_for_slot(instance) == set()
        assert len(instance.get_runs()) == 2
    assert work.stored_rows().height == 0


BARRIER = """\
import pathlib, sys, time
import dagster._core.storage.sqlite_storage
import market_assets.cli, market_assets.cli_output, market_assets.defs.checks.status
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ready.write_text("")
while not go.exists():
    time.sleep(0.002)
market_assets.cli.app(sys.argv[3:])
"""


def test_commands_started_at_once_on_a_fresh_instance_all_succeed(tmp_path, monkeypatch):
    """Two `status` commands, their imports done, released at the same moment on a fresh
    SQLite DAGSTER_HOME (no dagster.yaml yet); then an ingest on that instance."""
    work = Workdir(tmp_path, None, {})
    barrier = tmp_path / "barrier.py"
    barrier.write_text(BARRIER)
    go = tmp_path / "go"
    processes = [
        work.start(str(barrier), str(tmp_path / f"ready-{n}"), str(go), "status") for n in range(2)
    ]
    for n, process in enumerate(processes):
        work.wait_for((tmp_path / f"ready-{n}").exists, "its imports", process)
    go.write_text("")
    codes = [work.finish(process) for process in processes]

    assert codes == [0, 0], "\n".join(work.output(process) for process in processes)
    for name, value in work.env.items():
        monkeypatch.setenv(name, value)
    days = sessions(2)
    ingested = CliRunner().invoke(app, ingest_args(days, work.data))
    assert ingested.exit_code == 0, ingested.output
    assert work.stored_rows().height == minute_rows(days)
    with DagsterInstance.from_config(str(work.home)) as instance:
        assert [run.status for run in instance.get_runs()] == [DagsterRunStatus.SUCCESS]
        assert len(instance.get_materialized_partitions(AssetKey("bars_1m"))) == 2 * len(SYMBOLS)


KILLED_BEFORE_POSTGRESQL = """\
import os, signal, sys
from market_assets.core.stores.timescale import TimescaleStore

def killed(self, dataset, rows, partitions):
    os.kill(os.getpid(), signal.SIGKILL)  # after the lake write, before PostgreSQL's

TimescaleStore.write_partitions = killed
import market_assets.cli
market_assets.cli.app(sys.argv[1:])
"""


def test_ingest_killed_between_the_lake_and_postgresql_is_repaired_by_the_next_ingest(tmp_path):
    dsn = create_scratch_database(prefix="market_assets_killed")
    try:
        work = Workdir(tmp_path, sqlite_instance_yaml(4), {"MARKET_ASSETS_TIMESCALE_DSN": dsn})
        killer = tmp_path / "killed_before_postgresql.py"
        killer.write_text(KILLED_BEFORE_POSTGRESQL)
        days = sessions(4)
        killed = work.start(str(killer), *ingest_args(days[:3], work.data))
        assert work.finish(killed) == -signal.SIGKILL, work.output(killed)
        assert work.stored_rows().height == minute_rows(days[:3])  # the lake was written
        assert postgresql_rows(work, dsn, days).height == 0
        intents = work.data / "_pending" / "writing" / "postgresql" / "bars_1m"
        assert len(list(intents.iterdir())) == 1

        again = ingest(work, days[3:])
        code = work.finish(again)

        assert code == 0, work.output(again)
        lake, postgresql = work.stored_rows(), postgresql_rows(work, dsn, days)
        assert lake.height == minute_rows(days)
        assert postgresql.sort("symbol", "ts").equals(lake.sort("symbol", "ts"))
        assert not intents.exists() or not any(intents.iterdir())
        assert not (work.data / "_pending" / "postgresql" / "bars_1m.parquet").exists()
        with DagsterInstance.from_config(str(work.home)) as instance:
            statuses = [run.status for run in instance.get_runs()]
            assert statuses == [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
            # The killed write may have stopped part way through the lake: its partitions
            # are in both stores now, but only a re-run records them as materialized.
            materialized = instance.get_materialized_partitions(AssetKey("bars_1m"))
            assert materialized == {f"{days[3]}|{symbol}" for symbol in SYMBOLS}
            (latest,) = [r for r in instance.get_runs() if r.status == DagsterRunStatus.SUCCESS]
            metadata = step_metadata(instance, latest.run_id)["bars_1m"]
        assert metadata["postgresql_adopted_from_killed_writes"] == 3 * len(SYMBOLS)
        assert metadata["postgresql_copied_partitions"] == 3 * len(SYMBOLS)
        assert metadata["postgresql_copied_rows"] == minute_rows(days[:3])
    finally:
        drop_scratch_database(dsn)


def postgresql_rows(work: Workdir, dsn: str, days: list[dt.date]) -> pl.DataFrame:
    """The (symbol, ts) of every bars_1m row PostgreSQL holds for `days`."""
    end = days[-1] + dt.timedelta(days=1)
    with MarketData(root=str(work.data), dsn=dsn) as market:
        return market.bars(
            list(SYMBOLS), days[0], end, "1m", columns=["symbol", "ts"], store="timescale"
        )
