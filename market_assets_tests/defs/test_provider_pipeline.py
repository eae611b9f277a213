"""Provider behaviour through Dagster: files ingest, vendor pools, backup comparison, secrets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, serialize_value
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.providers.base import AuthError, BarRequest, FetchResult
from market_assets.core.providers.registry import PROVIDER_KINDS
from market_assets.core.transforms.compare import relative_difference
from market_assets.definitions import build_definitions
from market_assets.defs.assets.bars import PROVIDER_TAG
from market_assets.defs.runner import RunSummary, materialize_rectangle, step_metadata
from market_assets_tests.defs.test_bar_pipeline import Pipeline, make_pipeline
from market_assets_tests.realdata import require

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SESSIONS = [dt.date(2024, 3, 7), dt.date(2024, 3, 8), dt.date(2024, 3, 11)]
SECRET = "sk-test-8c1f0d2b9e7a"
SECRET_ENV = "KEYED_VENDOR_API_KEY"


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """An ephemeral instance entered for the whole test, as the CLI enters its own, so
    definitions resolve against it and never against an instance an earlier test left behind.
    """
    with DagsterInstance.ephemeral() as entered:
        yield entered


def pipeline_on(instance: DagsterInstance, folder: Path, **options: Any) -> Pipeline:
    """make_pipeline's pipeline (repository configs, tmp data) on the entered instance."""
    folder.mkdir(exist_ok=True)
    pipeline = make_pipeline(folder, **options)
    pipeline.instance = instance
    return pipeline


def reconfigure(pipeline: Pipeline, edit: Callable[[dict, dict], None]) -> Pipeline:
    """Apply `edit` to the pipeline's providers.yaml and datasets.yaml, then reload them."""
    config_dir = pipeline.config.config_dir
    files = {name: config_dir / f"{name}.yaml" for name in ("providers", "datasets")}
    data = {name: yaml.safe_load(path.read_text()) for name, path in files.items()}
    edit(data["providers"]["providers"], data["datasets"]["datasets"])
    for name, path in files.items():
        path.write_text(yaml.safe_dump(data[name]))
    pipeline.config = dataclasses.replace(
        AppConfig.load(config_dir), data_dir=str(pipeline.data_dir), timescale_dsn=None
    )
    return pipeline


def run(pipeline: Pipeline, sessions, symbols, tags: dict[str, str] | None = None) -> RunSummary:
    return materialize_rectangle(
        build_definitions(pipeline.config),
        pipeline.instance,
        [AssetKey("bars_1d")],
        sessions,
        symbols,
        250,
        tags=tags,
    )


def latest_metadata(pipeline: Pipeline) -> dict[str, Any]:
    """The bars_1d step's run-level metadata of the latest run."""
    [run] = pipeline.instance.get_runs(limit=1)
    return step_metadata(pipeline.instance, run.run_id)["bars_1d"]


# ---------------------------------------------------------------------------- files provider


def test_ingest_with_the_lean_daily_provider_stores_raw_bars_in_the_lake(instance, tmp_path):
    sample = require("lean/daily__aapl.zip")

    def enable_lean(providers: dict, datasets: dict) -> None:
        providers["lean_daily"]["enabled"] = True
        providers["lean_daily"]["settings"].update(
            directory=str(sample.parent), pattern="daily__{symbol_lower}.zip"
        )

    pipeline = reconfigure(pipeline_on(instance, tmp_path), enable_lean)
    sessions = get_calendar().sessions(dt.date(2014, 6, 2), dt.date(2014, 6, 13))

    summary = run(pipeline, sessions, ["AAPL"], tags={PROVIDER_TAG: "lean_daily"})

    assert not summary.failed_runs
    assert summary.datasets["bars_1d"].rows == 10
    daily = pipeline.market().bars("AAPL", "2014-06-02", "2014-06-14", "1d")
    closes = dict(zip(daily["ts"].dt.date(), daily["close"], strict=True))
    assert len(daily) == 10
    assert closes[dt.date(2014, 6, 6)] == pytest.approx(645.57)
    assert closes[dt.date(2014, 6, 9)] == pytest.approx(93.70)
    assert daily["source"].unique().to_list() == ["lean_daily"]
    assert "price_adjustment" not in latest_metadata(pipeline)


def test_split_adjusted_files_are_stored_raw_and_say_so_in_the_runs_metadata(
    instance, tmp_path
):
    sample = require("zipline/csvdir_samples__csvdir__daily__AAPL.csv.gz")

    def enable_csvdir(providers: dict, datasets: dict) -> None:
        providers["zipline_csvdir"]["enabled"] = True
        providers["zipline_csvdir"]["settings"].update(
            directory=str(sample.parent), pattern="csvdir_samples__csvdir__daily__{symbol}.csv.gz"
        )

    pipeline = reconfigure(pipeline_on(instance, tmp_path), enable_csvdir)
    sessions = get_calendar().sessions(dt.date(2014, 6, 5), dt.date(2014, 6, 10))

    summary = run(pipeline, sessions, ["AAPL"], tags={PROVIDER_TAG: "zipline_csvdir"})

    assert not summary.failed_runs
    metadata = latest_metadata(pipeline)
    restored = "split_adjusted, restored to raw with 1 listed split(s)"
    assert metadata["price_adjustment"] == f"{restored} (zipline_csvdir)"
    assert metadata["provider_attempts"][-1]["price_adjustment"] == restored
    daily = pipeline.market().bars("AAPL", "2014-06-05", "2014-06-11", "1d")
    assert daily["source"].unique().to_list() == ["zipline_csvdir"]
    closes = dict(zip(daily["ts"].dt.date(), daily["close"], strict=True))
    assert closes[dt.date(2014, 6, 6)] == pytest.approx(645.57, abs=1e-4)


def test_pinning_a_disabled_provider_fails_the_run_saying_it_is_disabled(instance, tmp_path):
    pipeline = pipeline_on(instance, tmp_path)

    summary = run(pipeline, SESSIONS[:1], ["AAPL"], tags={PROVIDER_TAG: "lean_daily"})

    assert len(summary.failed_runs) == 1
    failure = pipeline.instance.get_run_by_id(summary.failed_runs[0])
    logs = serialize_value(pipeline.instance.all_logs(failure.run_id))
    assert "['lean_daily'] are disabled in providers.yaml (enabled: false)" in logs


def test_cli_refuses_to_pin_a_disabled_provider_saying_how_to_enable_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    args = ["ingest", "--provider", "lean_daily", "--dataset", "bars_1d", "--symbols", "AAPL"]

    result = CliRunner().invoke(app, [*args, "--start", "2014-06-02", "--end", "2014-06-14"])

    assert result.exit_code != 0
    assert "provider 'lean_daily' is disabled in providers.yaml: set enabled: true" in (
        result.output
    )
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------- pools


def test_fetched_bar_assets_sit_in_their_primary_vendors_pool(instance, tmp_path):
    def primary_backup(providers: dict, datasets: dict) -> None:
        datasets["bars_1m"]["providers"] = ["backup", "synthetic"]

    pipeline = reconfigure(pipeline_on(instance, tmp_path, backup={"seed": 11}), primary_backup)
    graph = build_definitions(pipeline.config).resolve_asset_graph()

    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}

    assert pools["bars_1d"] == {"vendor_synthetic"}
    assert pools["bars_1m"] == {"vendor_backup"}
    assert pools["bars_5m"] == set()


# ---------------------------------------------------------------------------- failover


def test_backup_rows_are_compared_with_the_primarys_stored_rows_in_metadata(instance, tmp_path):
    first = pipeline_on(instance, tmp_path / "primary_run")
    run(first, SESSIONS, ["AAPL", "MSFT"])
    stored = first.market().bars(["AAPL", "MSFT"], "2024-03-07", "2024-03-12", "1d")
    failover = pipeline_on(
        instance,
        tmp_path / "failover_run",
        provider_settings={"unknown_symbols": ["MSFT"]},
        backup={"seed": 11},
    )
    failover.data_dir = first.data_dir
    failover.config = dataclasses.replace(failover.config, data_dir=str(first.data_dir))

    summary = run(failover, SESSIONS, ["AAPL", "MSFT"])

    assert not summary.failed_runs
    comparison = latest_metadata(failover)["backup_vs_stored"]
    after = failover.market().bars("MSFT", "2024-03-07", "2024-03-12", "1d")
    expected = (
        after.join(stored.filter(pl.col("symbol") == "MSFT"), on=["symbol", "ts"])
        .select(
            relative_difference(pl.col("close"), pl.col("close_right")).max().alias("close"),
            relative_difference(
                pl.col("volume").cast(pl.Float64), pl.col("volume_right").cast(pl.Float64)
            )
            .max()
            .alias("volume"),
        )
        .row(0, named=True)
    )
    assert after["source"].unique().to_list() == ["backup"]
    assert comparison["backup_sources"] == ["backup"]
    assert comparison["stored_source"] == "synthetic"
    assert comparison["compared_bars"] == 3
    assert comparison["max_close_rel_diff"] == pytest.approx(expected["close"], abs=1e-9)
    assert comparison["max_volume_rel_diff"] == pytest.approx(expected["volume"], abs=1e-9)
    assert comparison["max_close_rel_diff"] > 0.005
    assert comparison["disagrees"] is True
    assert comparison["worst_symbol"] == "MSFT"


def test_no_comparison_is_recorded_when_every_row_comes_from_the_primary(instance, tmp_path):
    pipeline = pipeline_on(instance, tmp_path, backup={"seed": 11})

    run(pipeline, SESSIONS, ["AAPL"])

    assert "backup_vs_stored" not in latest_metadata(pipeline)


# ---------------------------------------------------------------------------- secrets


class KeyedVendor:
    """A vendor adapter written carelessly: it quotes its client's HTTP error, URL key and all.

    It reads its key the way real adapters do (the environment variable `api_key_env` names)
    and its every call is refused, so whatever protects the key must be above the adapter.
    """

    name = "keyed"
    granularities = ("1d",)

    def __init__(self, key: str) -> None:
        self._key = key

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> KeyedVendor:
        return cls(os.environ[settings["api_key_env"]])

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        url = f"https://api.vendor.test/v2/bars?symbols={','.join(request.symbols)}&apikey="
        try:
            raise ConnectionRefusedError(f"401 Unauthorized for url: {url}{self._key}")
        except ConnectionRefusedError as http:
            raise AuthError(
                f"the key in {SECRET_ENV} was refused: {http}",
                vendor=self.name,
                dataset=request.dataset,
                symbols=request.symbols,
            ) from http


def keyed_pipeline(
    instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_backup: bool
) -> Pipeline:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setitem(PROVIDER_KINDS, "keyed_vendor", f"{__name__}:KeyedVendor")

    def keyed_first(providers: dict, datasets: dict) -> None:
        providers["keyed"] = {"kind": "keyed_vendor", "api_key_env": SECRET_ENV}
        datasets["bars_1d"]["providers"] = ["keyed", "synthetic"] if with_backup else ["keyed"]

    return reconfigure(pipeline_on(instance, tmp_path), keyed_first)


@pytest.mark.parametrize("with_backup", [True, False], ids=["fails_over", "run_fails"])
def test_failing_authenticated_provider_leaks_its_key_nowhere(
    instance, tmp_path, monkeypatch, caplog, capfd, with_backup
):
    pipeline = keyed_pipeline(instance, tmp_path, monkeypatch, with_backup)
    caplog.set_level(logging.DEBUG)

    summary = run(pipeline, SESSIONS[:1], ["AAPL"])

    assert bool(summary.failed_runs) is not with_backup
    events = serialize_value(pipeline.instance.all_logs(summary.run_ids[0]))
    captured = capfd.readouterr()
    assert "was refused: 401 Unauthorized for url: https://api.vendor.test" in events
    assert "apikey=***" in events
    for text in (events, caplog.text, captured.out, captured.err):
        assert SECRET not in text
    if with_backup:
        attempts = latest_metadata(pipeline)["provider_attempts"]
        assert attempts[0]["outcome"] == "failed"
        assert attempts[0]["error"].endswith("&apikey=***")
