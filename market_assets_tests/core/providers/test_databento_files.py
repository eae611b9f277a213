"""Folders of downloaded Databento DBN files that do not fit the request (issue 13, item 7):
another dataset, statistics keyed only by instrument_id, files that are not DBN. The DBN bytes
are built with databento_dbn."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import databento_dbn as dbn
import pytest
import zstandard

from market_assets.core.providers.base import (
    BadRequestError,
    BarRequest,
    NoDataError,
    TickRequest,
)
from market_assets.core.providers.databento import DatabentoProvider
from market_assets_tests.core.providers.dbn_builders import dbn_bytes, ns, ohlcv, statistic, trade

MON, TUE = dt.date(2020, 12, 28), dt.date(2020, 12, 29)
ESH1 = 5482


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def whole_venue(schema: str, records: list[object]) -> bytes:
    """A DBN file downloaded for ALL_SYMBOLS: its metadata maps no symbol to any id."""
    metadata = dbn.Metadata(
        dataset="GLBX.MDP3",
        schema=dbn.Schema(schema),
        start=ns(MON),
        end=ns(TUE),
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        symbols=["ALL_SYMBOLS"],
        mappings=[],
    )
    raw = metadata.encode() + b"".join(bytes(record) for record in records)
    return zstandard.ZstdCompressor().compress(raw)


def definition(instrument_id: int, raw_symbol: str) -> dbn.InstrumentDefMsg:
    return dbn.InstrumentDefMsg(
        publisher_id=1,
        instrument_id=instrument_id,
        ts_event=ns(MON),
        ts_recv=ns(MON),
        min_price_increment=250_000_000,
        display_factor=1_000_000_000,
        raw_symbol=raw_symbol,
        asset="ES",
        security_type="FUT",
        instrument_class=dbn.InstrumentClass.FUTURE,
        security_update_action=dbn.SecurityUpdateAction.ADD,
    )


def glbx_trades(folder: Path) -> None:
    (folder / "esh1.trades.dbn.zst").write_bytes(
        dbn_bytes(
            "GLBX.MDP3", "trades", MON, TUE, {"ESH1": ESH1}, [trade(ESH1, at(MON, 15), 3700.0, 1)]
        )
    )


def test_files_of_another_dataset_say_so_instead_of_no_records(tmp_path):
    glbx_trades(tmp_path)
    provider = DatabentoProvider("XNAS.ITCH", files_dir=tmp_path)

    with pytest.raises(BadRequestError) as raised:
        provider.fetch_ticks(TickRequest("trades", ("ESH1",), MON, TUE))

    message = str(raised.value)
    assert f"the trades files in {tmp_path} are GLBX.MDP3" in message
    assert "the databento provider is configured for XNAS.ITCH (settings.dataset)" in message
    assert "no records" not in message


def test_statistics_keyed_by_instrument_id_resolve_through_a_definition_file(tmp_path):
    stats = [
        statistic(ESH1, at(MON, 14, 30), dbn.StatType.OPENING_PRICE, price=3700.25),
        statistic(ESH1, at(MON, 21), dbn.StatType.SETTLEMENT_PRICE, price=3710.5),
    ]
    (tmp_path / "glbx.statistics.dbn.zst").write_bytes(whole_venue("statistics", stats))
    (tmp_path / "glbx.definition.dbn.zst").write_bytes(
        whole_venue("definition", [definition(ESH1, "ESH1"), definition(42, "NQH1")])
    )
    provider = DatabentoProvider("GLBX.MDP3", files_dir=tmp_path)

    result = provider.fetch_ticks(TickRequest("statistics", ("ESH1",), MON, TUE))

    assert result.frame.select("symbol", "instrument_id", "stat_type", "price").rows() == [
        ("ESH1", ESH1, "opening_price", 3700.25),
        ("ESH1", ESH1, "settlement_price", 3710.5),
    ]


def test_files_that_are_not_dbn_are_listed_as_skipped(tmp_path):
    glbx_trades(tmp_path)
    (tmp_path / "esh1.trades.dbz").write_bytes(b"\x00old")
    (tmp_path / "part-0001.frag").write_bytes(b"\x00part")
    provider = DatabentoProvider("GLBX.MDP3", files_dir=tmp_path)

    result = provider.fetch_ticks(TickRequest("trades", ("ESH1",), MON, TUE))

    assert result.notes["skipped_files"] == "esh1.trades.dbz, part-0001.frag"
    with pytest.raises(NoDataError) as raised:
        provider.fetch_ticks(TickRequest("tbbo", ("ESH1",), MON, TUE))
    assert "it holds GLBX.MDP3 trades; skipped (not DBN): esh1.trades.dbz, part-0001.frag" in str(
        raised.value
    )


def test_regular_hours_only_counts_the_minutes_it_leaves_out(tmp_path):
    minutes = [
        ohlcv("ohlcv-1m", 6155, at(MON, 13), 1, 1, 1, 1, 10),  # 08:00 New York
        ohlcv("ohlcv-1m", 6155, at(MON, 14, 30), 1, 1, 1, 1, 10),
        ohlcv("ohlcv-1m", 6155, at(MON, 22), 1, 1, 1, 1, 10),  # 17:00 New York
    ]
    (tmp_path / "nvda.ohlcv-1m.dbn.zst").write_bytes(
        dbn_bytes("XNAS.ITCH", "ohlcv-1m", MON, TUE, {"NVDA": 6155}, minutes)
    )
    provider = DatabentoProvider("XNAS.ITCH", files_dir=tmp_path)

    result = provider.fetch_bars(BarRequest("bars_1m", ("NVDA",), "1m", MON, TUE))

    assert result.frame.height == 1
    assert result.dropped == {"extended_hours": 2}


def test_a_futures_provider_keeps_the_cme_sessions_hours_not_new_yorks(tmp_path):
    evening = [
        ohlcv("ohlcv-1m", ESH1, at(MON, 0, 30), 3700, 3701, 3699, 3700, 10),  # Sun 18:30 Chicago
        ohlcv("ohlcv-1m", ESH1, at(MON, 14, 30), 3705, 3706, 3704, 3705, 10),
    ]
    (tmp_path / "esh1.ohlcv-1m.dbn.zst").write_bytes(
        dbn_bytes("GLBX.MDP3", "ohlcv-1m", MON, TUE, {"ESH1": ESH1}, evening)
    )
    futures = DatabentoProvider.from_config(
        {"dataset": "GLBX.MDP3", "files_dir": str(tmp_path), "calendar": "CMES"}
    )
    equities = DatabentoProvider.from_config({"dataset": "GLBX.MDP3", "files_dir": str(tmp_path)})

    request = BarRequest("bars_1m", ("ESH1",), "1m", dt.date(2020, 12, 27), TUE)
    on_cme = futures.fetch_bars(request)
    on_nyse = equities.fetch_bars(request)

    assert on_cme.frame.height == 2 and on_cme.dropped == {}
    assert on_nyse.frame.height == 1 and on_nyse.dropped == {"extended_hours": 1}
