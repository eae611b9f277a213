"""End to end through Dagster: fundamentals from the real SEC companyfacts files, the
partitioned checks, fundamental_ratios over stored daily bars, and placement by filing date."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.stores.lake import ParquetLake
from market_assets.definitions import build_definitions
from market_assets.defs.assets.bars import FILES_DIR_TAG, PROVIDER_TAG
from market_assets.defs.runner import RunSummary, materialize_rectangle, step_metadata
from market_assets.query import MarketData
from market_assets_tests.core.fundamentals.sec_documents import Fact, company_tickers, companyfacts
from market_assets_tests.realdata import require

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CALENDAR = get_calendar()
ACCEPTANCE = CALENDAR.sessions("2024-11-25", "2025-03-24")
D = dt.date


@dataclasses.dataclass
class Pipeline:
    config: AppConfig
    instance: DagsterInstance
    data_dir: Path

    def run(
        self,
        assets: list[str],
        sessions: list[dt.date],
        symbols: list[str],
        files: Path | None,
        expect_failure: bool = False,
    ) -> RunSummary:
        tags = {PROVIDER_TAG: "sec_edgar", FILES_DIR_TAG: str(files)} if files else {}
        summary = materialize_rectangle(
            build_definitions(self.config),
            self.instance,
            [AssetKey(a) for a in assets],
            sessions,
            symbols,
            sessions_per_run=250,
            tags=tags,
        )
        assert bool(summary.failed_runs) == expect_failure, f"failed runs: {summary.failed_runs}"
        return summary

    def market(self) -> MarketData:
        return MarketData(root=self.data_dir)

    def lake(self) -> ParquetLake:
        return ParquetLake(str(self.data_dir))

    def metadata(self, dataset: str) -> dict:
        """The run-level metadata of `dataset`'s step in the latest run."""
        [run] = self.instance.get_runs(limit=1)
        return step_metadata(self.instance, run.run_id)[dataset]

    def evaluations(self, run_id: str, dataset: str) -> list:
        records = self.instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        data = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
        return [e for e in data if e.asset_key == AssetKey(dataset)]


@pytest.fixture
def pipeline(tmp_path) -> Pipeline:
    config_dir = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, config_dir)
    config = dataclasses.replace(
        AppConfig.load(config_dir), data_dir=str(tmp_path / "data"), timescale_dsn=None
    )
    return Pipeline(config, DagsterInstance.ephemeral(), tmp_path / "data")


@pytest.fixture
def sec_files() -> Path:
    return require("sec/snow_companyfacts.json").parent


def test_real_companyfacts_materialize_and_answer_the_point_in_time_query(pipeline, sec_files):
    summary = pipeline.run(["fundamentals"], ACCEPTANCE, ["SNOW"], sec_files)

    stats = summary.datasets["fundamentals"]
    assert (len(summary.run_ids), stats.partitions, stats.rows) == (1, len(ACCEPTANCE), 1051)
    metadata = pipeline.metadata("fundamentals")
    assert metadata["facts_in_source"] == 8163
    assert metadata["skipped_reasons"] == {
        "filed_outside_the_run_sessions": 7112,
        "without_filed_date": 0,
    }
    assert metadata["rows_stored"] + metadata["quarantined_rows"] == 1051
    md = pipeline.market()
    config_dir = pipeline.config.config_dir
    before = md.fundamentals(["SNOW"], ["total_assets"], "2025-03-20", config_dir=config_dir)
    on_day = md.fundamentals(["SNOW"], ["total_assets"], "2025-03-21", config_dir=config_dir)
    assert before.select("value", "period_end", "form", "filed").rows() == [
        (8_202_258_000.0, D(2024, 10, 31), "10-Q", D(2024, 11, 27))
    ]
    assert on_day.select("value", "period_end", "form", "filed").rows() == [
        (9_033_938_000.0, D(2025, 1, 31), "10-K", D(2025, 3, 21))
    ]
    history = md.fundamentals_history(["SNOW"], ["total_assets"])
    assert history.get_column("filed").unique().sort().to_list() == [
        D(2024, 11, 27),
        D(2025, 3, 21),
    ]


def test_checks_record_one_evaluation_per_partition_key(pipeline, sec_files):
    sessions = CALENDAR.sessions("2025-03-17", "2025-03-24")

    summary = pipeline.run(["fundamentals"], sessions, ["SNOW"], sec_files)

    evaluations = pipeline.evaluations(summary.run_ids[0], "fundamentals")
    assert sorted(e.partition for e in evaluations) == [f"{d}|SNOW" for d in sessions]
    by_key = {e.partition: e for e in evaluations}
    filing_day = by_key["2025-03-21|SNOW"]
    assert filing_day.passed
    assert filing_day.metadata["filing_lag_days"].value == {"0001640147-25-000052": 49}
    assert by_key["2025-03-20|SNOW"].description.startswith("nothing to judge")
    infos = pipeline.instance.event_log_storage.get_asset_check_partition_info(
        [AssetCheckKey(AssetKey("fundamentals"), "quality")]
    )
    assert {info.partition_key for info in infos} == {f"{d}|SNOW" for d in sessions}
    assert all(info.is_current for info in infos)


def test_ratios_read_stored_bars_and_use_no_value_filed_after_their_session(pipeline, sec_files):
    sessions = CALENDAR.sessions("2024-11-20", "2025-03-24")
    pipeline.run(["bars_1d"], sessions, ["SNOW"], None)

    summary = pipeline.run(["fundamentals", "fundamental_ratios"], sessions, ["SNOW"], sec_files)

    ratios = pipeline.market().fundamental_ratios(["SNOW"], "2024-11-20", "2025-03-25")
    filed = ["shares_filed", "equity_filed", "assets_filed", "debt_filed", "net_income_filed"]
    session = pl.col("ts").dt.date()
    assert ratios.filter(pl.any_horizontal(pl.col(c) > session for c in filed)).is_empty()
    # Only this run's filings are stored: sessions before the 10-Q of 2024-11-27 have none.
    assert ratios.get_column("ts").dt.date().min() == D(2024, 11, 27)
    assert ratios.get_column("close").null_count() == 0
    by_day = {row["ts"].date(): row for row in ratios.to_dicts()}
    assert by_day[D(2025, 3, 20)]["total_assets"] == 8_202_258_000
    assert by_day[D(2025, 3, 21)]["total_assets"] == 9_033_938_000
    assert by_day[D(2025, 3, 21)]["market_cap"] == pytest.approx(
        by_day[D(2025, 3, 21)]["shares_outstanding"] * by_day[D(2025, 3, 21)]["close"]
    )
    ratio_checks = pipeline.evaluations(summary.run_ids[0], "fundamental_ratios")
    assert len(ratio_checks) == len(sessions)
    assert all(e.passed for e in ratio_checks)


def test_holiday_filing_is_stored_under_the_next_session_and_bad_facts_quarantined(
    pipeline, tmp_path
):
    files = tmp_path / "sec"
    files.mkdir()
    (files / "company_tickers.json").write_text(json.dumps(company_tickers({"ACME": 42})))
    facts = [
        Fact("us-gaap:Assets", 100.0, "2024-06-30", "2024-07-04", "0000000042-24-000001"),
        Fact("us-gaap:Liabilities", None, "2024-06-30", "2024-07-04", "0000000042-24-000001"),
    ]
    (files / "CIK0000000042.json").write_text(json.dumps(companyfacts(42, facts)))
    sessions = CALENDAR.sessions("2024-07-01", "2024-07-09")

    pipeline.run(["fundamentals"], sessions, ["ACME"], files)

    stored = pipeline.lake().read_partitions("fundamentals", [("ACME", D(2024, 7, 5))])
    assert stored.select("concept", "filed", "session").rows() == [
        ("Assets", D(2024, 7, 4), D(2024, 7, 5))
    ]
    quarantined = pipeline.lake().read_quarantine(
        "fundamentals", ["ACME"], sessions[0], D(2024, 7, 10)
    )
    assert quarantined.select("concept", "rule").rows() == [("Liabilities", "missing_value")]


def test_a_symbol_without_facts_fails_alone(pipeline, sec_files):
    sessions = CALENDAR.sessions("2025-03-20", "2025-03-21")

    summary = pipeline.run(
        ["fundamentals"], sessions, ["SNOW", "NOPE"], sec_files, expect_failure=True
    )

    failed = summary.datasets["fundamentals"].failed_symbols
    assert list(failed) == ["NOPE"] and "no companyfacts file for NOPE" in failed["NOPE"]
    assert pipeline.lake().read_partitions("fundamentals", [("SNOW", D(2025, 3, 21))]).height


def test_ifrs_filer_materializes_with_its_own_tags(pipeline, sec_files):
    sessions = CALENDAR.sessions("2025-03-31", "2025-04-08")

    pipeline.run(["fundamentals"], sessions, ["LPA"], sec_files)

    md = pipeline.market()
    frame = md.fundamentals(
        ["LPA"], ["total_assets", "revenue"], "2025-04-08", config_dir=pipeline.config.config_dir
    )
    assert frame.select("field", "taxonomy", "value").rows() == [
        ("total_assets", "ifrs-full", 607_019_578.0),
        ("revenue", "ifrs-full", 43_862_372.0),
    ]
