"""The Databento adapter through the real `databento` client, its HTTP replayed by requests_mock.

Payloads are real DBN streams built with databento_dbn (dbn_builders.py) or the vendor's own
sample files from MARKET_ASSETS_REALDATA; nothing between the HTTP transport and our parsing
is replaced.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import databento_dbn as dbn
import polars as pl
import pytest
import requests_mock

from market_assets.core.providers.base import (
    AuthError,
    BadRequestError,
    BarRequest,
    NoDataError,
    TickRequest,
    TransientError,
    UnknownSymbolError,
)
from market_assets.core.providers.databento import (
    DatabentoCostError,
    DatabentoPayloadError,
    DatabentoProvider,
)
from market_assets.core.providers.registry import ProviderRegistry, RetryPolicy
from market_assets.core.validate import split_valid_bars
from market_assets.core.validate_ticks import split_valid_ticks
from market_assets_tests.core.providers.dbn_builders import (
    DatabentoApi,
    dbn_bytes,
    decompress,
    ohlcv,
    statistic,
    tbbo,
    trade,
)
from market_assets_tests.realdata import require

KEY = "db-UnitTestKey0123456789abcdef"
MON, TUE, WED = dt.date(2020, 12, 28), dt.date(2020, 12, 29), dt.date(2020, 12, 30)
CHRISTMAS = dt.date(2020, 12, 25)
IDS = {"NVDA": 6155, "AAPL": 38}


def at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=dt.UTC)


def daily_bars_response(form: dict[str, str]) -> bytes:
    """Two sessions of daily bars for every requested symbol Databento knows (NVDA, AAPL)."""
    symbols = [s for s in form["symbols"].split(",") if s in IDS]
    unknown = [s for s in form["symbols"].split(",") if s not in IDS]
    records = [
        ohlcv("ohlcv-1d", IDS[symbol], day, 100.0 + i, 102.5 + i, 99.25 + i, 101.0 + i, 1_000 + i)
        for i, day in enumerate((MON, TUE))
        for symbol in symbols
    ]
    records.sort(key=lambda r: r.ts_event)
    return dbn_bytes(
        form["dataset"],
        form["schema"],
        MON,
        WED,
        {s: IDS[s] for s in symbols},
        records,
        not_found=unknown,
    )


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    return KEY


@pytest.fixture
def http():
    with requests_mock.Mocker() as mocker:
        yield mocker


def daily(symbols: tuple[str, ...], start: dt.date = MON, end: dt.date = WED) -> BarRequest:
    return BarRequest("bars_1d", symbols, "1d", start, end)


def registry_of(provider: DatabentoProvider, waits: list[float]) -> ProviderRegistry:
    retry = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=5.0)
    routes = {"bars_1d": ["databento"], "trades": ["databento"]}
    return ProviderRegistry({"databento": provider}, routes, retry, sleep=waits.append)


# -- bars from the API ---------------------------------------------------------------------


def test_get_range_given_two_symbols_returns_both_in_one_request(api_key, http):
    api = DatabentoApi(http, daily_bars_response)

    result = DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("AAPL", "NVDA")))

    assert len(api.ranges) == 1
    sent = api.ranges[0]
    assert sent["symbols"] == "AAPL,NVDA"
    assert (sent["dataset"], sent["schema"], sent["stype_in"]) == (
        "XNAS.ITCH",
        "ohlcv-1d",
        "raw_symbol",
    )
    assert (sent["start"], sent["end"]) == (
        "2020-12-28T00:00:00+00:00",
        "2020-12-30T00:00:00+00:00",
    )
    frame = result.frame
    assert frame["symbol"].to_list() == ["AAPL", "AAPL", "NVDA", "NVDA"]
    assert frame["ts"].to_list() == [at(MON, 0), at(TUE, 0)] * 2
    assert frame.row(3, named=True) | {"ts": None} == {
        "ts": None,
        "symbol": "NVDA",
        "open": 101.0,
        "high": 103.5,
        "low": 100.25,
        "close": 102.0,
        "volume": 1_001,
        "trade_count": None,
        "vwap": None,
        "granularity": "1d",
        "source": "databento",
    }
    assert (result.requests, result.failures) == (1, {})


def test_more_than_2000_symbols_are_requested_in_batches_of_2000(api_key, http):
    symbols = tuple(f"S{i:04d}" for i in range(2_001))

    def first_of_batch_trades(form: dict[str, str]) -> bytes:
        first = form["symbols"].split(",")[0]
        return dbn_bytes(
            form["dataset"],
            form["schema"],
            MON,
            TUE,
            {first: 7},
            [ohlcv(form["schema"], 7, MON, 10, 11, 9, 10.5, 5)],
        )

    api = DatabentoApi(http, first_of_batch_trades)

    result = DatabentoProvider("XNAS.ITCH").fetch_bars(daily(symbols, MON, TUE))

    assert [len(sent["symbols"].split(",")) for sent in api.ranges] == [2_000, 1]
    assert result.requests == 2
    assert result.frame["symbol"].to_list() == ["S0000", "S2000"]
    assert len(result.failures) == 1_999
    assert "no records for S0001" in result.failures["S0001"]


def test_holiday_with_no_bars_raises_no_data_error(api_key, http):
    DatabentoApi(
        http,
        lambda form: dbn_bytes(form["dataset"], form["schema"], CHRISTMAS, MON, {"NVDA": 6155}),
    )

    with pytest.raises(
        NoDataError, match=r"bars_1d \(XNAS.ITCH ohlcv-1d\).*no records from the API"
    ):
        DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("NVDA",), CHRISTMAS, MON))


def test_unknown_symbol_is_a_failure_while_the_others_are_returned(api_key, http):
    DatabentoApi(http, daily_bars_response)

    result = DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("NVDA", "ZZZZ")))

    assert result.frame["symbol"].unique().to_list() == ["NVDA"]
    assert list(result.failures) == ["ZZZZ"]
    assert "ZZZZ is not in XNAS.ITCH (raw_symbol)" in result.failures["ZZZZ"]


def test_only_unknown_symbols_raise_unknown_symbol_error(api_key, http):
    DatabentoApi(http, daily_bars_response)

    with pytest.raises(UnknownSymbolError, match="no requested symbol is known to XNAS.ITCH"):
        DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("ZZZZ",)))


def test_five_minute_bars_are_resampled_from_regular_hours_minutes(api_key, http):
    open_utc = at(MON, 14, 30)  # 9:30 New York
    minutes = [open_utc + dt.timedelta(minutes=m) for m in range(-60, 10)]  # an hour pre-market
    records = [
        ohlcv("ohlcv-1m", 6155, t, 10 + i, 11 + i, 9 + i, 10.5 + i, 100)
        for i, t in enumerate(minutes)
    ]
    api = DatabentoApi(
        http,
        lambda form: dbn_bytes(form["dataset"], form["schema"], MON, TUE, {"NVDA": 6155}, records),
    )

    result = DatabentoProvider("XNAS.ITCH").fetch_bars(
        BarRequest("bars_5m", ("NVDA",), "5m", MON, TUE)
    )

    assert api.ranges[0]["schema"] == "ohlcv-1m"
    assert api.ranges[0]["start"] == "2020-12-28T05:00:00+00:00"  # New York midnight
    frame = result.frame
    assert frame["ts"].to_list() == [open_utc, open_utc + dt.timedelta(minutes=5)]
    assert frame["open"].to_list() == [70.0, 75.0]
    assert frame["close"].to_list() == [74.5, 79.5]
    assert frame["volume"].to_list() == [500, 500]
    assert set(frame["granularity"]) == {"5m"}


def test_parent_symbology_is_refused_for_bars(api_key):
    provider = DatabentoProvider("GLBX.MDP3", stype_in="parent")

    with pytest.raises(BadRequestError, match="use continuous symbols"):
        provider.fetch_bars(daily(("CL.FUT",)))


def test_continuous_symbol_keeps_its_name_across_a_roll(api_key, http):
    rolls = [(MON, TUE, 1001), (TUE, WED, 2002)]
    records = [
        ohlcv("ohlcv-1d", 1001, MON, 48, 49, 47, 48.5, 10),
        ohlcv("ohlcv-1d", 2002, TUE, 50, 51, 49, 50.5, 20),
    ]
    api = DatabentoApi(
        http,
        lambda form: dbn_bytes(
            form["dataset"],
            form["schema"],
            MON,
            WED,
            {"CL.c.0": rolls},
            records,
            stype_in=dbn.SType.CONTINUOUS,
        ),
    )

    result = DatabentoProvider("GLBX.MDP3", stype_in="continuous").fetch_bars(daily(("CL.c.0",)))

    assert api.ranges[0]["stype_in"] == "continuous"
    assert result.frame.select("symbol", "close").rows() == [("CL.c.0", 48.5), ("CL.c.0", 50.5)]


# -- errors ----------------------------------------------------------------------------------


def test_rate_limit_then_success_waits_as_told_through_the_registry(api_key, http):
    api = DatabentoApi(http, daily_bars_response, statuses=[429], headers={"Retry-After": "2"})
    waits: list[float] = []

    result = registry_of(DatabentoProvider("XNAS.ITCH"), waits).fetch_bars(daily(("NVDA",)))

    assert len(api.ranges) == 2
    assert waits == [2.0]
    assert [a["outcome"] for a in result.attempts] == ["retrying", "ok"]
    assert "HTTP 429" in result.attempts[0]["error"]
    assert result.frame.height == 2


def test_server_errors_exhaust_the_retries_into_a_transient_error(api_key, http):
    api = DatabentoApi(http, daily_bars_response, statuses=[500, 502, 503])
    waits: list[float] = []

    with pytest.raises(TransientError, match=r"Databento server error \(HTTP 503\)"):
        registry_of(DatabentoProvider("XNAS.ITCH"), waits).fetch_bars(daily(("NVDA",)))

    assert len(api.ranges) == 3
    assert len(waits) == 2


def test_a_retry_after_a_failed_batch_does_not_buy_the_finished_batch_again(api_key, http):
    symbols = tuple(f"S{i:04d}" for i in range(2_001))

    def one_bar(form: dict[str, str]) -> bytes:
        first = form["symbols"].split(",")[0]
        bar = ohlcv(form["schema"], 7, MON, 10, 11, 9, 10.5, 5)
        return dbn_bytes(form["dataset"], form["schema"], MON, TUE, {first: 7}, [bar])

    api = DatabentoApi(http, one_bar, statuses=[200, 503])
    registry = registry_of(DatabentoProvider("XNAS.ITCH"), [])

    result = registry.fetch_bars(daily(symbols, MON, TUE))

    assert [len(sent["symbols"].split(",")) for sent in api.ranges] == [2_000, 1, 1]
    assert result.frame["symbol"].to_list() == ["S0000", "S2000"]


def test_rejected_key_names_the_variable_and_never_the_key(api_key, http):
    DatabentoApi(http, daily_bars_response, statuses=[401])

    with pytest.raises(AuthError) as raised:
        DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("NVDA",)))

    assert "$DATABENTO_API_KEY" in str(raised.value)
    assert KEY not in str(raised.value)
    assert not raised.value.retryable


def test_missing_key_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("MY_DATABENTO_KEY", raising=False)

    with pytest.raises(AuthError, match=r"\$MY_DATABENTO_KEY is not set.*--files DIR"):
        DatabentoProvider("XNAS.ITCH", api_key_env="MY_DATABENTO_KEY").fetch_bars(daily(("NVDA",)))


def test_bad_request_carries_the_vendor_reason(api_key, http):
    http.post(
        "https://hist.databento.com/v0/timeseries.get_range",
        status_code=422,
        json={"detail": "data_end_after_available_end"},
    )

    with pytest.raises(BadRequestError, match="HTTP 422.*data_end_after_available_end"):
        DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("NVDA",)))


@pytest.mark.parametrize("cut", ["zstd_frame", "last_record"])
def test_truncated_payload_raises_a_payload_error_naming_the_request(api_key, http, cut):
    whole = daily_bars_response({"dataset": "XNAS.ITCH", "schema": "ohlcv-1d", "symbols": "NVDA"})
    body = whole[:-9] if cut == "zstd_frame" else decompress(whole)[:-9]
    DatabentoApi(http, lambda form: body)

    with pytest.raises(DatabentoPayloadError, match="XNAS.ITCH ohlcv-1d batch 1/1") as raised:
        DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("NVDA",)))

    assert not raised.value.retryable


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>maintenance</html>", "is not valid DBN data"),
        (
            dbn_bytes("XNAS.ITCH", "trades", MON, WED, {"NVDA": 6155}),
            "holds trades records, expected ohlcv-1d",
        ),
    ],
    ids=["not_dbn", "another_schema"],
)
def test_payload_that_is_not_the_asked_dbn_raises_a_payload_error(api_key, http, body, reason):
    DatabentoApi(http, lambda form: body)

    with pytest.raises(DatabentoPayloadError, match=reason):
        DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("NVDA",)))


def test_undefined_price_becomes_null_and_is_quarantined_not_stored(api_key, http):
    records = [
        ohlcv("ohlcv-1d", 6155, MON, 100, 102, 99, None, 1_000),
        ohlcv("ohlcv-1d", 6155, TUE, 101, 103, 100, 102, 900),
    ]
    DatabentoApi(
        http,
        lambda form: dbn_bytes(form["dataset"], form["schema"], MON, WED, {"NVDA": 6155}, records),
    )

    bars = DatabentoProvider("XNAS.ITCH").fetch_bars(daily(("NVDA",))).frame
    checked = split_valid_bars(bars, dataset="bars_1d", partitions=[("NVDA", MON), ("NVDA", TUE)])

    assert bars["close"].to_list() == [None, 102.0]
    assert checked.valid["ts"].to_list() == [at(TUE, 0)]
    assert checked.rule_counts == {"null_price": 1}


def test_cost_above_the_limit_is_refused_before_any_data_is_requested(api_key, http):
    api = DatabentoApi(http, daily_bars_response, cost_usd=12.5)

    with pytest.raises(DatabentoCostError, match=r"\$12\.50, above the limit max_cost_usd \$5\.00"):
        DatabentoProvider("XNAS.ITCH", max_cost_usd=5.0).fetch_bars(daily(("NVDA",)))

    assert api.ranges == []
    assert api.costs[0]["schema"] == "ohlcv-1d"
    assert api.costs[0]["symbols"] == "NVDA"


def test_cost_within_the_limit_is_fetched_and_counted_as_a_request(api_key, http):
    api = DatabentoApi(http, daily_bars_response, cost_usd=0.25)

    result = DatabentoProvider("XNAS.ITCH", max_cost_usd=5.0).fetch_bars(daily(("NVDA",)))

    assert (len(api.costs), len(api.ranges), result.requests) == (1, 1, 2)
    assert result.notes["cost_usd"] == "0.2500"


# -- ticks ----------------------------------------------------------------------------------


def test_trades_of_two_symbols_keep_nanoseconds_and_vendor_fields(api_key, http):
    first = at(MON, 14, 30, 1) + dt.timedelta(microseconds=123)
    records = [
        trade(6155, first, 521.25, 36, side=dbn.Side.BID, sequence=10),
        trade(38, first + dt.timedelta(seconds=1), 136.5, 100, side=dbn.Side.ASK, sequence=11),
        trade(6155, first + dt.timedelta(seconds=2), None, 5, sequence=12),
    ]
    DatabentoApi(
        http, lambda form: dbn_bytes(form["dataset"], form["schema"], MON, TUE, IDS, records)
    )

    result = DatabentoProvider("XNAS.ITCH").fetch_ticks(
        TickRequest("trades", ("AAPL", "NVDA"), MON, TUE)
    )
    checked = split_valid_ticks(
        result.frame, dataset="trades", partitions=[("AAPL", MON), ("NVDA", MON)]
    )

    frame = result.frame
    assert frame["symbol"].to_list() == ["AAPL", "NVDA", "NVDA"]
    nvda = frame.row(1, named=True)
    assert nvda["ts_event"] == pl.Series([first]).cast(pl.Datetime("ns", "UTC"))[0]
    assert (nvda["ts_recv"] - nvda["ts_event"]) == dt.timedelta(microseconds=10)
    assert (nvda["price"], nvda["size"], nvda["side"], nvda["sequence"]) == (521.25, 36, "B", 10)
    assert frame["price"].to_list()[2] is None
    assert checked.rule_counts == {"null_price": 1}
    assert checked.valid.height == 2


def test_tbbo_and_statistics_decode_quotes_and_stat_names(api_key, http):
    quote = [tbbo(6155, at(MON, 15), 521.0, 10, bid=520.5, ask=521.0)]
    stats = [
        statistic(5482, at(MON, 22), dbn.StatType.SETTLEMENT_PRICE, price=3735.0),
        statistic(5482, at(MON, 22, 1), dbn.StatType.OPEN_INTEREST, quantity=2_500_000),
    ]

    def respond(form: dict[str, str]) -> bytes:
        if form["schema"] == "tbbo":
            return dbn_bytes(form["dataset"], "tbbo", MON, TUE, {"NVDA": 6155}, quote)
        return dbn_bytes(form["dataset"], "statistics", MON, TUE, {"ESH1": 5482}, stats)

    DatabentoApi(http, respond)
    provider = DatabentoProvider("XNAS.ITCH")

    quotes = provider.fetch_ticks(TickRequest("tbbo", ("NVDA",), MON, TUE)).frame
    statistics = provider.fetch_ticks(TickRequest("statistics", ("ESH1",), MON, TUE)).frame

    assert quotes.select("bid_price", "ask_price", "bid_size", "ask_size").row(0) == (
        520.5,
        521.0,
        100,
        200,
    )
    assert statistics.select("stat_type", "price", "quantity", "update_action").rows() == [
        ("settlement_price", 3735.0, None, "new"),
        ("open_interest", None, 2_500_000, "new"),
    ]
    assert statistics["ts_ref"].to_list() == [None, None]


# -- downloaded DBN files -------------------------------------------------------------------


def test_files_mode_reads_matching_dbn_files_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    job = tmp_path / "XNAS-20201228-ABC"  # batch downloads unpack one folder per job
    job.mkdir()
    (job / "mon.trades.dbn.zst").write_bytes(
        dbn_bytes(
            "XNAS.ITCH",
            "trades",
            MON,
            TUE,
            IDS,
            [trade(6155, at(MON, 15), 520.0, 1), trade(38, at(MON, 15, 1), 136.0, 2)],
        )
    )
    (tmp_path / "tue.trades.dbn").write_bytes(
        dbn_bytes(
            "XNAS.ITCH",
            "trades",
            TUE,
            WED,
            {"NVDA": 6155},
            [trade(6155, at(TUE, 15), 530.0, 3)],
            compress=False,
        )
    )
    (tmp_path / "mon.ohlcv-1d.dbn.zst").write_bytes(
        dbn_bytes(
            "XNAS.ITCH",
            "ohlcv-1d",
            MON,
            TUE,
            {"NVDA": 6155},
            [ohlcv("ohlcv-1d", 6155, MON, 1, 2, 0.5, 1.5, 9)],
        )
    )
    (tmp_path / "other.trades.dbn.zst").write_bytes(
        dbn_bytes("GLBX.MDP3", "trades", MON, TUE, {"NVDA": 1}, [trade(1, at(MON, 16), 1.0, 1)])
    )
    provider = DatabentoProvider.from_config(
        {"kind": "databento", "dataset": "XNAS.ITCH", "files_dir": str(tmp_path)}
    )

    result = provider.fetch_ticks(TickRequest("trades", ("NVDA",), MON, WED))

    assert result.frame.select("symbol", "price", "size").rows() == [
        ("NVDA", 520.0, 1),
        ("NVDA", 530.0, 3),
    ]
    assert (result.requests, result.notes["files_read"]) == (0, "2")
    bars = provider.fetch_bars(daily(("NVDA",), MON, TUE)).frame
    assert bars.select("open", "close", "volume").row(0) == (1.0, 1.5, 9)


def test_files_mode_names_a_damaged_file(tmp_path):
    whole = dbn_bytes(
        "XNAS.ITCH",
        "trades",
        MON,
        TUE,
        {"NVDA": 6155},
        [trade(6155, at(MON, 15), 520.0, 1)],
        compress=False,
    )
    (tmp_path / "cut.trades.dbn").write_bytes(whole[:-5])
    provider = DatabentoProvider(files_dir=tmp_path)

    with pytest.raises(DatabentoPayloadError, match="cut.trades.dbn is truncated"):
        provider.fetch_ticks(TickRequest("trades", ("NVDA",), MON, TUE))


def test_files_mode_with_no_file_for_the_range_raises_no_data_error(tmp_path):
    (tmp_path / "mon.trades.dbn.zst").write_bytes(
        dbn_bytes(
            "XNAS.ITCH", "trades", MON, TUE, {"NVDA": 6155}, [trade(6155, at(MON, 15), 520.0, 1)]
        )
    )

    with pytest.raises(NoDataError, match=f"in {tmp_path}"):
        DatabentoProvider(files_dir=tmp_path).fetch_ticks(
            TickRequest("trades", ("NVDA",), TUE, WED)
        )


# -- the vendor's own sample files ------------------------------------------------------------


def test_real_xnas_nvda_daily_bar_served_by_the_api_decodes_to_the_published_values(api_key, http):
    sample = require("databento/XNAS.ITCH/test_data.ohlcv-1d.dbn.zst").read_bytes()
    DatabentoApi(http, lambda form: sample)

    bar = (
        DatabentoProvider("XNAS.ITCH")
        .fetch_bars(daily(("NVDA",), MON, TUE))
        .frame.row(0, named=True)
    )

    assert bar["ts"] == at(MON, 0)
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (521.0, 522.86, 510.54, 515.6)
    assert bar["volume"] == 1_424_253


def test_real_tick_samples_read_as_downloaded_files(tmp_path):
    for folder, name in (
        ("XNAS.ITCH", "trades"),
        ("XNAS.ITCH", "tbbo"),
        ("GLBX.MDP3", "statistics"),
    ):
        source = require(f"databento/{folder}/test_data.{name}.dbn.zst")
        shutil.copy(source, tmp_path / f"{folder}.{name}.dbn.zst")
    provider = DatabentoProvider(files_dir=tmp_path, regular_hours_only=False)
    before_monday = dt.date(2020, 12, 27)  # ESH1 trades from Sunday evening New York time

    trades = provider.fetch_ticks(TickRequest("trades", ("NVDA",), MON, TUE)).frame
    quotes = provider.fetch_ticks(TickRequest("tbbo", ("NVDA",), MON, TUE)).frame
    stats = provider.fetch_ticks(TickRequest("statistics", ("ESH1",), before_monday, TUE)).frame

    first = trades.row(0, named=True)
    assert trades["ts_event"].dt.epoch("ns")[0] == 1_609_146_312_576_690_768  # 09:05:12.576690768
    assert (first["price"], first["size"], first["side"], first["sequence"]) == (
        521.0,
        36,
        "B",
        362933,
    )
    assert quotes.select("bid_price", "ask_price", "bid_size", "ask_size").row(2) == (
        521.0,
        535.5,
        6,
        4,
    )
    assert stats.select("stat_type", "price").row(2) == ("trading_session_high_price", 3708.25)


def test_real_samples_folder_can_be_the_files_dir_itself():
    folder = require("databento/XNAS.ITCH")
    provider = DatabentoProvider("XNAS.ITCH", files_dir=Path(folder))

    bars = provider.fetch_bars(daily(("NVDA",), MON, TUE)).frame

    assert bars.select("close", "volume").row(0) == (515.6, 1_424_253)


# -- configuration ----------------------------------------------------------------------------


def test_from_config_rejects_unknown_settings_and_needs_a_dataset_or_files():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['api_key'\]"):
        DatabentoProvider.from_config({"kind": "databento", "dataset": "XNAS.ITCH", "api_key": "x"})
    with pytest.raises(ValueError, match="set `dataset`"):
        DatabentoProvider.from_config({"kind": "databento"})
    with pytest.raises(ValueError, match="stype_in 'smart'"):
        DatabentoProvider.from_config({"dataset": "XNAS.ITCH", "stype_in": "smart"})
