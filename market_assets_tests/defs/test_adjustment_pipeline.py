"""End to end through Dagster: corporate_actions -> bars_1d_adjusted -> indicators, the
re-adjust sensor, the lookback window, and real Lean data through a provider."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import psycopg
import pytest
import talib
import yaml
from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    RunRequest,
    build_sensor_context,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.providers import registry as registry_module
from market_assets.core.providers.base import ActionsRequest, BarRequest, FetchResult
from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets.core.stores.lake import ParquetLake
from market_assets.definitions import build_definitions
from market_assets.defs.automation.readjust import READJUST_TAG
from market_assets.defs.resources import PlatformResource
from market_assets.defs.runner import QUIET_RUN_CONFIG, step_metadata
from market_assets.query import MarketData
from market_assets_tests.defs.test_bar_pipeline import REPO_CONFIGS, Pipeline, make_pipeline
from market_assets_tests.realdata import (
    lean_actions,
    lean_adjusted_close,
    lean_daily_bars,
    lean_factor_file,
)

FAMILY = ["bars_1d", "corporate_actions", "bars_1d_adjusted", "indicators"]
CALENDAR = get_calendar()
XOM_SPLIT = dt.date(2023, 7, 11)  # synthetic XOM: 2:1 split, dividend on 2023-08-17
XOM_DIVIDEND = dt.date(2023, 8, 17)


def with_indicators(pipeline: Pipeline) -> Pipeline:
    shutil.copy(REPO_CONFIGS / "indicators.yaml", pipeline.config.config_dir / "indicators.yaml")
    return pipeline


@pytest.fixture
def pipeline(tmp_path) -> Pipeline:
    return with_indicators(make_pipeline(tmp_path))


def lake(pipeline: Pipeline) -> ParquetLake:
    return ParquetLake(str(pipeline.data_dir))


def stored(pipeline: Pipeline, dataset: str, symbols: list[str], start, end) -> pl.DataFrame:
    """Rows of `dataset` in [start, end); bounds are dates or ISO date strings."""
    first, stop = (d if isinstance(d, dt.date) else dt.date.fromisoformat(d) for d in (start, end))
    return lake(pipeline).read(dataset, symbols, first, stop)


def execute(pipeline: Pipeline, request: RunRequest) -> None:
    job = build_definitions(pipeline.config).resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=pipeline.instance,
        asset_selection=list(request.asset_selection),
        tags=request.tags,
    )


def evaluate_readjust_sensor(pipeline: Pipeline, cursor: str | None = None):
    sensor = build_definitions(pipeline.config).get_sensor_def("readjust_sensor")
    platform = PlatformResource(config_dir=str(pipeline.config.config_dir))
    with build_sensor_context(
        instance=pipeline.instance, resources={"platform": platform}, cursor=cursor
    ) as context:
        return sensor(context)


def test_adjusted_bars_apply_the_split_and_dividend_to_earlier_sessions(pipeline):
    sessions = CALENDAR.sessions("2023-07-06", "2023-08-18")

    summary = pipeline.run(FAMILY, sessions, ["XOM"], sessions_per_run=100)

    assert len(summary.run_ids) == 1
    actions = stored(pipeline, "corporate_actions", ["XOM"], "2023-01-01", "2024-01-01")
    assert actions.select("ex_date", "action_type").rows() == [
        (XOM_SPLIT, "split"),
        (XOM_DIVIDEND, "dividend"),
    ]
    daily = stored(pipeline, "bars_1d", ["XOM"], "2023-07-06", "2023-08-19")
    close_before_dividend = daily.filter(pl.col("ts").dt.date() < XOM_DIVIDEND)["close"][-1]
    dividend = actions.filter(pl.col("action_type") == "dividend").row(0, named=True)
    assert dividend["reference_close"] == close_before_dividend
    step = 1 - dividend["amount"] / close_before_dividend
    adjusted = stored(pipeline, "bars_1d_adjusted", ["XOM"], "2023-07-06", "2023-08-19")
    by_day = {row["ts"].date(): row for row in adjusted.to_dicts()}
    first = by_day[sessions[0]]
    assert (first["split_factor"], first["dividend_factor"]) == (0.5, pytest.approx(step))
    assert first["adj_close"] == pytest.approx(first["close"] * 0.5 * step, rel=1e-9)
    assert first["adj_volume"] == first["volume"] * 2
    assert by_day[XOM_SPLIT]["split_factor"] == 1.0
    assert by_day[XOM_DIVIDEND]["dividend_factor"] == 1.0
    queried = pipeline.market().bars("XOM", "2023-07-06", "2023-08-19", adjusted=True)
    assert queried.equals(adjusted)


def test_a_new_split_after_history_was_stored_re_adjusts_only_that_symbol(pipeline, monkeypatch):
    sessions = CALENDAR.sessions("2024-03-08", "2024-03-28")
    pipeline.run(FAMILY, sessions, ["NVDA", "JPM"], sessions_per_run=100)
    # Storing NVDA's March dividend the first time is a change too; re-adjusting after it is
    # idempotent here (the same run already used it). Drain it before the vendor's news.
    first_sensor = evaluate_readjust_sensor(pipeline)
    assert [r.tags[READJUST_TAG] for r in first_sensor.run_requests] == ["NVDA"]
    execute(pipeline, first_sensor.run_requests[0])
    before = stored(pipeline, "bars_1d_adjusted", ["NVDA", "JPM"], "2024-03-08", "2024-03-29")
    runs_before = len(pipeline.instance.get_run_records())

    announced_split = sessions[-1]
    original = SyntheticProvider.fetch_actions

    def with_new_split(self, request: ActionsRequest) -> FetchResult:
        # The vendor now lists a 3:1 NVDA split it did not list when history was stored.
        result = original(self, request)
        if "NVDA" in request.symbols and request.start <= announced_split < request.end:
            split = pl.DataFrame(
                {"symbol": ["NVDA"], "ex_date": [announced_split], "action_type": ["split"],
                 "ratio": [3.0], "source": ["synthetic"]}
            )  # fmt: skip
            result.frame = pl.concat([result.frame, split], how="diagonal_relaxed")
        return result

    monkeypatch.setattr(SyntheticProvider, "fetch_actions", with_new_split)
    pipeline.run(["corporate_actions"], [announced_split], ["NVDA", "JPM"])
    result = evaluate_readjust_sensor(pipeline, cursor=first_sensor.cursor)

    assert [r.tags[READJUST_TAG] for r in result.run_requests] == ["NVDA"]
    request = result.run_requests[0]
    assert {k.to_user_string() for k in request.asset_selection} == {
        "bars_1d_adjusted",
        "indicators",
    }
    assert request.tags["dagster/asset_partition_range_start"] == "2024-03-08|NVDA"
    assert request.tags["dagster/asset_partition_range_end"] == "2024-03-28|NVDA"
    assert len(pipeline.instance.get_run_records()) == runs_before + 1  # the actions run
    execute(pipeline, request)

    after = stored(pipeline, "bars_1d_adjusted", ["NVDA", "JPM"], "2024-03-08", "2024-03-29")
    old, new = (f.filter(pl.col("symbol") == "NVDA") for f in (before, after))
    earlier = pl.col("ts").dt.date() < announced_split
    assert new.filter(earlier)["adj_close"].to_list() == pytest.approx(
        [v / 3 for v in old.filter(earlier)["adj_close"]], rel=1e-9
    )
    assert (
        new.filter(~earlier)["adj_close"].to_list() == old.filter(~earlier)["adj_close"].to_list()
    )
    assert after.filter(pl.col("symbol") == "JPM").equals(before.filter(pl.col("symbol") == "JPM"))
    ema = pipeline.market().indicators("NVDA", sessions[-2], sessions[-1], ["ema_12"])
    recomputed = talib.EMA(new.filter(earlier)["adj_close"].to_numpy(), 12)[-1]
    assert ema["ema_12"][0] == pytest.approx(recomputed, abs=1e-9)
    settled = evaluate_readjust_sensor(pipeline, cursor=result.cursor)
    assert settled.run_requests == []


def test_indicators_of_one_session_load_their_lookback_from_earlier_partitions(pipeline):
    sessions = CALENDAR.sessions("2023-01-03", "2023-10-31")[:201]
    # No corporate_actions partitions: the adjusted asset reads none, so factors are 1.
    pipeline.run(["bars_1d", "bars_1d_adjusted"], sessions, ["AAPL"], sessions_per_run=250)

    summary = pipeline.run(["indicators"], sessions[-1:], ["AAPL"])

    assert summary.datasets["indicators"].partitions == 1
    metadata = step_metadata(pipeline.instance, summary.run_ids[0])["indicators"]
    assert metadata["input_rows"] == 201
    assert metadata["first_input_ts"].startswith(str(sessions[0]))
    closes = stored(pipeline, "bars_1d_adjusted", ["AAPL"], sessions[0], "2023-12-01")
    full = closes["adj_close"].to_numpy()
    values = pipeline.market().indicators("AAPL", sessions[-1], "2023-12-01")
    assert values["sma_200"][0] == pytest.approx(talib.SMA(full, 200)[-1], abs=1e-9)
    assert values["ema_26"][0] == pytest.approx(talib.EMA(full, 26)[-1], abs=1e-9)


def test_an_action_for_a_symbol_with_no_bars_is_stored_and_adjusts_nothing(pipeline):
    pipeline.run(["corporate_actions"], [XOM_SPLIT], ["XOM"])

    pipeline.run(["bars_1d_adjusted"], [XOM_SPLIT - dt.timedelta(days=1)], ["XOM"])

    actions = pipeline.market().actions("XOM", "2023-01-01", "2024-01-01")
    assert actions.select("ex_date", "ratio").rows() == [(XOM_SPLIT, 2.0)]
    assert stored(pipeline, "bars_1d_adjusted", ["XOM"], "2023-01-01", "2024-01-01").is_empty()


def test_minute_bars_get_adjusted_views_from_the_same_factors(pipeline):
    pipeline.run(["bars_1m"], [dt.date(2023, 7, 10)], ["XOM"])
    pipeline.run(["corporate_actions"], [XOM_SPLIT], ["XOM"])

    minute = pipeline.market().bars("XOM", "2023-07-10", "2023-07-11", "1m", adjusted=True)
    as_it_was = pipeline.market().bars(
        "XOM", "2023-07-10", "2023-07-11", "1m", adjusted=True, as_of=dt.date(2023, 7, 10)
    )

    assert len(minute) == 390
    assert minute["split_factor"].unique().to_list() == [0.5]
    assert minute["adj_close"].to_list() == pytest.approx((minute["close"] / 2).to_list())
    assert as_it_was["split_factor"].unique().to_list() == [1.0]


class LeanProvider:
    """Real Lean AAPL daily bars and the actions implied by its factor file (test seam)."""

    name = "lean"
    granularities = ("1d",)

    @classmethod
    def from_config(cls, settings: dict) -> LeanProvider:
        return cls()

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        bars = lean_daily_bars("AAPL").filter(
            pl.col("ts").dt.date().is_between(request.start, request.end, closed="left")
        )
        return FetchResult(frame=bars, source=self.name, requests=1)

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        actions = lean_actions("AAPL", lean_factor_file("AAPL")).drop("reference_close")
        window = pl.col("ex_date").is_between(request.start, request.end, closed="left")
        return FetchResult(frame=actions.filter(window), source=self.name, requests=1)


def test_real_lean_aapl_adjusts_through_dagster_like_lean_factor_files(tmp_path, monkeypatch):
    lean_daily_bars("AAPL")  # skips with a reason when the real data is absent
    monkeypatch.setitem(
        registry_module.PROVIDER_KINDS, "lean", f"{__name__}:{LeanProvider.__name__}"
    )
    pipeline = with_indicators(make_pipeline(tmp_path))
    config_dir = Path(pipeline.config.config_dir)
    providers = yaml.safe_load((config_dir / "providers.yaml").read_text())
    providers["providers"]["lean"] = {"kind": "lean"}
    (config_dir / "providers.yaml").write_text(yaml.safe_dump(providers))
    datasets = yaml.safe_load((config_dir / "datasets.yaml").read_text())
    for name in ("bars_1d", "corporate_actions"):
        datasets["datasets"][name]["providers"] = ["lean"]
    (config_dir / "datasets.yaml").write_text(yaml.safe_dump(datasets))
    pipeline.config = dataclasses.replace(
        AppConfig.load(config_dir), data_dir=str(pipeline.data_dir), timescale_dsn=None
    )
    sessions = CALENDAR.sessions("2014-05-06", "2014-06-13")  # dividend 05-08, split 06-09

    pipeline.run(FAMILY, sessions, ["AAPL"], sessions_per_run=100)

    end = sessions[-1] + dt.timedelta(days=1)
    raw = pipeline.market().bars("AAPL", sessions[0], end)
    stored_adjusted = stored(pipeline, "bars_1d_adjusted", ["AAPL"], sessions[0], end)
    lean = lean_adjusted_close(raw, lean_factor_file("AAPL"))
    compared = stored_adjusted.join(lean, on="ts").with_columns(
        (pl.col("adj_close") / pl.col("lean_adj_close")).alias("ratio")
    )
    # Only actions inside the window are known here; Lean's factors also hold later ones,
    # a constant for this window: compare after scaling both to the last session.
    difference = (compared["ratio"] / compared["ratio"][-1] - 1).abs().max()
    assert len(compared) == len(sessions)
    assert difference < 5e-6
    before_split = compared.filter(pl.col("ts").dt.date() == dt.date(2014, 6, 6)).row(0, named=True)
    assert before_split["split_factor"] == pytest.approx(1 / 7)
    indicators = pipeline.market().indicators("AAPL", sessions[-1], end, ["sma_20"])
    assert indicators["sma_20"][0] == pytest.approx(compared["adj_close"].tail(20).mean(), rel=1e-9)


def test_corporate_actions_are_written_to_postgresql_when_a_dsn_is_configured(
    tmp_path, pg_dsn, timescale_store
):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE corporate_actions")
    pipeline = with_indicators(make_pipeline(tmp_path, dsn=pg_dsn))

    pipeline.run(["corporate_actions"], [XOM_SPLIT, XOM_DIVIDEND], ["XOM"])
    pipeline.run(["corporate_actions"], [XOM_SPLIT, XOM_DIVIDEND], ["XOM"])  # idempotent

    market = MarketData(root=pipeline.data_dir, dsn=pg_dsn)
    from_pg = market.actions("XOM", "2023-01-01", "2024-01-01", store="timescale")
    from_lake = market.actions("XOM", "2023-01-01", "2024-01-01")
    assert from_pg.select("ex_date", "action_type").rows() == [
        (XOM_SPLIT, "split"),
        (XOM_DIVIDEND, "dividend"),
    ]
    assert from_pg.equals(from_lake)


def adjustment_evaluations(pipeline: Pipeline, run_id: str) -> list:
    records = pipeline.instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
    return [e for e in evaluations if e.check_name == "adjustment"]


def test_adjustment_check_passes_when_the_split_and_dividend_are_applied(pipeline):
    sessions = CALENDAR.sessions("2023-07-06", "2023-08-18")

    summary = pipeline.run(FAMILY, sessions, ["XOM"], sessions_per_run=100)

    [evaluation] = adjustment_evaluations(pipeline, summary.run_ids[0])
    assert evaluation.passed
    rules = {r["rule"]: r for r in evaluation.metadata["rules"].value}
    assert rules["dividend_continuity"]["details"]["dividends_checked"] == 1
    assert rules["split_jumps_explained"]["details"]["split_sized_jumps"] == 1
    assert evaluation.metadata["bars_judged"].value >= len(sessions)


def test_adjustment_check_fails_when_a_split_was_never_applied(pipeline):
    sessions = CALENDAR.sessions("2023-07-06", "2023-07-21")

    summary = pipeline.run(["bars_1d", "bars_1d_adjusted"], sessions, ["XOM"])  # no actions

    [evaluation] = adjustment_evaluations(pipeline, summary.run_ids[0])
    assert not evaluation.passed
    assert evaluation.severity == AssetCheckSeverity.ERROR
    failed = {r["rule"] for r in evaluation.metadata["rules"].value if not r["passed"]}
    assert failed == {"split_jumps_explained", "no_split_jumps_in_adjusted"}
