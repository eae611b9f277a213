"""Databento OPRA option chains: DBN files (built here and the real sample) and the API.

DBN bytes are built with databento_dbn (definition, cbbo-1m, ohlcv-1d, statistics records);
the API is Databento's get_range / get_cost endpoints on requests_mock, answering the
adapter's real client.
"""

import datetime as dt
from pathlib import Path

import databento_dbn as dbn
import polars as pl
import pytest
import requests_mock

from market_assets.core.config import AppConfig
from market_assets.core.providers.base import AuthError, OptionChainRequest
from market_assets.core.providers.databento.options import DatabentoOptionsProvider
from market_assets.core.providers.files_route import choose_file_reader
from market_assets_tests.core.providers.dbn_builders import DatabentoApi, dbn_bytes, ns, px
from market_assets_tests.realdata import require

THU = dt.date(2025, 2, 20)
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
CALL, PUT, ADJUSTED, OTHER = 101, 102, 103, 104
CONTRACTS = {
    "AAPL  250321C00250000": CALL,
    "AAPL  250321P00250000": PUT,
    "AAPL1 250321C00125000": ADJUSTED,
    "MSFT  250321C00400000": OTHER,
}


def at(hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2025, 2, 20, hour, minute, tzinfo=dt.UTC)


def definition(instrument_id: int, symbol: str) -> dbn.InstrumentDefMsg:
    return dbn.InstrumentDefMsg(
        publisher_id=30,
        instrument_id=instrument_id,
        ts_event=ns(at(10, 30)),
        ts_recv=ns(at(10, 30)),
        min_price_increment=dbn.UNDEF_PRICE,
        display_factor=dbn.UNDEF_PRICE,
        asset=symbol[:6].strip(),
        security_type="OPT",
        security_update_action=dbn.SecurityUpdateAction.ADD,
        raw_symbol=symbol,
        underlying=symbol[:4].strip() if instrument_id != OTHER else "MSFT",
        instrument_class=dbn.InstrumentClass.CALL if "C" in symbol[12] else dbn.InstrumentClass.PUT,
        strike_price=px(int(symbol[13:]) / 1000),
        expiration=ns(dt.datetime(2025, 3, 21, 20, tzinfo=dt.UTC)),
        contract_multiplier=50 if instrument_id == ADJUSTED else 100,
    )


def cbbo(instrument_id: int, moment: dt.datetime, bid: float, ask: float, last: float | None):
    return dbn.CBBOMsg(
        rtype=dbn.RType.CBBO_1M,
        publisher_id=30,
        instrument_id=instrument_id,
        ts_event=ns(moment) - 1000,
        price=dbn.UNDEF_PRICE if last is None else px(last),
        size=1,
        side=dbn.Side.NONE,
        flags=0,
        ts_recv=ns(moment),
        levels=dbn.ConsolidatedBidAskPair(
            bid_px=px(bid), ask_px=px(ask), bid_sz=10, ask_sz=20, bid_pb=1, ask_pb=2
        ),
    )


def ohlcv(instrument_id: int, publisher: int, volume: int) -> dbn.OHLCVMsg:
    return dbn.OHLCVMsg(
        rtype=dbn.RType.OHLCV_1D,
        publisher_id=publisher,
        instrument_id=instrument_id,
        ts_event=ns(THU),
        open=px(1),
        high=px(2),
        low=px(1),
        close=px(1.5),
        volume=volume,
    )


def open_interest(instrument_id: int, quantity: int) -> dbn.StatMsg:
    return dbn.StatMsg(
        publisher_id=37,
        instrument_id=instrument_id,
        ts_event=ns(at(10, 30)),
        ts_recv=ns(at(10, 30)),
        ts_ref=dbn.UNDEF_TIMESTAMP,
        price=dbn.UNDEF_PRICE,
        quantity=quantity,
        stat_type=dbn.StatType.OPEN_INTEREST,
        update_action=dbn.StatUpdateAction.NEW,
    )


RECORDS = {
    "definition": [definition(i, s) for s, i in CONTRACTS.items()],
    "cbbo-1m": [
        cbbo(CALL, at(15, 0), 4.0, 4.2, 4.1),
        cbbo(CALL, at(20, 59), 5.0, 5.3, None),  # the last quote before the close wins
        cbbo(CALL, at(21, 30), 9.0, 9.9, 9.5),  # after the close: not in the EOD snapshot
        cbbo(PUT, at(16, 0), 3.0, 3.1, 3.05),
        cbbo(ADJUSTED, at(16, 0), 1.0, 1.2, None),
        cbbo(OTHER, at(16, 0), 2.0, 2.2, None),
    ],
    "ohlcv-1d": [ohlcv(CALL, 20, 700), ohlcv(CALL, 22, 300), ohlcv(PUT, 20, 40)],
    "statistics": [open_interest(CALL, 1234), open_interest(PUT, 55)],
}


def write_files(folder: Path, dataset: str = "OPRA.PILLAR") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for schema, records in RECORDS.items():
        data = dbn_bytes(dataset, schema, THU, THU + dt.timedelta(days=1), CONTRACTS, records)
        (folder / f"opra-pillar-20250220.{schema}.dbn.zst").write_bytes(data)


def request() -> OptionChainRequest:
    return OptionChainRequest(("AAPL",), THU, THU + dt.timedelta(days=1))


def test_files_give_the_end_of_day_chain_with_volume_open_interest_and_adjusted_series(tmp_path):
    write_files(tmp_path)
    provider = DatabentoOptionsProvider.from_files({"kind": "databento_options"}, tmp_path)

    result = provider.fetch_options(request())

    frame = result.frame.sort("contract")
    assert frame.select("contract", "bid", "ask", "last", "volume", "open_interest").rows() == [
        ("AAPL  250321C00250000", 5.0, 5.3, 4.1, 1000, 1234),
        ("AAPL  250321P00250000", 3.0, 3.1, 3.05, 40, 55),
        ("AAPL1 250321C00125000", 1.0, 1.2, None, None, None),
    ]
    assert frame["multiplier"].to_list() == [100, 100, 50]
    assert frame["ts"].unique().to_list() == [at(21, 0)]
    assert frame["quote_ts"][0] == at(20, 59)
    assert result.requests == 0 and result.failures == {}


def test_files_of_another_dataset_are_not_read_as_options(tmp_path):
    write_files(tmp_path, dataset="XNAS.ITCH")
    provider = DatabentoOptionsProvider.from_files({"kind": "databento_options"}, tmp_path)

    with pytest.raises(Exception, match="no OPRA.PILLAR option records"):
        provider.fetch_options(request())


def test_api_asks_each_schema_with_parent_symbology_and_builds_the_same_chain(monkeypatch):
    monkeypatch.setenv("DATABENTO_API_KEY", "db-" + "x" * 29)
    provider = DatabentoOptionsProvider.from_config({"kind": "databento_options"})

    def respond(form: dict[str, str]) -> bytes:
        schema = form["schema"]
        return dbn_bytes(
            "OPRA.PILLAR",
            schema,
            THU,
            THU + dt.timedelta(days=1),
            {"AAPL.OPT": CALL},
            RECORDS[schema],
            stype_in=dbn.SType.PARENT,
        )

    with requests_mock.Mocker() as mocker:
        api = DatabentoApi(mocker, respond)
        result = provider.fetch_options(request())

    assert [r["schema"] for r in api.ranges] == ["definition", "cbbo-1m", "ohlcv-1d", "statistics"]
    assert {(r["symbols"], r["stype_in"]) for r in api.ranges} == {("AAPL.OPT", "parent")}
    assert sorted(result.frame["contract"].to_list()) == [
        "AAPL  250321C00250000",
        "AAPL  250321P00250000",
        "AAPL1 250321C00125000",
    ]
    assert result.requests == 4


def test_api_without_a_key_raises_auth_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    provider = DatabentoOptionsProvider.from_config({"kind": "databento_options"})

    with pytest.raises(AuthError, match="DATABENTO_API_KEY"):
        provider.fetch_options(request())


def test_files_route_gives_opra_files_to_the_options_reader_and_never_bars_to_it(tmp_path):
    write_files(tmp_path)
    config = AppConfig.load(REPO_CONFIGS)

    assert choose_file_reader(config, "options_chains", tmp_path).name == "databento_opra"
    assert choose_file_reader(config, "bars_1d", tmp_path).name == "databento"
    with pytest.raises(ValueError, match="cannot read bars_1d from files"):
        choose_file_reader(config, "bars_1d", tmp_path, provider="databento_opra")
    with pytest.raises(ValueError, match="cannot read options_chains from files"):
        choose_file_reader(config, "options_chains", tmp_path, provider="databento")


def test_real_opra_sample_loads_one_aapl_contract_with_quotes_volume_and_open_interest():
    folder = require("databento/OPRA.PILLAR")
    provider = DatabentoOptionsProvider.from_files({"kind": "databento_options"}, folder)

    frame = provider.fetch_options(request()).frame

    row = frame.row(0, named=True)
    assert frame.height == 1
    assert row["contract"] == "AAPL  250221C00250000"
    assert (row["bid"], row["ask"]) == (0.34, 0.36)
    assert row["open_interest"] == 57924
    assert row["volume"] > 0
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
