"""The CLI says what happened (issue 13): ranges said out loud, any asset ingested, one error
style with a failed run's root cause, output that fits 80 columns, the demo's coverage
report, and rows set aside counted in the summary."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.calendar import get_calendar
from market_assets.core.schemas import BAR_COLUMNS

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SESSIONS = ("--start", "2024-03-04", "--end", "2024-03-09")  # Mon..Fri, closed long ago


def invoke(*args: str, columns: int = 200, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns), **(env or {})})


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    monkeypatch.delenv("MARKET_ASSETS_DATA_DIR", raising=False)
    monkeypatch.delenv("MARKET_ASSETS_TIMESCALE_DSN", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path


def lines_of(output: str) -> list[str]:
    return output.splitlines()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    """bars_1d for two symbols, one week, through the CLI."""
    folder = tmp_path_factory.mktemp("ingested")
    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL,MSFT", *SESSIONS,
        "--data-dir", str(folder / "data"), "--dagster-home", str(folder / "home"),
        env={"MARKET_ASSETS_CONFIG_DIR": str(REPO_CONFIGS)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def downstream(ingested) -> tuple[Path, str]:
    """The same rectangle again with everything downstream of bars_1d; (folder, output)."""
    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL,MSFT", *SESSIONS,
        "--with-downstream", "--data-dir", str(ingested / "data"),
        "--dagster-home", str(ingested / "home"),
        env={"MARKET_ASSETS_CONFIG_DIR": str(REPO_CONFIGS)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return ingested, result.output


def in_ingested(folder: Path, *args: str, columns: int = 200):
    return invoke(
        *args,
        "--data-dir",
        str(folder / "data"),
        columns=columns,
        env={"MARKET_ASSETS_CONFIG_DIR": str(REPO_CONFIGS)},
    )


# ------------------------------------------------------------------ 8. ranges said out loud


def test_ingest_with_the_end_before_the_start_is_an_error(workdir):
    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL",
        "--start", "2024-03-09", "--end", "2024-03-04",
    )  # fmt: skip

    assert result.exit_code == 2
    assert "error: bars_1d: --end 2024-03-04 is not after --start 2024-03-09" in result.output
    assert not (workdir / "data").exists()


def test_ingest_before_the_datasets_first_session_names_its_start_in_datasets_yaml(workdir):
    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL",
        "--start", "2000-01-03", "--end", "2001-01-01",
    )  # fmt: skip

    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "first session 2009-01-02" in output
    assert f"datasets.bars_1d.start in {REPO_CONFIGS / 'datasets.yaml'}" in output


def test_ingest_of_sessions_not_closed_yet_is_refused_without_allow_incomplete(workdir):
    calendar = get_calendar()
    upcoming = calendar.sessions(dt.date.today() + dt.timedelta(days=2), calendar.last_session)

    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL",
        "--start", upcoming[0].isoformat(), "--end", upcoming[3].isoformat(),
    )  # fmt: skip

    assert result.exit_code == 2
    assert "has closed yet" in " ".join(result.output.split())
    assert not (workdir / "data").exists()


# ------------------------------------------------------------------ 9. any asset, downstream too


def test_ingest_with_downstream_materializes_adjusted_bars_indicators_and_the_report(
    downstream,
):
    ingested, output = downstream

    for asset in ("bars_1d", "corporate_actions", "bars_1d_adjusted", "indicators"):
        assert asset in output
    assert "coverage_report" in output
    # 2024 has closed: its sessions sit in the symbol's compacted file of closed years.
    adjusted = pl.read_parquet(ingested / "data/ticks/daily_adjusted/AAPL/ticks.parquet")
    assert adjusted.height == 5
    assert (ingested / "data/quality/coverage_report.md").is_file()


def test_ingest_names_a_derived_asset_directly(downstream):
    ingested, _ = downstream
    result = in_ingested(
        ingested, "ingest", "--dataset", "bars_1d_adjusted", "--symbols", "AAPL", *SESSIONS,
        "--dagster-home", str(ingested / "home"),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "bars_1d_adjusted" in result.output


def test_query_serves_adjusted_bars_and_indicators(downstream, tmp_path):
    ingested, _ = downstream
    adjusted = in_ingested(
        ingested, "query", "bars_1d", "AAPL", *SESSIONS, "--adjusted", "--format", "csv",
        "--out", str(tmp_path / "adjusted.csv"),
    )  # fmt: skip
    indicators = in_ingested(
        ingested, "query", "indicators", "AAPL", *SESSIONS, "--names", "sma_20,rsi_14",
        "--format", "csv", "--out", str(tmp_path / "indicators.csv"),
    )  # fmt: skip

    assert adjusted.exit_code == 0, adjusted.output
    assert indicators.exit_code == 0, indicators.output
    frame = pl.read_csv(tmp_path / "adjusted.csv")
    assert {"adj_close", "split_factor", "dividend_factor"} <= set(frame.columns)
    assert frame.height == 5
    assert pl.read_csv(tmp_path / "indicators.csv").columns == ["symbol", "ts", "sma_20", "rsi_14"]


# ------------------------------------------------------------------ 10. one error style


@pytest.mark.parametrize(
    "command",
    [["demo"], ["ingest", "--dataset", "bars_1d", "--symbols", "AAPL", *SESSIONS]],
    ids=["demo", "ingest"],
)
def test_a_config_error_is_one_line_naming_file_and_key(workdir, command):
    configs = workdir / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    datasets = yaml.safe_load((configs / "datasets.yaml").read_text())
    datasets["datasets"]["bars_1d"]["providers"] = ["nobody"]
    (configs / "datasets.yaml").write_text(yaml.safe_dump(datasets))

    result = invoke(*command, "--config-dir", str(configs))

    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert len(lines_of(result.output)) <= 3  # one line, wrapped at the terminal's width
    text = " ".join(result.output.split())
    assert text.startswith(f"error: {configs / 'datasets.yaml'}: datasets.bars_1d.providers")
    assert "unknown provider 'nobody'" in text


def broken_lean(workdir: Path) -> Path:
    configs = workdir / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    providers = yaml.safe_load((configs / "providers.yaml").read_text())
    providers["providers"]["lean_daily"]["enabled"] = True
    providers["providers"]["lean_daily"]["settings"]["directory"] = str(workdir / "nowhere")
    (configs / "providers.yaml").write_text(yaml.safe_dump(providers))
    return configs


def test_a_failed_run_prints_its_root_cause_with_the_run_id_on_the_error_line(workdir):
    configs = broken_lean(workdir)

    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL", *SESSIONS,
        "--provider", "lean_daily", "--config-dir", str(configs),
    )  # fmt: skip

    assert result.exit_code == 2
    assert "Traceback" not in result.output and "Stack Trace" not in result.output
    final = " ".join(result.output.split("error: ")[-1].split())
    assert final.startswith("run ")
    assert " in bars_1d failed: BadRequestError: files dataset=bars_1d" in final
    assert f"folder {workdir / 'nowhere'} does not exist" in final
    assert "(--debug shows the trace)" in final
    os.environ["DAGSTER_HOME"] = str(workdir / ".dagster_home")
    try:
        with DagsterInstance.get() as instance:
            [run] = instance.get_runs()
    finally:
        del os.environ["DAGSTER_HOME"]
    assert final.startswith(f"run {run.run_id} ")


def test_debug_shows_the_trace_of_a_failed_run(workdir):
    configs = broken_lean(workdir)

    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL", *SESSIONS,
        "--provider", "lean_daily", "--config-dir", str(configs), "--debug",
    )  # fmt: skip

    assert result.exit_code == 2
    assert "Stack Trace" in result.output
    assert "market_assets/core/providers/files.py" in result.output


# ------------------------------------------------------------------ 11. output that fits


def test_query_table_shows_every_column_within_80_columns(ingested):
    result = in_ingested(ingested, "query", "bars_1d", "AAPL,MSFT", *SESSIONS, columns=80)

    assert result.exit_code == 0, result.output
    assert max(len(line) for line in lines_of(result.output)) <= 80
    assert "…" not in result.output
    for column in BAR_COLUMNS:
        assert column in result.output, column
    assert "10 rows, 11 columns" in result.output


def test_status_fits_80_columns_without_cutting_a_value(ingested):
    result = invoke(
        "status", "--dagster-home", str(ingested / "home"), "--data-dir", str(ingested / "data"),
        columns=80, env={"MARKET_ASSETS_CONFIG_DIR": str(REPO_CONFIGS)},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert max(len(line) for line in lines_of(result.output)) <= 80
    assert "…" not in result.output
    for header in ("coverage %", "quarantined", "ERROR parts", "bars_1d"):
        assert header in result.output


def test_status_json_is_one_record_per_line(ingested):
    result = invoke(
        "status", "--json", "--dagster-home", str(ingested / "home"),
        "--data-dir", str(ingested / "data"),
        env={"MARKET_ASSETS_CONFIG_DIR": str(REPO_CONFIGS)},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines_of(result.output)]
    kinds = {record["kind"] for record in records}
    assert {"summary", "result"} <= kinds
    summary = next(r for r in records if r["kind"] == "summary" and r["dataset"] == "bars_1d")
    assert summary["present"] == 10


# ------------------------------------------------------------------ 11, 12: the demo


def test_demo_fits_80_columns_and_materializes_the_coverage_report_with_its_heatmap(workdir):
    result = invoke("demo", "--minute-sessions", "1", "--daily-sessions", "2", columns=80)

    assert result.exit_code == 0, result.output
    assert max(len(line) for line in lines_of(result.output)) <= 80
    summary = result.output[result.output.index("demo universe") :]  # after the progress bars
    assert "…" not in summary
    for dataset in ("corporate_actions", "bars_1d_adjusted", "indicators", "coverage_report"):
        assert dataset in summary
    os.environ["DAGSTER_HOME"] = str(workdir / ".dagster_home")
    try:
        with DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(AssetKey("coverage_report"))
    finally:
        del os.environ["DAGSTER_HOME"]
    report = event.asset_materialization.metadata["report"].value
    assert "![coverage heatmap" in report
    assert "(data:image/png;base64,iVBORw0KGgo" in report  # a PNG, inside the Markdown


# ------------------------------------------------------------------ 2. counted in the summary


def test_ingest_summary_counts_quarantined_rows_by_rule(workdir):
    configs = workdir / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    vendor = workdir / "vendor"
    vendor.mkdir()
    (vendor / "AAPL.csv").write_text(
        "date,open,high,low,close,volume\n"
        + "".join(
            f"{day},100,101,99,100,1000\n"
            for day in ("2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08")
        )
        + "2024-03-09,100,101,99,100,1000\n"  # a Saturday
    )
    providers = yaml.safe_load((configs / "providers.yaml").read_text())
    providers["providers"]["vendor"] = {
        "kind": "files",
        "settings": {"directory": str(vendor), "columns": {"ts": "date"}},
    }
    (configs / "providers.yaml").write_text(yaml.safe_dump(providers))

    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL", "--start", "2024-03-04",
        "--end", "2024-03-11", "--provider", "vendor", "--config-dir", str(configs),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "bars_1d: 1 row(s) quarantined (not_a_session 1)" in text
