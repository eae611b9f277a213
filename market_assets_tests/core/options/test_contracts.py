"""OSI contract symbols: parsed and built in one place, round trips, adjusted roots."""

import datetime as dt

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from market_assets.core.options.contracts import (
    OptionContract,
    is_adjusted_root,
    osi_symbol,
    parse_osi,
    parse_osi_column,
)


def test_parse_osi_given_padded_symbol_returns_root_expiration_kind_and_strike():
    contract = parse_osi("AAPL  250221C00250000")

    assert contract == OptionContract("AAPL", dt.date(2025, 2, 21), "call", 250.0)
    assert contract.symbol == "AAPL  250221C00250000"
    assert not contract.adjusted


def test_parse_osi_given_compact_vendor_symbol_builds_the_padded_one():
    contract = parse_osi("SPY250117P00450500")

    assert (contract.root, contract.kind, contract.strike) == ("SPY", "put", 450.5)
    assert contract.symbol == "SPY   250117P00450500"


def test_parse_osi_given_adjusted_root_keeps_it_and_flags_the_contract():
    contract = parse_osi("AAPL1250221P00012500")

    assert contract.root == "AAPL1"
    assert contract.adjusted
    assert is_adjusted_root("AAPL2") and not is_adjusted_root("SPXW")


@pytest.mark.parametrize("symbol", ["AAPL", "AAPL  251321C00250000", "AAPL  250221X00250000", ""])
def test_parse_osi_given_malformed_symbol_raises_error_naming_it(symbol):
    with pytest.raises(ValueError, match=repr(symbol).replace("(", r"\(")):
        parse_osi(symbol)


@pytest.mark.parametrize(
    ("root", "strike", "message"),
    [("aapl", 10.0, "root"), ("TOOLONGX", 10.0, "root"), ("AAPL", 0.0005, "strike")],
)
def test_osi_symbol_given_invalid_field_raises_error_naming_the_field(root, strike, message):
    with pytest.raises(ValueError, match=message):
        osi_symbol(root, dt.date(2025, 2, 21), "call", strike)


@given(
    root=st.from_regex(r"[A-Z]{1,5}[0-9]?", fullmatch=True),
    expiration=st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)),
    kind=st.sampled_from(["call", "put"]),
    units=st.integers(1, 99_999_999),
)
def test_osi_symbol_round_trips_through_parse_osi(root, expiration, kind, units):
    strike = units / 1000

    symbol = osi_symbol(root, expiration, kind, strike)
    parsed = parse_osi(symbol)

    assert len(symbol) == 21
    assert parsed == OptionContract(root, expiration, kind, strike)
    assert parse_osi(symbol.replace(" ", "")) == parsed  # the compact form too
    assert parse_osi_column(pl.Series([symbol])).row(0) == (
        symbol,
        root,
        expiration,
        kind,
        strike,
    )


def test_parse_osi_column_given_unparseable_rows_returns_nulls_for_them():
    parsed = parse_osi_column(pl.Series(["AAPL  250221C00250000", "garbage", None]))

    assert parsed.get_column("root").to_list() == ["AAPL", None, None]
    assert parsed.get_column("strike").to_list() == [250.0, None, None]
