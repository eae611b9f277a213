"""Point-in-time universes: fetch windows are membership plus lookback, under the ticker of
their time, and the config's partition keys resolve to the members of each session."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

from market_assets.core.calendar import get_calendar
from market_assets.core.config import (
    AppConfig,
    SymbolPartitions,
    UniverseConfig,
    bucket_key,
    bucket_of,
)
from market_assets.core.errors import ConfigError
from market_assets.core.reference.pit import (
    FetchWindow,
    MemberWindows,
    fetch_windows,
    windows_to_request,
)

MEMBERSHIP = pl.DataFrame(
    {
        "index": ["SP500"] * 4,
        "symbol": ["FB", "META", "PCG", "PCG"],
        "security_id": ["FB@2013-12-23", "FB@2013-12-23", "PCG@1996-01-02", "PCG@2022-10-03"],
        "cik": [1326801, 1326801, None, 1004980],
        "start": [
            dt.date(2013, 12, 23),
            dt.date(2022, 6, 9),
            dt.date(1996, 1, 2),
            dt.date(2022, 10, 3),
        ],
        "end": [dt.date(2022, 6, 9), None, dt.date(2019, 1, 18), None],
    }
)


def session_before(day: dt.date, count: int) -> dt.date:
    sessions = get_calendar().sessions(day - dt.timedelta(days=count * 2 + 10), day)
    return sessions[-count - 1]


def test_fetch_windows_cover_membership_plus_lookback_under_the_ticker_of_the_time():
    windows = fetch_windows(MEMBERSHIP, "SP500", lookback_sessions=5)

    by_symbol = {(w.symbol, w.first): w.last for w in windows}
    assert by_symbol[("FB", session_before(dt.date(2013, 12, 23), 5))] == dt.date(2022, 6, 8)
    assert by_symbol[("META", dt.date(2022, 6, 9))] is None  # lookback already fetched as FB
    assert ("PCG", session_before(dt.date(2022, 10, 3), 5)) in by_symbol
    assert len([w for w in windows if w.symbol == "PCG"]) == 2


def test_lookback_uses_ticker_history_for_sessions_before_a_rename():
    history = pl.DataFrame(
        {
            "security_id": ["OLD@2020-01-02", "OLD@2020-01-02"],
            "symbol": ["OLD", "NEW"],
            "valid_from": [dt.date(2020, 1, 2), dt.date(2021, 3, 1)],
            "valid_to": [dt.date(2021, 3, 1), None],
        }
    )
    membership = pl.DataFrame(
        {
            "index": ["SP500"],
            "symbol": ["NEW"],
            "security_id": ["OLD@2020-01-02"],
            "cik": [1],
            "start": [dt.date(2021, 3, 3)],
            "end": [None],
        },
        schema_overrides={"end": pl.Date},
    )

    windows = fetch_windows(membership, "SP500", lookback_sessions=3, history=history)

    assert windows == [
        FetchWindow("NEW", dt.date(2021, 3, 1), None),
        FetchWindow("OLD", dt.date(2021, 2, 26), dt.date(2021, 2, 26)),
    ]


def test_member_windows_answer_whether_a_symbol_is_fetched_on_a_session():
    members = MemberWindows(fetch_windows(MEMBERSHIP, "SP500", lookback_sessions=0))

    assert members.covers("FB", dt.date(2022, 6, 8))
    assert not members.covers("FB", dt.date(2022, 6, 9))
    assert members.covers("META", dt.date(2022, 6, 9))
    assert not members.covers("PCG", dt.date(2020, 6, 1))


def test_windows_to_request_returns_only_what_was_not_requested_before():
    plan = {"A": [(dt.date(2020, 1, 1), None)], "B": [(dt.date(2021, 1, 4), dt.date(2021, 2, 1))]}
    done = {"A": [(dt.date(2020, 1, 1), dt.date(2020, 6, 30))], "B": plan["B"]}

    assert windows_to_request(plan, done) == {"A": [(dt.date(2020, 7, 1), None)]}


def test_index_universe_defaults_to_bucket_partitioning():
    universe = UniverseConfig(index="SP500", lookback_sessions=250)

    assert (universe.partitioning, universe.buckets) == ("bucket", 16)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"symbols": ["AAPL"], "index": "SP500"}, "exactly one of"),
        ({"symbols": ["AAPL"], "lookback_sessions": 5}, "only applies to an `index:` universe"),
        ({"index": "S&P"}, "use 1-32 characters"),
    ],
)
def test_universe_config_given_bad_index_fields_names_the_problem(fields, message):
    with pytest.raises(ValueError, match=message):
        UniverseConfig(**fields)


def partitions() -> SymbolPartitions:
    universes = {
        "core": UniverseConfig(symbols=["AAPL", "FB"]),
        "spx": UniverseConfig(index="SP500", buckets=2),
    }
    windows = MemberWindows(fetch_windows(MEMBERSHIP, "SP500"))
    return SymbolPartitions(universes, lambda index, lookback: windows)


def test_bucket_keys_of_an_index_universe_resolve_to_the_members_of_each_session():
    parts = partitions()
    fb_key = bucket_key("spx", bucket_of("FB", 2))
    meta_key = bucket_key("spx", bucket_of("META", 2))

    assert "FB" in parts.symbols_for_key(fb_key, dt.date(2022, 6, 8))
    assert "FB" not in parts.symbols_for_key(fb_key, dt.date(2022, 6, 9))
    assert "META" in parts.symbols_for_key(meta_key, dt.date(2022, 6, 9))
    assert "META" not in parts.symbols_for_key(meta_key, dt.date(2022, 6, 8))
    assert set(parts.symbols_for_key(fb_key)) | set(parts.symbols_for_key(meta_key)) >= {
        "FB",
        "META",
    }


def test_fixed_universe_symbols_are_not_filtered_by_membership():
    parts = partitions()

    assert parts.symbols_for_key("FB", dt.date(2024, 1, 2)) == ["FB"]
    assert parts.keys_for_universe("spx", []) == ["spx~000", "spx~001"]
    assert parts.index_universe_of("spx~001") == "spx"
    assert parts.index_universe_of("AAPL") is None


def test_unknown_bucket_of_an_index_universe_raises():
    with pytest.raises(ConfigError, match="spx~007"):
        partitions().symbols_for_key("spx~007", dt.date(2024, 1, 2))


def test_repository_universes_include_an_index_universe(tmp_path: Path):
    data = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "configs/universes.yaml").read_text()
    )

    assert data["universes"]["sp500"]["index"] == "SP500"
    config = AppConfig.load(Path(__file__).resolve().parents[3] / "configs")
    assert config.universes["sp500"].partitioning == "bucket"
