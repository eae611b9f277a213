"""The synthetic provider: deterministic, realistic-looking, generated (not real) data."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys

import polars as pl
import pytest

from market_assets.core.providers import synthetic
from market_assets.core.providers.base import (
    ActionsRequest,
    BarRequest,
    TransientError,
    UnknownSymbolError,
)
from market_assets.core.providers.synthetic import SyntheticProvider, synthetic_bars
from market_assets.core.schemas import ACTION_SCHEMA, BAR_SCHEMA, BarModel
from market_assets.core.stores.layout import layout_for
from market_assets.core.transforms.resample import resample_bars, session_schedule

D = dt.date
NEW_YORK = "America/New_York"
# Generated profiles with seed 7 (asserted below through fetch_actions, not assumed).
SPLIT_SYMBOL = "SYM1"  # 2:1 on 1990-12-12 and 1992-03-06, 4:1 on 2016-02-17; pays dividends
REVERSE_SPLIT_SYMBOL = "SYM11"  # 1-for-10 on 2015-06-22


def bars(symbols: tuple[str, ...], granularity: str, start: D, end: D, **kwargs) -> pl.DataFrame:
    request = BarRequest(f"bars_{granularity}", symbols, granularity, start, end)
    return SyntheticProvider(**kwargs).fetch_bars(request).frame


def session() -> pl.Expr:
    """The New York session date of an intraday bar."""
    return layout_for("bars_1m").session_expr()


def checksum(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()


def test_fetch_bars_returns_the_same_session_whatever_range_was_requested() -> None:
    wide = bars(("AAPL", "MSFT"), "1m", D(2024, 1, 2), D(2024, 3, 1))
    narrow = bars(("MSFT", "AAPL"), "1m", D(2024, 2, 1), D(2024, 2, 2))

    wide_day = wide.filter(pl.col("ts").dt.convert_time_zone(NEW_YORK).dt.date() == D(2024, 2, 1))
    assert narrow.height == 2 * 390
    assert wide_day.equals(narrow)


def test_daily_bars_are_the_same_whatever_range_was_requested() -> None:
    long_history = bars(("SPY",), "1d", D(2005, 1, 1), D(2024, 6, 1))
    one_day = bars(("SPY",), "1d", D(2024, 2, 1), D(2024, 2, 2))

    assert one_day.equals(long_history.filter(pl.col("ts").dt.date() == D(2024, 2, 1)))


def test_daily_bars_of_many_symbols_equal_each_symbol_generated_alone() -> None:
    together = bars(("MSFT", "AAPL", "BRK.B"), "1d", D(2020, 1, 1), D(2024, 6, 1))
    alone = pl.concat(
        synthetic_bars(symbol, "1d", D(2020, 1, 1), D(2024, 6, 1))
        for symbol in ("AAPL", "BRK.B", "MSFT")
    )

    assert together.height == 3 * 1111
    assert together.equals(alone)


def test_fetch_bars_gives_identical_bars_in_a_fresh_process() -> None:
    script = (
        "import datetime as dt, hashlib\n"
        "from market_assets.core.providers.synthetic import synthetic_bars\n"
        "frame = synthetic_bars('QQQ', '1m', dt.date(2024, 5, 6), dt.date(2024, 5, 7), seed=11)\n"
        "print(hashlib.sha256(frame.write_csv().encode()).hexdigest())\n"
    )
    here = checksum(synthetic_bars("QQQ", "1m", D(2024, 5, 6), D(2024, 5, 7), seed=11))

    there = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert there == here


def test_different_seeds_give_different_prices() -> None:
    seven = bars(("AAPL",), "1d", D(2024, 1, 2), D(2024, 1, 10), seed=7)
    eight = bars(("AAPL",), "1d", D(2024, 1, 2), D(2024, 1, 10), seed=8)

    assert seven.height == eight.height == 6
    assert seven.get_column("close").to_list() != eight.get_column("close").to_list()


def test_regular_session_has_390_minute_bars_from_the_open() -> None:
    winter = bars(("AAPL",), "1m", D(2024, 1, 17), D(2024, 1, 18))
    summer = bars(("AAPL",), "1m", D(2024, 7, 17), D(2024, 7, 18))

    assert winter.height == summer.height == 390
    assert winter.get_column("ts").min() == dt.datetime(2024, 1, 17, 14, 30, tzinfo=dt.UTC)
    assert winter.get_column("ts").max() == dt.datetime(2024, 1, 17, 20, 59, tzinfo=dt.UTC)
    assert summer.get_column("ts").min() == dt.datetime(2024, 7, 17, 13, 30, tzinfo=dt.UTC)
    assert winter.get_column("ts").diff().drop_nulls().unique().to_list() == [
        dt.timedelta(minutes=1)
    ]


def test_early_close_has_210_minute_bars_and_holiday_has_none() -> None:
    frame = bars(("AAPL",), "1m", D(2024, 7, 1), D(2024, 12, 1))
    per_session = dict(frame.group_by(session().alias("session")).len().iter_rows())

    assert per_session[D(2024, 11, 29)] == 210
    assert per_session[D(2024, 7, 3)] == 210
    assert per_session[D(2024, 7, 5)] == 390
    assert D(2024, 7, 4) not in per_session
    assert D(2024, 11, 28) not in per_session


def minute_aggregate(minutes: pl.DataFrame) -> pl.DataFrame:
    """Each (symbol, session)'s minute bars aggregated the way a daily bar is defined."""
    return (
        minutes.group_by("symbol", session().alias("session"), maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("trade_count").sum(),
            ((pl.col("vwap") * pl.col("volume")).sum() / pl.col("volume").sum()).alias("vwap"),
            pl.len().alias("minutes"),
        )
        .sort("symbol", "session")
    )


def assert_daily_bars_are_the_minute_aggregate(daily: pl.DataFrame, minutes: pl.DataFrame) -> None:
    """Open, high, low, close, volume and trade count exactly; vwap within 0.1%."""
    expected = minute_aggregate(minutes)
    actual = daily.with_columns(pl.col("ts").dt.date().alias("session")).sort("symbol", "session")

    assert actual.select("symbol", "session").rows() == expected.select("symbol", "session").rows()
    for name in ("open", "high", "low", "close", "volume", "trade_count"):
        assert actual.get_column(name).to_list() == expected.get_column(name).to_list(), name
    assert actual.get_column("vwap").to_list() == pytest.approx(
        expected.get_column("vwap").to_list(), rel=1e-3
    )


def test_daily_bar_equals_the_aggregate_of_its_minute_bars_with_vwap_within_0_1_percent() -> None:
    start, end = D(2024, 11, 25), D(2024, 12, 6)  # includes the 2024-11-29 early close
    minutes = bars(("AAPL", "KO"), "1m", start, end)
    daily = bars(("AAPL", "KO"), "1d", start, end)

    assert_daily_bars_are_the_minute_aggregate(daily, minutes)
    assert daily.height == 2 * 8
    assert daily.get_column("ts").to_list()[0] == dt.datetime(2024, 11, 25, tzinfo=dt.UTC)


def test_minute_bars_aggregate_exactly_to_the_daily_bars_across_a_split_and_early_closes() -> None:
    start, end = D(2015, 11, 24), D(2016, 2, 23)  # SYM1 splits 4:1 on 2016-02-17
    minutes = bars((SPLIT_SYMBOL,), "1m", start, end)
    daily = bars((SPLIT_SYMBOL,), "1d", start, end)
    per_session = dict(minute_aggregate(minutes).select("session", "minutes").iter_rows())

    assert_daily_bars_are_the_minute_aggregate(daily, minutes)
    assert per_session[D(2015, 11, 27)] == per_session[D(2015, 12, 24)] == 210
    assert D(2015, 11, 26) not in per_session and D(2015, 12, 25) not in per_session
    by_session = {row["session"]: row for row in minute_aggregate(minutes).iter_rows(named=True)}
    before, after = by_session[D(2016, 2, 16)], by_session[D(2016, 2, 17)]
    assert before["close"] / after["open"] == pytest.approx(4.0, rel=0.05)


def test_minute_vwaps_reach_the_daily_vwap_at_prices_under_a_dollar() -> None:
    start, end = D(1995, 2, 21), D(1995, 3, 16)  # SYM11 trades near $0.70 (before its 1:10)
    minutes = bars((REVERSE_SPLIT_SYMBOL,), "1m", start, end)
    daily = bars((REVERSE_SPLIT_SYMBOL,), "1d", start, end)

    assert daily.get_column("close").max() < 1.0
    assert_daily_bars_are_the_minute_aggregate(daily, minutes)


def test_minute_bars_are_well_formed_inside_their_daily_bar() -> None:
    minutes = bars(("AAPL", "XOM", REVERSE_SPLIT_SYMBOL), "1m", D(2006, 5, 22), D(2006, 6, 2))

    checks = {
        "volume_at_least_one": pl.col("volume") >= 1,
        "trade_at_least_one": pl.col("trade_count") >= 1,
        "trades_at_most_volume": pl.col("trade_count") <= pl.col("volume"),
        "vwap_inside_bar": pl.col("vwap").is_between(pl.col("low"), pl.col("high")),
        "high_is_highest": pl.col("high") >= pl.max_horizontal("open", "close"),
        "low_is_lowest": pl.col("low") <= pl.min_horizontal("open", "close"),
        "open_is_previous_close": (
            pl.col("open") == pl.col("close").shift().over("symbol", session())
        ).fill_null(True),
    }

    held = minutes.select(**{name: rule.all() for name, rule in checks.items()}).row(0, named=True)

    assert held == dict.fromkeys(checks, True)


def test_daily_bars_are_generated_without_any_minute_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_minutes(*args: object) -> None:
        raise AssertionError("daily bars generated minute bars")

    monkeypatch.setattr(synthetic, "_minute_grid", no_minutes)

    frame = synthetic_bars("NOMINUTE", "1d", D(2006, 1, 1), D(2024, 1, 1))

    assert frame.height == 4529


def test_daily_bars_do_not_depend_on_whether_minute_bars_were_generated() -> None:
    start, end = D(2024, 11, 25), D(2024, 12, 6)
    script = (
        "import datetime as dt, hashlib\n"
        "from market_assets.core.providers.synthetic import synthetic_bars\n"
        "frame = synthetic_bars('FRESH', '1d', dt.date(2024, 11, 25), dt.date(2024, 12, 6))\n"
        "print(hashlib.sha256(frame.write_csv().encode()).hexdigest())\n"
    )
    synthetic._history.cache_clear()
    before = synthetic_bars("FRESH", "1d", start, end)

    synthetic_bars("FRESH", "1m", start, end)
    synthetic_bars("FRESH", "1h", D(2024, 1, 2), end)
    after = synthetic_bars("FRESH", "1d", start, end)
    only_daily = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert after.equals(before)
    assert checksum(after) == only_daily


def test_daily_high_and_low_span_a_realistic_range_around_open_and_close() -> None:
    daily = bars(("AAPL", "KO", "MSFT", "XOM"), "1d", D(2006, 1, 1), D(2024, 1, 1))
    ranges = daily.group_by("symbol").agg(
        (pl.col("high") / pl.col("low")).log().median().alias("range"),
        (pl.col("close") / pl.col("open")).log().abs().median().alias("body"),
        (pl.col("high") > pl.max_horizontal("open", "close")).mean().alias("upper_wick"),
        (pl.col("low") < pl.min_horizontal("open", "close")).mean().alias("lower_wick"),
    )

    assert daily.select(
        (pl.col("high") >= pl.max_horizontal("open", "close")).all(),
        (pl.col("low") <= pl.min_horizontal("open", "close")).all(),
    ).row(0) == (True, True)
    for symbol, median_range, body, upper, lower in ranges.iter_rows():
        assert 0.01 < median_range < 0.05, symbol  # daily volatility 1-3%
        assert 2.0 < median_range / body < 4.5, symbol  # a Brownian session's range vs body
        assert upper > 0.9 and lower > 0.9, symbol


@pytest.mark.parametrize("granularity", ["1m", "5m", "1h", "1d"])
def test_bars_pass_the_canonical_bar_model(granularity: str) -> None:
    frame = bars(
        ("AAPL", "BRK.B", REVERSE_SPLIT_SYMBOL), granularity, D(2024, 3, 4), D(2024, 3, 16)
    )

    BarModel.validate(frame)

    assert frame.schema == BAR_SCHEMA
    assert frame.get_column("source").unique().to_list() == ["synthetic"]
    assert frame.get_column("granularity").unique().to_list() == [granularity]
    assert frame.select((pl.col("vwap").is_between(pl.col("low"), pl.col("high"))).all()).item()


def test_prices_are_rounded_to_cents() -> None:
    frame = bars(("AAPL",), "1m", D(2024, 3, 4), D(2024, 3, 5))

    for name in ("open", "high", "low", "close"):
        cents = frame.get_column(name) * 100
        assert (cents - cents.round()).abs().max() < 1e-6


def test_intraday_volume_is_u_shaped() -> None:
    frame = bars(("AAPL", "XOM"), "1m", D(2024, 4, 1), D(2024, 5, 1))
    minute = frame.with_columns(
        ((pl.col("ts") - pl.col("ts").min().over("symbol", session())).dt.total_minutes()).alias(
            "minute"
        )
    )

    def mean_volume(first: int, last: int) -> float:
        return minute.filter(pl.col("minute").is_between(first, last)).get_column("volume").mean()

    open_, midday, close = mean_volume(0, 29), mean_volume(165, 224), mean_volume(360, 389)
    assert open_ > 1.5 * midday
    assert close > 1.5 * midday


def test_trade_count_is_volume_divided_by_50_to_150() -> None:
    frame = bars(("AAPL",), "1m", D(2024, 4, 1), D(2024, 4, 3)).filter(pl.col("volume") > 1000)

    per_trade = frame.get_column("volume") / frame.get_column("trade_count")

    assert per_trade.min() >= 49.0
    assert per_trade.max() <= 151.0


def test_split_shows_as_a_raw_price_jump_of_the_ratio_and_is_listed() -> None:
    provider = SyntheticProvider()
    actions = provider.fetch_actions(ActionsRequest((SPLIT_SYMBOL,), D(1990, 1, 1), D(2030, 1, 1)))
    splits = actions.frame.filter(pl.col("action_type") == "split")
    daily = provider.fetch_bars(
        BarRequest("bars_1d", (SPLIT_SYMBOL,), "1d", D(1990, 1, 1), D(2026, 1, 1))
    ).frame.with_columns(
        pl.col("ts").dt.date().alias("session"),
        pl.col("close").shift().alias("previous_close"),
    )

    assert splits.select("ex_date", "ratio").rows() == [
        (D(1990, 12, 12), 2.0),
        (D(1992, 3, 6), 2.0),
        (D(2016, 2, 17), 4.0),
    ]
    on_ex_dates = daily.join(splits, left_on="session", right_on="ex_date")
    jumps = (on_ex_dates["previous_close"] / on_ex_dates["open"]).to_list()
    assert jumps == pytest.approx(on_ex_dates["ratio"].to_list(), rel=0.05)


def test_split_scales_volume_up_by_the_ratio() -> None:
    daily = bars((SPLIT_SYMBOL,), "1d", D(2015, 9, 1), D(2016, 7, 1))
    before = daily.filter(pl.col("ts").dt.date() < D(2016, 2, 17))["volume"].mean()
    after = daily.filter(pl.col("ts").dt.date() >= D(2016, 2, 17))["volume"].mean()

    assert after / before == pytest.approx(4.0, rel=0.2)


def test_reverse_split_multiplies_the_raw_price_by_ten() -> None:
    provider = SyntheticProvider()
    actions = provider.fetch_actions(
        ActionsRequest((REVERSE_SPLIT_SYMBOL,), D(2015, 1, 1), D(2016, 1, 1))
    ).frame
    daily = bars((REVERSE_SPLIT_SYMBOL,), "1d", D(2015, 6, 19), D(2015, 6, 23))

    assert actions.filter(pl.col("action_type") == "split").select("ex_date", "ratio").rows() == [
        (D(2015, 6, 22), 0.1)
    ]
    assert daily["open"][1] / daily["close"][0] == pytest.approx(10.0, rel=0.05)


def test_dividend_ex_date_open_gaps_down_by_the_amount() -> None:
    provider = SyntheticProvider()
    dividends = provider.fetch_actions(
        ActionsRequest((SPLIT_SYMBOL,), D(1990, 1, 1), D(2026, 1, 1))
    ).frame.filter(pl.col("action_type") == "dividend")
    daily = bars((SPLIT_SYMBOL,), "1d", D(1990, 1, 1), D(2026, 1, 1)).with_columns(
        pl.col("ts").dt.date().alias("session"), pl.col("close").shift().alias("previous_close")
    )
    ex = daily.join(dividends, left_on="session", right_on="ex_date")
    gap = (ex["open"] - ex["previous_close"]) / ex["previous_close"]
    dividend_yield = ex["amount"] / ex["previous_close"]

    assert ex.height == dividends.height > 100
    assert gap.mean() < -0.004
    assert (gap + dividend_yield).mean() == pytest.approx(0.0, abs=0.0015)


def test_fetch_actions_follows_the_action_schema_within_the_range() -> None:
    result = SyntheticProvider().fetch_actions(
        ActionsRequest((SPLIT_SYMBOL, "AAPL"), D(2016, 1, 1), D(2017, 1, 1))
    )
    frame = result.frame

    assert frame.schema == ACTION_SCHEMA
    assert result.source == "synthetic" and result.requests == 1
    assert frame["ex_date"].min() >= D(2016, 1, 1) and frame["ex_date"].max() < D(2017, 1, 1)
    dividends = frame.filter(pl.col("action_type") == "dividend")
    assert dividends.height == 4  # quarterly
    assert dividends["amount"].min() > 0 and dividends["ratio"].null_count() == 4
    assert set(dividends["currency"]) == {"USD"} and set(frame["source"]) == {"synthetic"}
    assert frame.filter(pl.col("action_type") == "split")["currency"].to_list() == [None]
    assert ("split", 4.0) in frame.select("action_type", "ratio").rows()


def test_unknown_symbol_is_reported_in_failures_while_others_are_returned() -> None:
    provider = SyntheticProvider(unknown_symbols=frozenset({"NOPE"}))
    request = BarRequest("bars_1d", ("AAPL", "NOPE", "MSFT"), "1d", D(2024, 1, 2), D(2024, 1, 5))

    result = provider.fetch_bars(request)

    assert sorted(set(result.frame["symbol"])) == ["AAPL", "MSFT"]
    assert list(result.failures) == ["NOPE"]
    assert "NOPE is not listed" in result.failures["NOPE"]
    assert result.requests == 1


def test_request_of_only_unknown_symbols_raises_unknown_symbol_error() -> None:
    provider = SyntheticProvider(unknown_symbols=frozenset({"NOPE", "NADA"}))
    request = BarRequest("bars_1d", ("NOPE", "NADA"), "1d", D(2024, 1, 2), D(2024, 1, 5))

    with pytest.raises(UnknownSymbolError, match="symbols=NOPE,NADA"):
        provider.fetch_bars(request)


def test_transient_failures_raise_for_the_first_calls_only() -> None:
    provider = SyntheticProvider(transient_failures=2)
    request = BarRequest("bars_1d", ("AAPL",), "1d", D(2024, 1, 2), D(2024, 1, 5))

    for call in (1, 2):
        with pytest.raises(TransientError, match=f"simulated transient failure {call} of 2"):
            provider.fetch_bars(request)
    assert provider.fetch_bars(request).frame.height == 3


def test_intraday_granularities_are_resampled_from_minute_bars() -> None:
    minutes = bars(("AAPL",), "1m", D(2024, 3, 4), D(2024, 3, 6))
    hourly = bars(("AAPL",), "1h", D(2024, 3, 4), D(2024, 3, 6))

    assert hourly.height == 14
    assert hourly.equals(resample_bars(minutes, "1h"))


def test_range_without_sessions_returns_an_empty_canonical_frame() -> None:
    frame = bars(("AAPL",), "1m", D(2024, 7, 4), D(2024, 7, 5))

    assert frame.is_empty()
    assert frame.schema == BAR_SCHEMA


def test_from_config_reads_seed_and_test_seams() -> None:
    provider = SyntheticProvider.from_config(
        {"kind": "synthetic", "seed": 3, "unknown_symbols": ["ZZZ"], "transient_failures": 1}
    )

    assert (provider.seed, provider.unknown_symbols, provider.transient_failures) == (
        3,
        frozenset({"ZZZ"}),
        1,
    )


def test_from_config_rejects_an_unknown_setting() -> None:
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['api_key'\]"):
        SyntheticProvider.from_config({"api_key": "x"})


def test_twenty_years_of_daily_bars_are_one_bar_per_session() -> None:
    # Speed is measured in benchmarks/synthetic.py (tests never assert timings).
    sessions = session_schedule().filter(
        pl.col("session").is_between(D(2004, 1, 1), D(2024, 1, 1), closed="left")
    )

    frame = synthetic_bars("TWENTY", "1d", D(2004, 1, 1), D(2024, 1, 1))

    assert frame.height == sessions.height == 5033
    assert frame.get_column("ts").dt.date().to_list() == sessions.get_column("session").to_list()
