"""The coverage report and `market-assets status`/`report` on a small demo, and gap ranges."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.rules.report import build_coverage, render_markdown
from market_assets.core.stores.check_results import CHECK_RESULT_SCHEMA
from market_assets.definitions import build_definitions

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BAR_DATASETS = ["bars_15m", "bars_1d", "bars_1h", "bars_1m", "bars_5m"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A small demo (1 minute session, 3 daily sessions, 5 symbols) in a fresh folder."""
    workdir = tmp_path_factory.mktemp("demo")
    previous = os.getcwd()
    saved = {
        k: os.environ.get(k)
        for k in ("MARKET_ASSETS_CONFIG_DIR", "DAGSTER_HOME", "MARKET_ASSETS_DATA_DIR")
    }
    os.chdir(workdir)
    os.environ["MARKET_ASSETS_CONFIG_DIR"] = str(REPO_CONFIGS)
    os.environ.pop("MARKET_ASSETS_DATA_DIR", None)
    os.environ.pop("DAGSTER_HOME", None)
    try:
        result = invoke("demo", "--minute-sessions", "1", "--daily-sessions", "3")
        assert result.exit_code == 0, result.output
        assert "ERROR rules passed on 100.0%" in result.output
        yield workdir
    finally:
        os.chdir(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def in_demo(demo_dir, monkeypatch) -> Path:
    monkeypatch.chdir(demo_dir)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    monkeypatch.delenv("MARKET_ASSETS_DATA_DIR", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return demo_dir


def test_status_json_lists_every_check_result_of_the_demo(in_demo):
    result = invoke("status", "--json")

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]  # JSON Lines
    document = {
        kind: [{k: v for k, v in r.items() if k != "kind"} for r in records if r["kind"] == one]
        for kind, one in (("results", "result"), ("summary", "summary"))
    }
    results = pl.DataFrame(document["results"])
    assert set(results.columns) >= {
        "dataset",
        "symbol",
        "session",
        "rule",
        "severity",
        "passed",
        "offending_rows",
    }
    per_dataset = dict(
        results.group_by("dataset").agg(pl.struct("symbol", "session").n_unique()).rows()
    )
    assert per_dataset == {"bars_1m": 5, "bars_5m": 5, "bars_15m": 5, "bars_1h": 5, "bars_1d": 15}
    assert results["passed"].all()
    assert results.filter(pl.col("rule") == "unit_errors")["severity"].unique().to_list() == [
        "ERROR"
    ]
    summary = {row["dataset"]: row for row in document["summary"]}
    assert summary["bars_1d"]["expected"] == summary["bars_1d"]["present"] == 15
    assert summary["bars_1m"]["coverage_pct"] == 100.0
    assert summary["bars_1m"]["score"] == 100.0


def test_status_prints_the_coverage_summary_in_the_terminal(in_demo):
    result = invoke("status")

    assert result.exit_code == 0, result.output
    assert "coverage and quality by dataset" in result.output
    assert "no failures" in result.output
    for dataset in BAR_DATASETS:
        assert dataset in result.output


def test_report_writes_markdown_and_a_heatmap_png(in_demo, tmp_path):
    result = invoke("report", "--out", str(tmp_path / "report"))

    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report/coverage_report.md").read_text()
    png = (tmp_path / "report/coverage_heatmap.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    for section in (
        "## Summary by dataset",
        "## Failures by rule",
        "## Gaps",
        "## Quality score per feed",
        "## Coverage by dataset, symbol and month",
    ):
        assert section in markdown
    assert "| bars_1d | AAPL |" in markdown


def test_coverage_report_asset_puts_the_markdown_in_metadata_and_files_in_the_lake(in_demo):
    os.environ["DAGSTER_HOME"] = str(in_demo / ".dagster_home")
    config = AppConfig.load()
    defs = build_definitions(config)
    job = defs.resolve_implicit_global_asset_job_def()
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=[AssetKey("coverage_report")]
        )
        event = instance.get_latest_materialization_event(AssetKey("coverage_report"))

    assert result.success
    metadata = event.asset_materialization.metadata
    assert metadata["report"].value.startswith("# Data coverage and quality")
    assert metadata["partitions_checked"].value == 4 * 5 * 1 + 5 * 3  # 4 intraday datasets
    assert metadata["error_partitions"].value == 0
    heatmap = Path(metadata["heatmap_path"].value)
    assert heatmap == in_demo / "data/quality/coverage_heatmap.png"
    assert heatmap.read_bytes().startswith(PNG_MAGIC)


def _result_rows(
    dataset: str, symbol: str, failing: dict[dt.date, str], sessions: list[dt.date]
) -> pl.DataFrame:
    rows = []
    for session in sessions:
        rule = failing.get(session)
        rows.append(
            {
                "dataset": dataset,
                "symbol": symbol,
                "session": session,
                "rule": rule or "ohlc_relations",
                "severity": "ERROR",
                "passed": rule is None,
                "offending_rows": 0 if rule is None else 1,
                "score_contribution": 0.0,
                "details": "{}",
                "sample": "[]",
                "partition_key": f"{session}|{symbol}",
                "source": "synthetic" if rule is None else "none",
                "rows": 1 if rule is None else 0,
                "quarantined_rows": 0,
                "partition_score": 100.0 if rule is None else 60.0,
                "run_id": "r",
                "checked_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            }
        )
    return pl.DataFrame(rows, schema=CHECK_RESULT_SCHEMA)


def test_consecutive_missing_sessions_are_merged_into_one_gap_range():
    calendar = get_calendar()
    sessions = calendar.sessions("2024-06-14", "2024-06-28")
    # 2024-06-19 (Juneteenth) is a holiday: 06-18 and 06-20 are consecutive sessions.
    missing = {
        dt.date(2024, 6, 18): "missing_sessions",
        dt.date(2024, 6, 20): "missing_sessions",
        dt.date(2024, 6, 26): "missing_sessions",
    }
    results = _result_rows("bars_1d", "AAA", missing, sessions)
    keys = results.select("dataset", "symbol", "session")

    coverage = build_coverage(
        results, keys, keys.with_columns(pl.lit("SUCCEEDED").alias("status")), calendar, 90.0
    )

    assert coverage.gaps.select("start", "end", "missing").rows() == [
        ("2024-06-18", "2024-06-21", 2),
        ("2024-06-26", "2024-06-27", 1),
    ]
    month = coverage.by_month.row(0, named=True)
    assert (month["expected"], month["present"], month["checked"]) == (10, 7, 10)
    assert month["coverage_pct"] == 70.0
    assert "| bars_1d | AAA | missing_sessions | 2024-06-18 | 2024-06-21 | 2 |" in render_markdown(
        coverage
    )
