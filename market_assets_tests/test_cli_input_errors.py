"""Bad input through the CLI: one line naming the file (and line or operation), nothing else
lost. Truncated vendor files, folders and files this user may not read or write."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.query import MarketData
from market_assets_tests.fixtures.permissions import require_permissions_enforced, run_python

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DAYS = ("2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08")
WEEK = ("--start", "2024-03-04", "--end", "2024-03-09")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def error_line(output: str) -> str:
    """The text after the last `error: `, on one line."""
    return " ".join(output.split("error: ")[-1].split())


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    monkeypatch.delenv("MARKET_ASSETS_DATA_DIR", raising=False)
    monkeypatch.delenv("MARKET_ASSETS_TIMESCALE_DSN", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path


def vendor_configs(workdir: Path, vendor: Path) -> Path:
    """The repository configs plus a `vendor` files provider reading `vendor`/{symbol}.csv."""
    configs = workdir / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    providers = yaml.safe_load((configs / "providers.yaml").read_text())
    providers["providers"]["vendor"] = {
        "kind": "files",
        "settings": {"directory": str(vendor), "columns": {"ts": "date"}},
    }
    (configs / "providers.yaml").write_text(yaml.safe_dump(providers))
    return configs


def daily_csv(close: float) -> str:
    return "date,open,high,low,close,volume\n" + "".join(
        f"{day},{close},{close + 1},{close - 1},{close},1000\n" for day in DAYS
    )


def test_a_vendor_file_cut_mid_line_is_one_error_and_keeps_the_stored_rows(workdir):
    vendor = workdir / "vendor"
    vendor.mkdir()
    (vendor / "AAPL.csv").write_text(daily_csv(100.0))
    (vendor / "MSFT.csv").write_text(daily_csv(200.0))
    configs = vendor_configs(workdir, vendor)
    ingest = ("ingest", "--dataset", "bars_1d", "--symbols", "AAPL,MSFT", *WEEK,
              "--provider", "vendor", "--config-dir", str(configs))  # fmt: skip
    assert invoke(*ingest).exit_code == 0

    (vendor / "AAPL.csv").write_text(daily_csv(101.0))
    (vendor / "MSFT.csv").write_text(daily_csv(201.0)[:-12])  # cut inside the last line
    result = invoke(*ingest)

    assert result.exit_code == 2
    final = error_line(result.output)
    assert f"{vendor / 'MSFT.csv'} line 6: truncated file: its last line has 4 of 6" in final
    assert "quarantined (" not in result.output  # no per-row quarantine of the cut line
    [row] = [line.split() for line in result.output.splitlines() if line.startswith("bars_1d  ")]
    assert row[1] == "5" and row[3] == "0"  # AAPL's partitions stored, nothing quarantined
    bars = MarketData(root=workdir / "data").bars(["AAPL", "MSFT"], DAYS[0], "2024-03-09", "1d")
    closes = {s: bars.filter(bars["symbol"] == s)["close"].to_list() for s in ("AAPL", "MSFT")}
    assert closes == {"AAPL": [101.0] * 5, "MSFT": [200.0] * 5}  # MSFT as stored before


CLI = "from market_assets.cli import app; app()"


def test_ingest_into_a_data_folder_without_write_permission_is_one_error_line(workdir):
    require_permissions_enforced()
    data = workdir / "data"
    data.mkdir()
    data.chmod(0o555)

    done = run_python(
        CLI, "ingest", "--dataset", "bars_1d", "--symbols", "AAPL", *WEEK, cwd=workdir,
        env={"COLUMNS": "200", "MARKET_ASSETS_CONFIG_DIR": str(REPO_CONFIGS)},
    )  # fmt: skip

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    final = error_line(done.stdout)
    assert (
        f" in bars_1d failed: StoreError: cannot open the write lock {data / '.lake.lock'}: "
        "Permission denied; let the user running market-assets"
    ) in final


def test_a_dagster_home_that_cannot_be_created_is_one_error_line(workdir):
    require_permissions_enforced()
    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0o555)

    done = run_python(
        CLI, "ingest", "--dataset", "bars_1d", "--symbols", "AAPL", *WEEK,
        "--dagster-home", str(locked / "home"), cwd=workdir,
        env={"COLUMNS": "200", "MARKET_ASSETS_CONFIG_DIR": str(REPO_CONFIGS)},
    )  # fmt: skip

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    final = error_line(done.stdout)
    assert final.startswith(f"cannot set up the Dagster home {locked / 'home'}: Permission denied")
