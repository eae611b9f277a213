"""End to end through Dagster: provider -> validation -> IO manager -> stores -> query."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from market_assets.core.config import AppConfig
from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets.definitions import build_definitions
from market_assets.defs.assets.bars import PROVIDER_TAG
from market_assets.defs.resources import PlatformResource
from market_assets.defs.runner import RunSummary, materialize_rectangle, step_metadata
from market_assets.query import MarketData

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MINUTE_ASSETS = ["bars_1m", "bars_5m", "bars_15m", "bars_1h"]
SESSIONS = [dt.date(2024, 3, 7), dt.date(2024, 3, 8), dt.date(2024, 3, 11)]
SYMBOLS = ["AAPL", "MSFT", "NVDA"]


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
        sessions_per_run: int = 10,
        expect_failure: bool = False,
    ) -> RunSummary:
        defs = build_definitions(self.config)
        summary = materialize_rectangle(
            defs,
            self.instance,
            [AssetKey(a) for a in assets],
            sessions,
            symbols,
            sessions_per_run,
        )
        assert bool(summary.failed_runs) == expect_failure, f"failed runs: {summary.failed_runs}"
        return summary

    def market(self) -> MarketData:
        return MarketData(root=self.data_dir)


def partition_status(pipeline: Pipeline, asset: str) -> tuple[set[str], set[str]]:
    """(failed, materialized) partition keys of `asset`, as Dagster's partition status says."""
    defs = build_definitions(pipeline.config)
    partitions_def = defs.resolve_assets_def(asset).partitions_def
    status = get_and_update_asset_status_cache_value(
        pipeline.instance, AssetKey(asset), partitions_def
    )
    with partition_loading_context(dynamic_partitions_store=pipeline.instance):
        failed = status.deserialize_failed_partition_subsets(partitions_def)
        materialized = status.deserialize_materialized_partition_subsets(partitions_def)
        return set(map(str, failed.get_partition_keys())), set(
            map(str, materialized.get_partition_keys())
        )


def make_pipeline(
    tmp_path: Path,
    provider_settings: dict | None = None,
    dsn: str | None = None,
    backup: dict | None = None,
    universes: dict | None = None,
) -> Pipeline:
    """A pipeline on the repository configs, writing under tmp_path.

    `backup` adds a second synthetic provider named `backup` (with those settings) after the
    primary in every fetched dataset's route.
    """
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    for name in ("universes", "datasets", "providers"):
        data = yaml.safe_load((REPO_CONFIGS / f"{name}.yaml").read_text())
        if name == "universes" and universes:
            data["universes"] = universes
        if name == "providers" and provider_settings:
            data["providers"]["synthetic"]["settings"].update(provider_settings)
        if name == "providers" and backup is not None:
            data["providers"]["backup"] = {"kind": "synthetic", "settings": backup}
        if name == "datasets" and backup is not None:
            for dataset in data["datasets"].values():
                if "providers" in dataset:
                    dataset["providers"].append("backup")
        (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data))
    data_dir = tmp_path / "data"
    config = dataclasses.replace(
        AppConfig.load(config_dir), data_dir=str(data_dir), timescale_dsn=dsn
    )
    return Pipeline(config, DagsterInstance.ephemeral(), data_dir)


@pytest.fixture
def pipeline(tmp_path) -> Pipeline:
    return make_pipeline(tmp_path)


def test_rectangle_run_fetches_in_one_request_and_stores_every_partition(pipeline):
    summary = pipeline.run(["bars_1m"], SESSIONS, SYMBOLS)

    stats = summary.datasets["bars_1m"]
    assert len(summary.run_ids) == 1
    assert stats.partitions == len(SESSIONS) * len(SYMBOLS)
    assert stats.rows == len(SESSIONS) * len(SYMBOLS) * 390
    assert stats.quarantined == 0
    bars = pipeline.market().bars(SYMBOLS, SESSIONS[0], SESSIONS[-1] + dt.timedelta(days=1), "1m")
    assert len(bars) == len(SESSIONS) * len(SYMBOLS) * 390
    assert bars["source"].unique().to_list() == ["synthetic"]
    run = pipeline.instance.get_run_by_id(summary.run_ids[0])
    assert run.tags["dagster/asset_partition_range_start"] == "2024-03-07|AAPL"
    metadata = step_metadata(pipeline.instance, run.run_id)["bars_1m"]
    assert metadata["vendor_requests"] == 1
    assert metadata["partitions"] == 9
    materialized = pipeline.instance.get_materialized_partitions(AssetKey("bars_1m"))
    assert materialized == {f"{d}|{s}" for d in SESSIONS for s in SYMBOLS}
    latest = pipeline.instance.get_latest_materialization_event(AssetKey("bars_1m"))
    per_partition = latest.asset_materialization.metadata
    assert per_partition["rows"].value == 390
    assert per_partition["source"].value == "synthetic"


def test_backfill_splits_sessions_into_runs_of_the_configured_size(pipeline):
    summary = pipeline.run(["bars_1d"], SESSIONS, SYMBOLS, sessions_per_run=2)

    assert len(summary.run_ids) == 2
    assert summary.datasets["bars_1d"].partitions == 9
    # The quality check's own seconds count as our code, not as Dagster's bookkeeping.
    assert set(summary.datasets) == {"bars_1d"}
    assert summary.check_seconds > 0
    assert summary.our_seconds == pytest.approx(
        summary.datasets["bars_1d"].seconds + summary.check_seconds
    )
    daily = pipeline.market().bars(SYMBOLS, "2024-03-01", "2024-03-12", "1d")
    assert daily.group_by("symbol").len().sort("symbol")["len"].to_list() == [3, 3, 3]


def test_rematerializing_a_partition_replaces_it_without_duplicates(pipeline):
    pipeline.run(["bars_1m", "bars_1d"], SESSIONS, SYMBOLS)
    before_1m = pipeline.market().bars(SYMBOLS, "2024-03-07", "2024-03-12", "1m")
    before_1d = pipeline.market().bars(SYMBOLS, "2024-03-07", "2024-03-12", "1d")

    pipeline.run(["bars_1m", "bars_1d"], SESSIONS[1:2], ["MSFT"])

    after_1m = pipeline.market().bars(SYMBOLS, "2024-03-07", "2024-03-12", "1m")
    after_1d = pipeline.market().bars(SYMBOLS, "2024-03-07", "2024-03-12", "1d")
    assert after_1m.equals(before_1m)
    assert after_1d.equals(before_1d)
    assert after_1m.select("symbol", "ts").is_duplicated().sum() == 0


def test_derived_bars_equal_a_direct_aggregation_of_minute_bars(pipeline):
    pipeline.run(MINUTE_ASSETS, SESSIONS[:1], ["AAPL"])
    market = pipeline.market()
    minute = market.bars("AAPL", "2024-03-07", "2024-03-08", "1m")
    hourly = market.bars("AAPL", "2024-03-07", "2024-03-08", "1h")

    # Independent computation: New York wall-clock hour buckets offset by the 9:30 open.
    expected = (
        minute.with_columns(
            (
                (pl.col("ts") - pl.datetime(2024, 3, 7, 14, 30, time_zone="UTC"))
                .dt.total_minutes()
                // 60
            ).alias("bucket")
        )
        .group_by("bucket")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
        )
        .sort("bucket")
    )
    assert len(hourly) == 7
    assert hourly["ts"][0] == dt.datetime(2024, 3, 7, 14, 30, tzinfo=dt.UTC)
    for column in ("open", "high", "low", "close", "volume"):
        assert hourly[column].to_list() == expected[column].to_list(), column
    five = market.bars("AAPL", "2024-03-07", "2024-03-08", "5m")
    fifteen = market.bars("AAPL", "2024-03-07", "2024-03-08", "15m")
    assert (len(five), len(fifteen)) == (78, 26)
    assert five["volume"].sum() == fifteen["volume"].sum() == minute["volume"].sum()


def test_early_close_session_has_fewer_minute_bars_and_a_truncated_last_hour(pipeline):
    early = dt.date(2024, 11, 29)  # the day after Thanksgiving closes at 13:00 New York
    pipeline.run(MINUTE_ASSETS, [early], ["SPY"])
    market = pipeline.market()

    minute = market.bars("SPY", early, early + dt.timedelta(days=1), "1m")
    hourly = market.bars("SPY", early, early + dt.timedelta(days=1), "1h")
    assert len(minute) == 210
    assert len(hourly) == 4
    assert minute["ts"].max() == dt.datetime(2024, 11, 29, 17, 59, tzinfo=dt.UTC)


def test_holidays_are_not_partitions_and_cannot_be_requested(pipeline):
    defs = build_definitions(pipeline.config)
    partitions = defs.resolve_asset_graph().get(AssetKey("bars_1d")).partitions_def
    date_keys = partitions.partitions_defs[0].partitions_def.get_partition_keys()

    assert "2024-07-04" not in date_keys
    assert "2024-12-25" not in date_keys
    assert {"2024-07-03", "2024-07-05", "2024-12-24"} <= set(date_keys)


def test_bad_rows_are_quarantined_and_counted_while_the_rest_is_stored(pipeline, monkeypatch):
    original = SyntheticProvider.fetch_bars

    def with_defects(self, request):
        # Break two of the three sessions the way vendors do: a missing close and a high
        # below the close. The adapter's own output is real; only the values are damaged.
        result = original(self, request)
        row = pl.int_range(pl.len())
        result.frame = result.frame.with_columns(
            pl.when(row == 0).then(None).otherwise(pl.col("close")).alias("close"),
            pl.when(row == 2).then(pl.col("low")).otherwise(pl.col("high")).alias("high"),
        ).with_columns(
            pl.when(row == 2).then(pl.col("low") * 1.01).otherwise(pl.col("close")).alias("close")
        )
        return result

    monkeypatch.setattr(SyntheticProvider, "fetch_bars", with_defects)
    summary = pipeline.run(["bars_1d"], SESSIONS, ["AAPL"])

    assert summary.datasets["bars_1d"].quarantined == 2
    assert summary.datasets["bars_1d"].rows == 1
    daily = pipeline.market().bars("AAPL", "2024-03-01", "2024-03-12", "1d")
    assert daily["ts"].dt.date().to_list() == [SESSIONS[1]]
    lake = PlatformResource(data_dir=str(pipeline.data_dir)).lake()
    quarantined = lake.read_quarantine(
        "bars_1d", ["AAPL"], dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 12)
    )
    assert quarantined.sort("ts")["rule"].to_list() == ["null_price", "high_below_open_close"]
    assert quarantined["source"].to_list() == ["synthetic", "synthetic"]


def test_one_unknown_symbol_is_reported_while_the_others_are_stored(tmp_path):
    pipeline = make_pipeline(tmp_path, provider_settings={"unknown_symbols": ["NOPE"]})

    summary = pipeline.run(["bars_1d"], SESSIONS, ["AAPL", "NOPE", "MSFT"], expect_failure=True)

    stats = summary.datasets["bars_1d"]
    assert set(stats.failed_symbols) == {"NOPE"}
    assert "NOPE" in stats.failed_symbols["NOPE"]
    assert stats.partitions == 6
    daily = pipeline.market().bars(["AAPL", "MSFT", "NOPE"], "2024-03-01", "2024-03-12", "1d")
    assert daily.group_by("symbol").len().sort("symbol").rows() == [("AAPL", 3), ("MSFT", 3)]
    failed, materialized = partition_status(pipeline, "bars_1d")
    assert failed == {f"{d}|NOPE" for d in SESSIONS}
    assert materialized == {f"{d}|{s}" for d in SESSIONS for s in ("AAPL", "MSFT")}


def test_a_failed_symbol_leaves_its_stored_rows_untouched(tmp_path):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(["bars_1d"], SESSIONS, ["AAPL", "MSFT"])
    before = pipeline.market().bars(["AAPL", "MSFT"], "2024-03-01", "2024-03-12", "1d")
    (tmp_path / "failing").mkdir()
    failing = make_pipeline(tmp_path / "failing", provider_settings={"unknown_symbols": ["MSFT"]})
    failing.config = dataclasses.replace(failing.config, data_dir=str(pipeline.data_dir))
    failing.instance = pipeline.instance

    summary = failing.run(["bars_1d"], SESSIONS, ["AAPL", "MSFT"], expect_failure=True)

    assert set(summary.datasets["bars_1d"].failed_symbols) == {"MSFT"}
    after = pipeline.market().bars(["AAPL", "MSFT"], "2024-03-01", "2024-03-12", "1d")
    assert after.group_by("symbol").len().sort("symbol").rows() == [("AAPL", 3), ("MSFT", 3)]
    assert after.filter(pl.col("symbol") == "MSFT").equals(
        before.filter(pl.col("symbol") == "MSFT")
    )
    failed, _ = partition_status(pipeline, "bars_1d")
    assert failed == {f"{d}|MSFT" for d in SESSIONS}


def test_pipeline_writes_postgresql_when_a_dsn_is_configured(tmp_path, pg_dsn, timescale_store):
    pipeline = make_pipeline(tmp_path, dsn=pg_dsn)

    pipeline.run(MINUTE_ASSETS, SESSIONS[:1], ["AAPL", "MSFT"])
    pipeline.run(MINUTE_ASSETS, SESSIONS[:1], ["AAPL", "MSFT"])  # idempotent re-run

    market = MarketData(root=pipeline.data_dir, dsn=pg_dsn)
    for granularity, per_session in (("1m", 390), ("5m", 78), ("1h", 7)):
        from_pg = market.bars(
            ["AAPL", "MSFT"], "2024-03-07", "2024-03-08", granularity, store="timescale"
        )
        from_lake = market.bars(["AAPL", "MSFT"], "2024-03-07", "2024-03-08", granularity)
        assert len(from_pg) == 2 * per_session
        assert from_pg.equals(from_lake), granularity


def test_pipeline_writes_an_s3_lake(tmp_path, s3_server, s3_lake):
    pipeline = make_pipeline(tmp_path)
    lake_root = s3_lake.root
    pipeline.config = dataclasses.replace(
        pipeline.config, data_dir=lake_root, s3_endpoint_url=s3_server, s3_region="us-east-1"
    )

    pipeline.run(["bars_1m", "bars_1h", "bars_1d"], SESSIONS[:2], ["AAPL"])

    market = MarketData(root=lake_root, s3_endpoint_url=s3_server, s3_region="us-east-1")
    assert len(market.bars("AAPL", "2024-03-07", "2024-03-09", "1m")) == 2 * 390
    assert len(market.bars("AAPL", "2024-03-07", "2024-03-09", "1h")) == 2 * 7
    assert len(market.bars("AAPL", "2024-03-07", "2024-03-09", "1d")) == 2


def test_failover_fetches_the_primarys_failed_symbol_from_the_backup(tmp_path):
    pipeline = make_pipeline(
        tmp_path, provider_settings={"unknown_symbols": ["MSFT"]}, backup={"seed": 11}
    )

    summary = pipeline.run(["bars_1d"], SESSIONS, ["AAPL", "MSFT"])

    assert summary.datasets["bars_1d"].failed_symbols == {}
    daily = pipeline.market().bars(["AAPL", "MSFT"], "2024-03-01", "2024-03-12", "1d")
    sources = dict(daily.group_by("symbol").agg(pl.col("source").unique()).rows())
    assert sources == {"AAPL": ["synthetic"], "MSFT": ["backup"]}
    metadata = step_metadata(pipeline.instance, summary.run_ids[0])["bars_1d"]
    assert metadata["source"] == "synthetic,backup"
    outcomes = [(a["provider"], a["outcome"]) for a in metadata["provider_attempts"]]
    assert ("backup", "ok") in outcomes
    records = pipeline.instance.fetch_materializations(AssetKey("bars_1d"), limit=10).records
    by_partition = {
        record.partition_key: record.asset_materialization.metadata["source"].value
        for record in records
    }
    assert by_partition[f"{SESSIONS[0]}|MSFT"] == "backup"
    assert by_partition[f"{SESSIONS[0]}|AAPL"] == "synthetic"


def test_provider_tag_pins_one_provider_for_a_run(tmp_path):
    pipeline = make_pipeline(tmp_path, backup={"seed": 11})
    defs = build_definitions(pipeline.config)

    summary = materialize_rectangle(
        defs,
        pipeline.instance,
        [AssetKey("bars_1d")],
        SESSIONS,
        ["AAPL"],
        10,
        tags={PROVIDER_TAG: "backup"},
    )

    assert not summary.failed_runs
    daily = pipeline.market().bars("AAPL", "2024-03-01", "2024-03-12", "1d")
    assert daily["source"].unique().to_list() == ["backup"]


def test_bucket_partitions_resolve_to_their_member_symbols(tmp_path):
    members = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
    pipeline = make_pipeline(
        tmp_path,
        universes={"wide": {"symbols": members, "partitioning": "bucket", "buckets": 2}},
    )
    keys = pipeline.config.symbol_partitions.keys

    summary = pipeline.run(["bars_1d"], SESSIONS[:2], keys)

    assert keys == ["wide~000", "wide~001"]
    assert summary.datasets["bars_1d"].partitions == 4  # 2 sessions x 2 buckets
    daily = pipeline.market().bars(members, "2024-03-07", "2024-03-09", "1d")
    assert daily.group_by("symbol").len().sort("symbol").rows() == [(m, 2) for m in members]


def test_progress_counts_partitions_as_each_step_records_them(pipeline):
    defs = build_definitions(pipeline.config)
    calls: list[tuple[int, int]] = []

    materialize_rectangle(
        defs,
        pipeline.instance,
        [AssetKey("bars_1m"), AssetKey("bars_5m")],
        SESSIONS,
        SYMBOLS,
        sessions_per_run=2,
        on_progress=lambda done, total: calls.append((done, total)),
    )

    # Two runs (2 + 1 sessions) x 3 symbols x 2 assets: each step reports its batch.
    assert calls == [(6, 18), (12, 18), (12, 18), (15, 18), (18, 18), (18, 18)]
