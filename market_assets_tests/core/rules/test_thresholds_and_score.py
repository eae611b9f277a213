"""checks.yaml loading and layering, rule selection, and the quality score."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from market_assets.core.errors import ConfigError
from market_assets.core.rules import CheckThresholds, load_thresholds
from market_assets.core.rules.score import feed_scores
from market_assets_tests.core.rules.builders import (
    daily,
    failed,
    judge,
    minute,
    scale_prices,
    sessions,
)

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_repository_checks_yaml_loads_with_its_granularity_overrides():
    thresholds = load_thresholds(REPO_CONFIGS)

    assert thresholds.resolve("bars_1m", "1m").stale_prices.min_run == 30
    assert thresholds.resolve("bars_1d", "1d").stale_prices.min_run == 5
    assert thresholds.resolve("bars_1d", "1d").unit_errors.severity == "ERROR"
    assert thresholds.score.weights["ERROR"] == 40.0


def test_layers_apply_defaults_then_granularity_then_dataset_then_symbol():
    thresholds = CheckThresholds.from_mapping(
        {
            "bars": {
                "defaults": {"stale_prices": {"min_run": 5}},
                "granularities": {"1m": {"stale_prices": {"min_run": 30}}},
                "datasets": {"bars_1m": {"stale_prices": {"min_run": 40}}},
                "symbols": {"BRK.A": {"stale_prices": {"min_run": 90, "severity": "ERROR"}}},
            }
        }
    )

    assert thresholds.resolve("bars_5m", "5m").stale_prices.min_run == 5
    assert thresholds.resolve("bars_1h", "1m").stale_prices.min_run == 30
    assert thresholds.resolve("bars_1m", "1m").stale_prices.min_run == 40
    brk = thresholds.resolve("bars_1m", "1m", "BRK.A").stale_prices
    assert (brk.min_run, brk.severity) == (90, "ERROR")
    assert thresholds.resolve("bars_1m", "1m", "AAPL") is thresholds.resolve("bars_1m", "1m")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "bars:\n  symbols:\n    AAPL:\n      stale_prices: {min_run: 0}\n",
            "bars.symbols.AAPL.stale_prices.min_run",
        ),
        ("bars:\n  defaults:\n    stale_pricez: {min_run: 3}\n", "bars.defaults.stale_pricez"),
        ("bars:\n  granularities:\n    2m: {}\n", "bars.granularities.2m: unknown granularity"),
        ("score:\n  weights: {ERROR: 40}\n", "score.weights"),
        ("bars: [\n", "not valid YAML"),
    ],
)
def test_bad_checks_yaml_fails_fast_naming_file_and_key(tmp_path, content, message):
    (tmp_path / "checks.yaml").write_text(content)

    with pytest.raises(ConfigError) as raised:
        load_thresholds(tmp_path)

    assert "checks.yaml" in str(raised.value)
    assert message in str(raised.value)


def test_missing_checks_yaml_means_the_built_in_defaults_which_equal_the_shipped_file(
    tmp_path,
):
    built_in = load_thresholds(tmp_path)
    shipped = load_thresholds(REPO_CONFIGS)

    for granularity in ("1m", "5m", "15m", "1h", "1d"):
        dataset = f"bars_{granularity}"
        assert built_in.resolve(dataset, granularity) == shipped.resolve(dataset, granularity)
    assert built_in.score == shipped.score
    assert built_in.resolve("bars_1m", "1m").stale_prices.min_run == 30


def test_symbol_override_changes_only_that_symbols_verdict():
    bars = daily(("AAA", "BBB"))
    frozen = bars.with_columns(
        pl.when(pl.col("ts").dt.date().is_between(*sessions("2024-03-01", 8)[::7]))
        .then(pl.lit(100.0))
        .otherwise(pl.col("close"))
        .alias("close")
    ).with_columns(
        pl.max_horizontal("high", "close").alias("high"),
        pl.min_horizontal("low", "close").alias("low"),
        pl.col("open").clip(0.01),
    )
    thresholds = CheckThresholds.from_mapping(
        {"bars": {"symbols": {"AAA": {"stale_prices": {"min_run": 20}}}}}
    )

    report = judge(frozen, thresholds=thresholds)

    assert failed(report, "stale_prices")["symbol"].unique().to_list() == ["BBB"]


def test_disabled_rule_produces_no_results():
    thresholds = CheckThresholds.from_mapping(
        {"bars": {"defaults": {"missing_bars": {"enabled": False}}}}
    )

    report = judge(minute(count=1), "1m", thresholds=thresholds)

    assert "missing_bars" not in report.results["rule"].to_list()


def test_score_takes_40_per_error_and_10_per_warning():
    bars = daily()
    days = sessions("2024-01-02", 120)
    # one ERROR (100x bar) and, on another day, one WARN (a reverting spike)
    broken = scale_prices(bars, pl.col("ts").dt.date() == days[30], 100.0)
    broken = scale_prices(broken, pl.col("ts").dt.date() == days[90], 0.9)

    report = judge(broken)

    scores = dict(report.partitions.select(pl.col("session"), "score").iter_rows())
    assert scores[days[30]] == 60.0
    assert scores[days[90]] == 90.0
    assert scores[days[10]] == 100.0
    row = report.partitions.filter(pl.col("session") == days[30]).row(0, named=True)
    assert (row["errors"], row["warnings"]) == (1, 0)


def test_feed_score_is_the_mean_partition_score_per_dataset_source_and_month():
    partitions = pl.DataFrame(
        {
            "dataset": ["bars_1d"] * 4,
            "source": ["synthetic"] * 3 + ["yfinance"],
            "session": [
                dt.date(2024, 1, 2),
                dt.date(2024, 1, 3),
                dt.date(2024, 2, 1),
                dt.date(2024, 1, 2),
            ],
            "score": [100.0, 60.0, 90.0, 100.0],
            "errors": [0, 1, 0, 0],
        }
    )

    feeds = feed_scores(partitions)

    assert feeds.select("source", "month", "score", "partitions_with_errors").rows() == [
        ("synthetic", "2024-01", 80.0, 1),
        ("synthetic", "2024-02", 90.0, 0),
        ("yfinance", "2024-01", 100.0, 0),
    ]
