"""Pricing inputs (rates, underlying, expiry), chain assembly and the hard rules."""

import datetime as dt
import math

import polars as pl
import pytest

from market_assets.core.errors import ConfigError
from market_assets.core.options.chain import build_chain
from market_assets.core.options.quotes import snapshot_instants
from market_assets.core.options.rates import RateSource, tenor_years
from market_assets.core.options.settings import OptionsSettings, RateSettings, load_options_settings
from market_assets.core.options.validate import split_valid_options
from market_assets.core.providers.base import OptionChainRequest
from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets_tests.helpers import make_bars

THU, FRI = dt.date(2025, 2, 20), dt.date(2025, 2, 21)
SETTINGS = OptionsSettings()


def quotes(**overrides) -> pl.DataFrame:
    row = {
        "session": THU,
        "ts": dt.datetime(2025, 2, 20, 21, tzinfo=dt.UTC),
        "symbol": "AAPL",
        "contract": "AAPL250321C00250000",
        "bid": 4.0,
        "ask": 4.2,
        "source": "databento",
    }
    row.update(overrides)
    return pl.DataFrame([row])


def test_tenor_years_reads_treasury_column_names():
    assert [tenor_years(n) for n in ("1 Mo", "1.5 Month", "3 Mo", "2 Yr", "Date")] == [
        pytest.approx(1 / 12),
        pytest.approx(0.125),
        pytest.approx(0.25),
        2.0,
        None,
    ]


def test_rate_file_is_interpolated_by_expiry_and_converted_to_continuous(tmp_path):
    (tmp_path / "yields.csv").write_text(
        'Date,"1 Mo","3 Mo","1 Yr"\n02/20/2025,4.00,4.40,4.80\n02/19/2025,9,9,9\n'
    )
    source = RateSource(RateSettings(source="file", file="yields.csv"), tmp_path)
    frame = pl.DataFrame(
        {"session": [THU, FRI, dt.date(2025, 1, 2)], "time_to_expiry": [1 / 6, 5.0, 0.1]}
    )

    out = source.apply(frame)

    def continuous(percent: float) -> float:
        return 2 * math.log1p(percent / 200)

    # halfway between the 1 Mo and 3 Mo rates; flat beyond the longest tenor
    assert out["rate"][0] == pytest.approx((continuous(4.0) + continuous(4.4)) / 2)
    assert out["rate"][1] == pytest.approx(continuous(4.8))
    assert out["rate"][2] is None  # no curve on or before that session
    assert out["rate_source"].to_list() == [
        "file:yields.csv@2025-02-20",
        "file:yields.csv@2025-02-20",
        None,
    ]


def test_rate_file_without_tenor_columns_raises_config_error_naming_it(tmp_path):
    (tmp_path / "bad.csv").write_text("Date,rate\n2025-02-20,4.1\n")

    with pytest.raises(ConfigError, match="bad.csv"):
        RateSource(RateSettings(source="file", file="bad.csv"), tmp_path)


def test_options_yaml_with_unknown_key_raises_config_error_naming_file_and_key(tmp_path):
    (tmp_path / "options.yaml").write_text("checks:\n  put_call_parity: {tolerence: 1}\n")

    with pytest.raises(ConfigError, match="options.yaml.*tolerence"):
        load_options_settings(tmp_path)


def test_snapshot_instants_are_the_close_or_new_york_times():
    early_close = dt.date(2024, 11, 29)

    assert snapshot_instants(early_close, ()) == [dt.datetime(2024, 11, 29, 18, tzinfo=dt.UTC)]
    assert snapshot_instants(THU, (dt.time(10),)) == [dt.datetime(2025, 2, 20, 15, tzinfo=dt.UTC)]


def test_build_chain_parses_contract_records_inputs_and_prices_off_the_daily_close():
    bars = make_bars(["AAPL"], [THU]).with_columns(pl.lit(245.0).alias("close"))
    bars = bars.with_columns(pl.lit("yfinance").alias("source"))

    built = build_chain(quotes(), SETTINGS, RateSource(SETTINGS.pricing.rate), bars)
    row = built.frame.row(0, named=True)

    assert (row["contract"], row["root"], row["kind"], row["strike"]) == (
        "AAPL  250321C00250000",
        "AAPL",
        "call",
        250.0,
    )
    assert (row["multiplier"], row["adjusted"], row["exercise_style"]) == (100, False, "american")
    assert (row["underlying_price"], row["underlying_source"]) == (245.0, "bars_1d:yfinance")
    assert row["underlying_ts"] == dt.datetime(2025, 2, 20, 21, tzinfo=dt.UTC)
    # 16:00 New York on 2025-03-21 is 20:00 UTC (daylight time): 29 days less an hour
    assert row["time_to_expiry"] == pytest.approx((29 * 24 - 1) / (365 * 24))
    assert (row["rate"], row["rate_source"], row["dividend_yield"]) == (0.04, "constant", 0.0)
    assert row["iv_price"] == 4.1 and row["iv_status"] == "ok" and 0 < row["iv"] < 1
    assert 0 < row["delta"] < 1 and row["gamma"] > 0 and row["theta"] < 0


def test_build_chain_never_prices_real_options_with_synthetic_bars():
    bars = make_bars(["AAPL"], [THU])  # source synthetic

    built = build_chain(quotes(), SETTINGS, RateSource(SETTINGS.pricing.rate), bars)

    assert built.frame.row(0, named=True)["iv_status"] == "no_underlying_price"
    assert built.iv_status_counts == {"no_underlying_price": 1}


def test_build_chain_flags_adjusted_contracts_and_keeps_their_root():
    rows = pl.concat(
        [quotes(contract="AAPL1 250321C00250000"), quotes(), quotes(contract="SPXW250321P05000000")]
    )

    built = build_chain(rows, SETTINGS, RateSource(SETTINGS.pricing.rate))

    assert built.frame.select("root", "adjusted", "multiplier", "exercise_style").rows() == [
        ("AAPL", False, 100, "american"),
        ("AAPL1", True, None, "american"),
        ("SPXW", False, 100, "european"),
    ]
    assert built.adjusted_contracts == 1


def test_hard_rules_quarantine_bad_contracts_duplicates_and_rows_outside_the_partitions():
    good = quotes()
    rows = pl.concat(
        [good, good, quotes(contract="not-a-contract"), quotes(symbol="MSFT", contract="MSFT")]
    )
    chain = build_chain(rows, SETTINGS, RateSource(SETTINGS.pricing.rate)).frame

    result = split_valid_options(chain, [("AAPL", THU)])

    assert result.valid.height == 1
    assert result.rule_counts == {
        "duplicate_key": 1,
        "invalid_contract": 2,
        "outside_partition": 1,
    }
    assert set(result.quarantined.select("symbol", "session").rows()) == {("AAPL", THU)}


def test_synthetic_provider_chain_is_deterministic_and_keeps_its_strikes_until_expiry():
    provider = SyntheticProvider()
    request = OptionChainRequest(("SPY",), THU, FRI + dt.timedelta(days=1))

    first, again = provider.fetch_options(request).frame, provider.fetch_options(request).frame
    thursday = set(first.filter(pl.col("session") == THU)["contract"])
    friday = set(first.filter(pl.col("session") == FRI)["contract"])

    assert first.equals(again)
    assert {c for c in thursday if c[6:12] > "250221"} <= friday
    assert first["source"].unique().to_list() == ["synthetic"]
    assert first["underlying_price"].is_not_null().all()
