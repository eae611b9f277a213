"""The fundamentals acceptance commands as a user runs them: ingest from the real SEC files
with no key and no network, then query point in time."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets_tests.realdata import require

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    monkeypatch.delenv("MARKET_ASSETS_DATA_DIR", raising=False)
    monkeypatch.delenv("MARKET_ASSETS_TIMESCALE_DSN", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("SEC_EDGAR_USER_AGENT", raising=False)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def test_ingest_from_sec_files_then_query_point_in_time(workdir):
    files = require("sec/snow_companyfacts.json").parent

    ingest = invoke(
        "ingest",
        "--dataset",
        "fundamentals",
        "--files",
        str(files),
        "--symbols",
        "SNOW",
        "--start",
        "2024-11-25",
        "--end",
        "2025-03-25",
    )

    assert ingest.exit_code == 0, ingest.output
    assert "1,051" in ingest.output and "sec_edgar" in ingest.output
    out = workdir / "pit.csv"
    query = invoke(
        "query",
        "fundamentals",
        "SNOW",
        "--as-of",
        "2025-03-20",
        "--fields",
        "total_assets",
        "--format",
        "csv",
        "--out",
        str(out),
    )
    assert query.exit_code == 0, query.output
    text = out.read_text()
    assert "8202258000.0" in text and "2024-11-27" in text and "10-Q" in text


def test_ingest_from_the_live_api_without_user_agent_fails_the_run(workdir):
    result = invoke(
        "ingest",
        "--dataset",
        "fundamentals",
        "--provider",
        "sec_edgar",
        "--symbols",
        "SNOW",
        "--start",
        "2025-03-21",
        "--end",
        "2025-03-22",
        "--no-with-derived",
    )

    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "error: run " in text and " in fundamentals failed: " in text  # its root cause
    assert "user_agent" in text


def test_query_bars_without_range_says_what_is_missing(workdir):
    result = invoke("query", "bars_1d", "AAPL")

    assert result.exit_code == 2
    assert "bars_1d needs --start and --end" in result.output
