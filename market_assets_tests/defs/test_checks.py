"""The `quality` checks through Dagster: per-partition records, blocking, buckets, alerts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    SkipReason,
    build_sensor_context,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.base import PartitionKeyFilter

from market_assets.core.config import AppConfig
from market_assets.core.errors import StoreError
from market_assets.core.providers.base import BarRequest, FetchResult
from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets.core.stores.check_results import CheckResultsStore
from market_assets.core.stores.lake import ParquetLake
from market_assets.definitions import build_definitions
from market_assets.defs.automation.alerts import (
    WEBHOOK_ENV,
    AlertWebhookResource,
    build_alert_sensor,
)
from market_assets.defs.checks.bars import _evaluations_by_key, partition_evaluation
from market_assets.defs.resources import PlatformResource
from market_assets.defs.runner import RunSummary, materialize_rectangle

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MINUTE_ASSETS = ["bars_1m", "bars_5m", "bars_15m", "bars_1h"]
SESSIONS = [dt.date(2024, 3, 7), dt.date(2024, 3, 8)]


@dataclasses.dataclass
class QualityPipeline:
    config: AppConfig
    instance: DagsterInstance
    data_dir: Path

    def run(self, assets: list[str], sessions: list[dt.date], keys: list[str]) -> RunSummary:
        return materialize_rectangle(
            build_definitions(self.config),
            self.instance,
            [AssetKey(a) for a in assets],
            sessions,
            keys,
            sessions_per_run=10,
        )

    def platform(self) -> PlatformResource:
        return PlatformResource(config_dir=str(self.config.config_dir), data_dir=str(self.data_dir))

    def partition_status(self, dataset: str) -> dict[str, AssetCheckExecutionRecordStatus]:
        infos = self.instance.event_log_storage.get_asset_check_partition_info(
            [AssetCheckKey(AssetKey(dataset), "quality")]
        )
        return {info.partition_key: info.latest_execution_status for info in infos}

    def evaluations(self, run_id: str) -> list:
        records = self.instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        return [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]

    def stored_results(self, dataset: str) -> pl.DataFrame:
        return CheckResultsStore(ParquetLake(str(self.data_dir))).read([dataset], [2024])


def make_quality_pipeline(tmp_path: Path, universes: dict | None = None) -> QualityPipeline:
    config_dir = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, config_dir)
    if universes:
        (config_dir / "universes.yaml").write_text(yaml.safe_dump({"universes": universes}))
    config = dataclasses.replace(
        AppConfig.load(config_dir), data_dir=str(tmp_path / "data"), timescale_dsn=None
    )
    return QualityPipeline(config, DagsterInstance.ephemeral(), tmp_path / "data")


@pytest.fixture
def pipeline(tmp_path) -> QualityPipeline:
    return make_quality_pipeline(tmp_path)


def _damage(
    monkeypatch: pytest.MonkeyPatch,
    symbol: str,
    transform: Callable[[pl.DataFrame], pl.DataFrame],
) -> None:
    """Make the synthetic vendor return `symbol`'s minute bars through `transform`."""
    original = SyntheticProvider.fetch_bars

    def damaged(self: SyntheticProvider, request: BarRequest) -> FetchResult:
        result = original(self, request)
        if request.granularity == "1m":
            mine = result.frame.filter(pl.col("symbol") == symbol)
            others = result.frame.filter(pl.col("symbol") != symbol)
            result.frame = pl.concat([others, transform(mine)]).sort("symbol", "ts")
        return result

    monkeypatch.setattr(SyntheticProvider, "fetch_bars", damaged)


def _zero_volume_move(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 50).then(0).otherwise(pl.col("volume")).alias("volume")
    )


def _hundred_x_block(frame: pl.DataFrame) -> pl.DataFrame:
    block = pl.int_range(pl.len()).is_between(100, 120)
    return frame.with_columns(
        pl.when(block).then(pl.col(c) * 100).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close")
    )


def test_every_bar_asset_has_a_blocking_quality_check_partitioned_like_it(pipeline):
    graph = build_definitions(pipeline.config).resolve_asset_graph()

    for dataset in [*MINUTE_ASSETS, "bars_1d"]:
        key = AssetCheckKey(AssetKey(dataset), "quality")
        check = graph.get(key)
        assert check.blocking, dataset
        assert check.partitions_def == graph.get(AssetKey(dataset)).partitions_def


def test_ranged_run_records_one_current_check_result_per_partition(pipeline):
    summary = pipeline.run(MINUTE_ASSETS, SESSIONS, ["AAPL", "MSFT"])

    assert not summary.failed_runs
    expected_keys = {f"{d}|{s}" for d in ("2024-03-07", "2024-03-08") for s in ("AAPL", "MSFT")}
    for dataset in MINUTE_ASSETS:
        status = pipeline.partition_status(dataset)
        assert set(status) == expected_keys, dataset
        assert set(status.values()) == {AssetCheckExecutionRecordStatus.SUCCEEDED}
        infos = pipeline.instance.event_log_storage.get_asset_check_partition_info(
            [AssetCheckKey(AssetKey(dataset), "quality")]
        )
        assert all(info.is_current for info in infos)
        unpartitioned = pipeline.instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey(dataset), "quality"),
            limit=10,
            partition_filter=PartitionKeyFilter(key=None),
        )
        assert unpartitioned == []
    evaluation = next(
        e
        for e in pipeline.evaluations(summary.run_ids[0])
        if e.asset_key == AssetKey("bars_1m") and e.partition == "2024-03-07|AAPL"
    )
    assert evaluation.passed
    assert evaluation.metadata["score"].value == 100.0
    assert evaluation.metadata["rows"].value == 390
    results = pipeline.stored_results("bars_1m")
    per_partition = results.group_by("symbol", "session").len().sort("session", "symbol")
    # open_vs_previous_close needs a previous close: none is stored before the first session.
    assert per_partition["len"].to_list() == [11, 11, 12, 12]
    assert results["passed"].all()


def test_error_on_bars_1m_blocks_bars_5m_in_the_same_run(pipeline, monkeypatch):
    _damage(monkeypatch, "AAPL", _hundred_x_block)

    summary = pipeline.run(["bars_1m", "bars_5m"], SESSIONS[:1], ["AAPL", "MSFT"])

    assert len(summary.failed_runs) == 1
    materialized = pipeline.instance.get_materialized_partitions(AssetKey("bars_1m"))
    assert materialized == {"2024-03-07|AAPL", "2024-03-07|MSFT"}
    assert pipeline.instance.get_materialized_partitions(AssetKey("bars_5m")) == set()
    assert pipeline.partition_status("bars_1m") == {
        "2024-03-07|AAPL": AssetCheckExecutionRecordStatus.FAILED,
        "2024-03-07|MSFT": AssetCheckExecutionRecordStatus.SUCCEEDED,
    }
    failed = next(e for e in pipeline.evaluations(summary.run_ids[0]) if not e.passed)
    assert failed.severity is AssetCheckSeverity.ERROR
    assert failed.partition == "2024-03-07|AAPL"
    assert failed.metadata["failed_rules"].value["unit_errors"]["offending_rows"] == 21
    assert failed.metadata["score"].value == 60.0
    stored = pipeline.stored_results("bars_1m").filter(~pl.col("passed"))
    assert stored.select("symbol", "rule", "severity", "offending_rows").rows() == [
        ("AAPL", "unit_errors", "ERROR", 21)
    ]


def test_error_with_nothing_downstream_in_the_run_is_recorded_without_failing_the_run(
    pipeline, monkeypatch
):
    _damage(monkeypatch, "AAPL", _hundred_x_block)

    summary = pipeline.run(["bars_1m"], SESSIONS[:1], ["AAPL"])

    assert summary.failed_runs == []
    failed = pipeline.evaluations(summary.run_ids[0])[0]
    assert (failed.passed, failed.severity, failed.blocking) == (
        False,
        AssetCheckSeverity.ERROR,
        False,
    )
    assert pipeline.partition_status("bars_1m") == {
        "2024-03-07|AAPL": AssetCheckExecutionRecordStatus.FAILED
    }


def test_warn_failure_is_recorded_but_does_not_block_downstream(pipeline, monkeypatch):
    _damage(monkeypatch, "MSFT", _zero_volume_move)

    summary = pipeline.run(["bars_1m", "bars_5m"], SESSIONS[:1], ["AAPL", "MSFT"])

    assert not summary.failed_runs
    assert pipeline.instance.get_materialized_partitions(AssetKey("bars_5m")) == {
        "2024-03-07|AAPL",
        "2024-03-07|MSFT",
    }
    warned = [e for e in pipeline.evaluations(summary.run_ids[0]) if not e.passed]
    assert [(e.asset_key.path[-1], e.partition, e.severity) for e in warned] == [
        ("bars_1m", "2024-03-07|MSFT", AssetCheckSeverity.WARN)
    ]
    assert "zero_volume_moves" in warned[0].description


def test_bucket_keys_get_one_evaluation_each_and_per_symbol_results(tmp_path):
    members = ["AAA", "BBB", "CCC", "DDD"]
    pipeline = make_quality_pipeline(
        tmp_path, universes={"wide": {"symbols": members, "partitioning": "bucket", "buckets": 2}}
    )
    keys = pipeline.config.symbol_partitions.keys

    summary = pipeline.run(["bars_1d"], SESSIONS, keys)

    assert not summary.failed_runs
    status = pipeline.partition_status("bars_1d")
    assert set(status) == {f"{d}|{k}" for d in ("2024-03-07", "2024-03-08") for k in keys}
    evaluation = pipeline.evaluations(summary.run_ids[0])[0]
    assert evaluation.metadata["symbols"].value == len(
        pipeline.config.symbol_partitions.symbols_for_key(evaluation.partition.split("|")[1])
    )
    results = pipeline.stored_results("bars_1d")
    assert sorted(results["symbol"].unique()) == members
    assert set(results["partition_key"].unique()) == set(status)


def test_evaluations_of_many_keys_equal_the_per_key_evaluation(tmp_path, monkeypatch):
    # Arrange: bucket keys of several symbols, one bucket with an ERROR (AAA's 100x block),
    # one with a WARN (CCC's zero-volume move), and a key without result rows.
    _damage(monkeypatch, "AAA", _hundred_x_block)
    _damage(monkeypatch, "CCC", _zero_volume_move)
    members = ["AAA", "BBB", "CCC", "DDD", "EEE"]
    pipeline = make_quality_pipeline(
        tmp_path, universes={"wide": {"symbols": members, "partitioning": "bucket", "buckets": 3}}
    )
    keys = pipeline.config.symbol_partitions.keys
    pipeline.run(["bars_1m"], SESSIONS[:2], keys)
    rows = pipeline.stored_results("bars_1m")
    partition_keys = [*sorted(rows["partition_key"].unique()), "2024-03-11|nothing"]
    check_key = AssetCheckKey(AssetKey("bars_1m"), "quality")
    targets = {
        partition_keys[0]: AssetCheckEvaluationTargetMaterializationData(
            storage_id=7, run_id="run", timestamp=1.5
        )
    }

    # Act
    together = list(_evaluations_by_key(check_key, rows, partition_keys, targets, True))

    # Assert
    one_by_one = [
        partition_evaluation(
            check_key, key, rows.filter(pl.col("partition_key") == key), targets, True
        )
        for key in partition_keys
    ]
    assert together == one_by_one
    assert {e.passed for e in together} == {True, False}
    assert {e.severity for e in together if not e.passed} == {
        AssetCheckSeverity.ERROR,
        AssetCheckSeverity.WARN,
    }


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def webhook(monkeypatch) -> Iterator[list[dict]]:
    """A real HTTP server on 127.0.0.1 collecting the JSON bodies POSTed to it."""
    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_address[1]}/hooks/quality")
    try:
        yield _Hook.received
    finally:
        server.shutdown()
        server.server_close()


def _tick(
    pipeline: QualityPipeline, cursor: str | None = None
) -> tuple[SkipReason | None, str | None]:
    sensor = build_alert_sensor(MINUTE_ASSETS + ["bars_1d"])
    with build_sensor_context(
        instance=pipeline.instance,
        cursor=cursor,
        resources={"platform": pipeline.platform(), "alert_webhook": AlertWebhookResource()},
    ) as context:
        result = sensor(context)
        return result, context.cursor


def test_alert_sensor_posts_error_failures_and_low_feed_scores_once(pipeline, monkeypatch, webhook):
    _damage(monkeypatch, "AAPL", _hundred_x_block)
    pipeline.run(["bars_1m"], SESSIONS[:1], ["AAPL", "MSFT"])

    first, cursor = _tick(pipeline)
    second, _ = _tick(pipeline, cursor)

    assert isinstance(first, SkipReason) and "2 alert(s)" in first.skip_message
    assert len(webhook) == 1
    alerts = webhook[0]["alerts"]
    assert webhook[0]["source"] == "market-assets"
    assert alerts[0] == {
        "kind": "check_failed",
        "dataset": "bars_1m",
        "partition": "2024-03-07|AAPL",
        "symbol": "AAPL",
        "session": "2024-03-07",
        "score": 60.0,
        "rules": [{"rule": "unit_errors", "offending_rows": 21}],
    }
    assert alerts[1] == {
        "kind": "feed_score_low",
        "dataset": "bars_1m",
        "source": "synthetic",
        "month": "2024-03",
        "score": 80.0,
        "partitions": 2,
        "partitions_with_errors": 1,
        "threshold": 90.0,
    }
    assert isinstance(second, SkipReason) and "no new" in second.skip_message
    assert len(webhook) == 1


def test_alert_sensor_keeps_its_cursor_when_the_webhook_is_unreachable(pipeline, monkeypatch):
    _damage(monkeypatch, "AAPL", _hundred_x_block)
    pipeline.run(["bars_1m"], SESSIONS[:1], ["AAPL"])
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/unreachable")

    result, cursor = _tick(pipeline)

    assert "not delivered" in result.skip_message
    assert "127.0.0.1:9" not in result.skip_message  # the URL may carry a token
    assert cursor is None


def test_corrupt_daily_file_does_not_fail_a_minute_bar_run_of_another_dataset(pipeline):
    # Arrange: daily bars stored, then AAPL's daily file is overwritten with garbage.
    assert not pipeline.run(["bars_1d"], SESSIONS, ["AAPL", "MSFT"]).failed_runs
    lake = ParquetLake(str(pipeline.data_dir))
    bad = Path(lake.uri_for("bars_1d", "AAPL", SESSIONS[0]))
    bad.write_bytes(b"not parquet at all")
    # Act
    summary = pipeline.run(["bars_1m"], SESSIONS, ["AAPL", "MSFT"])
    # Assert: the minute bars are stored and judged; the daily file is named, not fatal.
    assert not summary.failed_runs
    assert lake.read("bars_1m", ["AAPL", "MSFT"], SESSIONS[0], dt.date(2024, 3, 9)).height == 1560
    status = pipeline.partition_status("bars_1m")
    assert len(status) == 4
    with pytest.raises(StoreError, match=f"cannot read {bad}"):
        lake.read("bars_1d", ["AAPL", "MSFT"], SESSIONS[0], dt.date(2024, 3, 9))
