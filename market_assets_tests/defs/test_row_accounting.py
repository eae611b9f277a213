"""Every row accounted for, through Dagster (issue 13): rows on days the dataset's calendar
does not know and extended-hours rows are quarantined with a rule name (or kept by an
explicit setting), a dataset may follow another exchange's calendar, and vendor adjustment
modes never turn into false "split not reflected" errors. Files are generated here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.stores.check_results import CheckResultsStore
from market_assets.core.stores.lake import ParquetLake
from market_assets.definitions import build_definitions
from market_assets.defs.assets.bars import PROVIDER_TAG
from market_assets.defs.runner import RunSummary, materialize_rectangle, step_metadata

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HEADER = "date,open,high,low,close,volume\n"


@dataclasses.dataclass
class FilesPipeline:
    """Repository configs plus a `vendor` provider of kind files, writing under tmp_path."""

    config: AppConfig
    instance: DagsterInstance
    data_dir: Path

    def run(self, assets: list[str], sessions: list[dt.date], symbols: list[str]) -> RunSummary:
        return materialize_rectangle(
            build_definitions(self.config),
            self.instance,
            [AssetKey(a) for a in assets],
            sessions,
            symbols,
            250,
            tags={PROVIDER_TAG: "vendor"},
        )

    def lake(self) -> ParquetLake:
        return ParquetLake(str(self.data_dir))

    def metadata(self, summary: RunSummary, dataset: str) -> dict[str, Any]:
        """The run-level metadata of `dataset`'s step in the summary's last run."""
        return step_metadata(self.instance, summary.run_ids[-1])[dataset]


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as entered:
        yield entered


def files_pipeline(
    tmp_path: Path,
    instance: DagsterInstance,
    settings: dict[str, Any],
    edit_datasets: Callable[[dict], None] | None = None,
) -> FilesPipeline:
    config_dir = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, config_dir)
    providers = yaml.safe_load((config_dir / "providers.yaml").read_text())
    providers["providers"]["vendor"] = {
        "kind": "files",
        "settings": {"directory": str(tmp_path / "vendor"), **settings},
    }
    (config_dir / "providers.yaml").write_text(yaml.safe_dump(providers))
    if edit_datasets is not None:
        datasets = yaml.safe_load((config_dir / "datasets.yaml").read_text())
        edit_datasets(datasets["datasets"])
        (config_dir / "datasets.yaml").write_text(yaml.safe_dump(datasets))
    (tmp_path / "vendor").mkdir()
    config = dataclasses.replace(
        AppConfig.load(config_dir), data_dir=str(tmp_path / "data"), timescale_dsn=None
    )
    return FilesPipeline(config, instance, tmp_path / "data")


def daily_csv(days: list[str], first_close: float = 100.0) -> str:
    rows = [
        f"{day},{first_close + i},{first_close + i + 1},{first_close + i - 1},"
        f"{first_close + i},{1000 + i}\n"
        for i, day in enumerate(days)
    ]
    return HEADER + "".join(rows)


# ------------------------------------------------------------------ 2. nothing silently dropped


def test_rows_on_days_the_calendar_has_no_session_are_quarantined_with_a_rule(tmp_path, instance):
    pipeline = files_pipeline(tmp_path, instance, {"columns": {"ts": "date"}})
    days = ["2024-03-26", "2024-03-27", "2024-03-28", "2024-03-29", "2024-03-30", "2024-04-01"]
    (tmp_path / "vendor" / "AAPL.csv").write_text(daily_csv(days))  # 03-29 Good Friday, 03-30 Sat
    sessions = get_calendar().sessions(dt.date(2024, 3, 26), dt.date(2024, 4, 1))

    summary = pipeline.run(["bars_1d"], sessions, ["AAPL"])

    assert not summary.failed_runs
    stats = summary.datasets["bars_1d"]
    assert stats.rows == 4
    assert stats.quarantined == 2
    assert stats.quarantine_rules == {"not_a_session": 2}
    assert pipeline.metadata(summary, "bars_1d")["quarantine_rules"] == {"not_a_session": 2}
    quarantined = pipeline.lake().read_quarantine(
        "bars_1d", ["AAPL"], dt.date(2024, 3, 1), dt.date(2024, 5, 1)
    )
    assert sorted(quarantined["ts"].dt.date().to_list()) == [
        dt.date(2024, 3, 29),
        dt.date(2024, 3, 30),
    ]
    assert quarantined["rule"].unique().to_list() == ["not_a_session"]


def minute_csv(rows: list[tuple[str, float]]) -> str:
    return "ts,open,high,low,close,volume\n" + "".join(
        f"{ts},{p},{p + 0.1},{p - 0.1},{p},100\n" for ts, p in rows
    )


EXTENDED = [
    ("2024-03-08 08:00:00-05:00", 169.0),  # pre-market
    ("2024-03-08 09:30:00-05:00", 170.0),
    ("2024-03-08 09:31:00-05:00", 170.1),
    ("2024-03-08 16:00:00-05:00", 171.0),  # after the close
]


def test_extended_hours_rows_of_a_regular_hours_dataset_are_quarantined(tmp_path, instance):
    pipeline = files_pipeline(tmp_path, instance, {"granularity": "1m"})
    (tmp_path / "vendor" / "AAPL.csv").write_text(minute_csv(EXTENDED))

    summary = pipeline.run(["bars_1m"], [dt.date(2024, 3, 8)], ["AAPL"])

    stats = summary.datasets["bars_1m"]
    assert stats.rows == 2
    assert stats.quarantine_rules == {"extended_hours": 2}


def test_extended_hours_rows_are_kept_when_the_dataset_says_so(tmp_path, instance):
    def keep_extended(datasets: dict) -> None:
        datasets["bars_1m"]["extended_hours"] = True

    pipeline = files_pipeline(tmp_path, instance, {"granularity": "1m"}, keep_extended)
    (tmp_path / "vendor" / "AAPL.csv").write_text(minute_csv(EXTENDED))

    summary = pipeline.run(["bars_1m"], [dt.date(2024, 3, 8)], ["AAPL"])

    assert summary.datasets["bars_1m"].rows == 4
    assert summary.datasets["bars_1m"].quarantined == 0


def test_rows_a_provider_leaves_out_are_counted_in_metadata_and_the_summary(tmp_path, instance):
    pipeline = files_pipeline(tmp_path, instance, {"granularity": "1m", "regular_hours_only": True})
    (tmp_path / "vendor" / "AAPL.csv").write_text(minute_csv(EXTENDED))

    summary = pipeline.run(["bars_1m"], [dt.date(2024, 3, 8)], ["AAPL"])

    assert summary.datasets["bars_1m"].rows == 2
    assert summary.datasets["bars_1m"].dropped == {"extended_hours": 2}
    assert pipeline.metadata(summary, "bars_1m")["dropped_rows"] == {"extended_hours": 2}


# ------------------------------------------------------------------ 3. per-exchange calendars


def test_a_dataset_on_the_hong_kong_calendar_stores_hong_kong_sessions(tmp_path, instance):
    def hong_kong(datasets: dict) -> None:
        datasets["bars_1d"]["calendar"] = "XHKG"

    pipeline = files_pipeline(tmp_path, instance, {"columns": {"ts": "date"}}, hong_kong)
    # 2024-07-01 is a Hong Kong holiday (a New York session); 07-04 the reverse.
    days = ["2024-06-28", "2024-07-02", "2024-07-03", "2024-07-04", "2024-07-05"]
    (tmp_path / "vendor" / "0700.csv").write_text(daily_csv(days, 300.0))
    sessions = get_calendar("XHKG").sessions(dt.date(2024, 6, 28), dt.date(2024, 7, 5))

    summary = pipeline.run(["bars_1d"], sessions, ["0700"])

    assert not summary.failed_runs
    assert sessions == [dt.date.fromisoformat(day) for day in days]
    assert summary.datasets["bars_1d"].rows == 5
    assert summary.datasets["bars_1d"].quarantined == 0
    partitions = pipeline.instance.get_materialized_partitions(AssetKey("bars_1d"))
    assert "2024-07-04|0700" in partitions and "2024-07-01|0700" not in partitions
    results = CheckResultsStore(pipeline.lake()).read(["bars_1d"], [2024])
    missing = results.filter(pl.col("rule") == "missing_sessions")
    assert missing.height == 5 and missing["passed"].all()


def test_an_unknown_calendar_name_is_a_config_error_naming_it(tmp_path, instance):
    def bad(datasets: dict) -> None:
        datasets["bars_1d"]["calendar"] = "XHONGKONG"

    with pytest.raises(Exception, match="datasets.bars_1d.calendar: .*unknown exchange calendar"):
        files_pipeline(tmp_path, instance, {"columns": {"ts": "date"}}, bad)


# ------------------------------------------------------------------ 4. vendor adjustment modes


SPLIT_ADJUSTED = (
    "date,open,high,low,close,volume,dividend,split,adj\n"
    "2024-03-05,49.8,50.5,49.5,50,2000,0,1,49.75\n"
    "2024-03-06,50,50.8,49.6,50.4,2000,0,1,50.15\n"
    "2024-03-07,50.4,51,50,50.6,2000,0,1,50.35\n"
    "2024-03-08,50.6,51.2,50.2,51,2000,0.25,1,51\n"  # $0.50 per pre-split share
    "2024-03-11,50.8,51.4,50.5,51.2,4000,0,2,51.2\n"  # 2-for-1
    "2024-03-12,51.2,51.8,50.9,51.5,4000,0,1,51.5\n"
)


def split_adjusted_vendor(tmp_path: Path, instance: DagsterInstance) -> FilesPipeline:
    settings = {
        "columns": {"ts": "date", "split": "split", "dividend": "dividend", "adj_close": "adj"},
        "adjustment": "split_adjusted",
        "currency": "USD",
    }
    pipeline = files_pipeline(tmp_path, instance, settings)
    (tmp_path / "vendor" / "AAPL.csv").write_text(SPLIT_ADJUSTED)
    return pipeline


def test_split_adjusted_closes_with_their_split_list_raise_no_split_not_reflected(
    tmp_path, instance
):
    pipeline = split_adjusted_vendor(tmp_path, instance)
    sessions = get_calendar().sessions(dt.date(2024, 3, 5), dt.date(2024, 3, 12))

    first = pipeline.run(["bars_1d", "corporate_actions"], sessions, ["AAPL"])
    second = pipeline.run(["bars_1d"], sessions, ["AAPL"])  # judged against stored actions

    assert not first.failed_runs and not second.failed_runs
    results = CheckResultsStore(pipeline.lake()).read(["bars_1d"], [2024])
    reflected = results.filter(pl.col("rule") == "split_not_reflected")
    assert reflected.height == 1
    assert reflected["passed"].all()
    daily = pipeline.lake().read("bars_1d", ["AAPL"], dt.date(2024, 3, 5), dt.date(2024, 3, 13))
    assert daily["close"].to_list()[:2] == [100.0, 100.8]


def test_the_adjustment_check_compares_our_adjusted_close_with_the_vendors(tmp_path, instance):
    pipeline = split_adjusted_vendor(tmp_path, instance)
    sessions = get_calendar().sessions(dt.date(2024, 3, 5), dt.date(2024, 3, 12))

    summary = pipeline.run(["bars_1d", "corporate_actions", "bars_1d_adjusted"], sessions, ["AAPL"])

    records = instance.get_records_for_run(
        summary.run_ids[0], of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
    [adjustment] = [e for e in evaluations if e.check_name == "adjustment"]
    rules = {r["rule"]: r for r in adjustment.metadata["rules"].value}
    vendor = rules["vendor_adjusted_close_difference"]
    assert vendor["details"]["sessions_compared"] == 6
    assert vendor["passed"], vendor
