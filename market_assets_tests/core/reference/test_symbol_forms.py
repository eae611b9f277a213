"""Ticker spellings of NASDAQ, the SEC and iShares mapped to CQS, the canonical form."""

import pytest

from market_assets.core.reference.symbol_forms import (
    cqs_from_compact,
    cqs_from_nasdaq,
    cqs_from_sec,
)
from market_assets.core.symbols import validate_symbol


@pytest.mark.parametrize(
    ("nasdaq", "cqs"),
    [
        ("BRK B", "BRK.B"),
        ("BRK.B", "BRK.B"),
        ("ABR-D", "ABRpD"),
        ("AACT+", "AACT.WS"),
        ("ABC+A", "ABC.WS.A"),
        ("AACT=", "AACT.U"),
        ("XYZ^", "XYZr"),
        ("XYZ#", "XYZw"),
        ("AAPL", "AAPL"),
    ],
)
def test_cqs_from_nasdaq_maps_every_suffix_to_a_valid_symbol(nasdaq, cqs):
    assert cqs_from_nasdaq(nasdaq) == cqs
    assert validate_symbol(cqs) == cqs


@pytest.mark.parametrize(
    ("sec", "cqs"),
    [
        ("BRK-B", "BRK.B"),
        ("JPM-PC", "JPMpC"),
        ("CTA-PA", "CTApA"),
        ("GRP-UN", "GRP.U"),
        ("XYZ-WT", "XYZ.WS"),
        ("XYZ-WTA", "XYZ.WS.A"),
        ("XYZ-RI", "XYZr"),
        ("MSFT", "MSFT"),
    ],
)
def test_cqs_from_sec_maps_the_secs_dashes(sec, cqs):
    assert cqs_from_sec(sec) == cqs


def test_cqs_from_compact_restores_the_dot_only_when_another_source_knows_it():
    known = {"BRK.B", "BF.B", "NWSA"}

    assert cqs_from_compact("BRKB", known) == "BRK.B"
    assert cqs_from_compact("NWSA", known) == "NWSA"
    assert cqs_from_compact("GOOGL", known) == "GOOGL"
