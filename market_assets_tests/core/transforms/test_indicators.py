"""TA-Lib indicators on trailing windows: equal to TA-Lib called directly, null until filled."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib

from market_assets.core.calendar import get_calendar
from market_assets.core.errors import ConfigError
from market_assets.core.transforms.adjust import adjust_with_actions
from market_assets.core.transforms.indicators import (
    IndicatorsConfig,
    compute_indicators,
    indicators_wide,
    load_indicators_config,
)
from market_assets_tests.helpers import make_bars

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.fixture(scope="module")
def config() -> IndicatorsConfig:
    return load_indicators_config(REPO_CONFIGS)


@pytest.fixture(scope="module")
def adjusted() -> pl.DataFrame:
    sessions = get_calendar().sessions("2022-01-03", "2023-06-30")
    bars = make_bars(["AAA", "BBB"], sessions, seed=3)
    frame, _ = adjust_with_actions(bars, pl.DataFrame())
    return frame


def test_repository_config_lists_the_issue_indicators(config):
    assert config.lookback_sessions == 300
    assert config.names() == [
        "sma_20", "sma_50", "sma_200", "ema_12", "ema_26",
        "macd_12_26_9_line", "macd_12_26_9_signal", "macd_12_26_9_hist", "rsi_14",
        "bbands_20_2_upper", "bbands_20_2_middle", "bbands_20_2_lower", "atr_14",
    ]  # fmt: skip


def test_indicators_equal_talib_called_directly_on_the_same_window(adjusted, config):
    one = adjusted.filter(pl.col("symbol") == "AAA")
    last = one["ts"][-1].date()
    wide = indicators_wide(compute_indicators(adjusted, config, [last]))

    window = one.tail(config.lookback_sessions)
    high, low, close = (window[c].to_numpy() for c in ("adj_high", "adj_low", "adj_close"))
    macd, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    expected = {
        "sma_20": talib.SMA(close, 20)[-1],
        "sma_200": talib.SMA(close, 200)[-1],
        "ema_26": talib.EMA(close, 26)[-1],
        "macd_12_26_9_line": macd[-1],
        "macd_12_26_9_signal": signal[-1],
        "macd_12_26_9_hist": hist[-1],
        "rsi_14": talib.RSI(close, 14)[-1],
        "bbands_20_2_upper": upper[-1],
        "bbands_20_2_lower": lower[-1],
        "atr_14": talib.ATR(high, low, close, 14)[-1],
    }
    row = wide.filter(pl.col("symbol") == "AAA").row(0, named=True)
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, abs=1e-9, rel=0), name


def test_indicators_before_the_lookback_is_filled_are_null_not_zero(adjusted, config):
    first_sessions = adjusted.filter(pl.col("symbol") == "AAA").head(60)
    wide = indicators_wide(compute_indicators(first_sessions, config))

    assert wide["sma_20"].null_count() == 19
    assert wide["sma_50"].null_count() == 49
    assert wide["sma_200"].null_count() == 60
    assert wide["rsi_14"].null_count() == 14
    assert wide["macd_12_26_9_signal"].null_count() == 33
    assert (wide["sma_20"].drop_nulls() > 0).all()


def test_indicators_of_a_session_do_not_depend_on_where_the_run_started(adjusted, config):
    sessions = sorted(set(adjusted["ts"].dt.date().to_list()))
    target = sessions[-20:]

    whole = compute_indicators(adjusted, config, target)
    window_only = compute_indicators(
        adjusted.filter(pl.col("ts").dt.date() >= sessions[-(20 + config.lookback_sessions)]),
        config,
        target,
    )

    assert whole.equals(window_only)


def test_load_indicators_config_given_an_unknown_function_names_file_and_key(tmp_path):
    (tmp_path / "indicators.yaml").write_text(
        "lookback_sessions: 50\nindicators:\n  - {name: x, function: NOPE}\n"
    )

    with pytest.raises(ConfigError, match=r"indicators.yaml: indicators.0: .*NOPE"):
        load_indicators_config(tmp_path)


def test_load_indicators_config_given_a_window_shorter_than_the_lookback_refuses_it(tmp_path):
    (tmp_path / "indicators.yaml").write_text(
        "lookback_sessions: 100\nindicators:\n"
        "  - {name: sma_200, function: SMA, params: {timeperiod: 200}}\n"
    )

    with pytest.raises(ConfigError, match="sma_200 needs 200 sessions"):
        load_indicators_config(tmp_path)


def test_indicators_wide_given_names_keeps_only_those_columns_in_order(adjusted, config):
    long = compute_indicators(adjusted, config, [dt.date(2023, 6, 30)])

    wide = indicators_wide(long, ["rsi_14", "sma_20"])

    assert wide.columns == ["symbol", "ts", "rsi_14", "sma_20"]
    assert wide["symbol"].to_list() == ["AAA", "BBB"]
    assert not np.isnan(wide["rsi_14"].to_numpy()).any()
