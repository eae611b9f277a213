"""The `files` provider: real Lean and zipline samples, and files generated here."""

from __future__ import annotations

import datetime as dt
import gzip
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from market_assets.core.config import AppConfig
from market_assets.core.errors import ConfigError
from market_assets.core.providers.base import (
    ActionsRequest,
    BadRequestError,
    BarRequest,
    UnknownSymbolError,
)
from market_assets.core.providers.files import (
    BadFileError,
    FilesActionsProvider,
    FilesProvider,
)
from market_assets.core.providers.files_mapping import parse_mapping
from market_assets.core.providers.registry import ProviderRegistry
from market_assets_tests.realdata import require

D = dt.date
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
HEADER = "date,open,high,low,close,volume\n"


def repo_entry(name: str, **overrides: Any) -> dict[str, Any]:
    """A provider entry's settings from the repository's providers.yaml, with overrides."""
    providers = yaml.safe_load((REPO_CONFIGS / "providers.yaml").read_text())["providers"]
    entry = providers[name]
    return {"kind": entry["kind"], **entry["settings"], **overrides}


def daily_rows(first: D, count: int, close: float = 100.0) -> str:
    """`count` weekday rows of plausible daily bars from `first` (CSV, no header)."""
    rows, day = [], first
    while len(rows) < count:
        if day.weekday() < 5:
            price = close + len(rows)
            rows.append(f"{day},{price - 1},{price + 1},{price - 2},{price},{1000 + len(rows)}\n")
        day += dt.timedelta(days=1)
    return "".join(rows)


def provider(directory: Path, **settings: Any) -> FilesProvider:
    return FilesProvider.from_config({"kind": "files", "directory": str(directory), **settings})


def daily(symbols: tuple[str, ...], start: D, end: D) -> BarRequest:
    return BarRequest("bars_1d", symbols, "1d", start, end)


# ---------------------------------------------------------------------------- real samples


def test_lean_daily_zip_through_the_repo_mapping_gives_raw_prices_across_the_7_for_1_split():
    sample = require("lean/daily__aapl.zip")
    lean = FilesProvider.from_config(
        repo_entry("lean_daily", directory=str(sample.parent), pattern="daily__{symbol_lower}.zip")
    )

    result = lean.fetch_bars(daily(("AAPL",), D(2014, 6, 2), D(2014, 6, 14)))

    bars = result.frame
    assert len(bars) == 10
    assert bars["ts"][0] == dt.datetime(2014, 6, 2, tzinfo=dt.UTC)
    by_day = {row["ts"].date(): row for row in bars.iter_rows(named=True)}
    assert by_day[D(2014, 6, 6)]["close"] == pytest.approx(645.57)
    assert by_day[D(2014, 6, 9)]["close"] == pytest.approx(93.70)
    assert by_day[D(2014, 6, 6)]["volume"] == 12_116_671
    assert by_day[D(2014, 6, 9)]["volume"] == 72_875_948
    assert by_day[D(2014, 6, 2)]["open"] == 634.0
    assert result.notes == {}
    assert result.failures == {}


def test_zipline_csvdir_split_adjusted_prices_are_restored_to_raw_with_the_listed_split():
    sample = require("zipline/csvdir_samples__csvdir__daily__AAPL.csv.gz")
    csvdir = FilesProvider.from_config(
        repo_entry(
            "zipline_csvdir",
            directory=str(sample.parent),
            pattern="csvdir_samples__csvdir__daily__{symbol}.csv.gz",
        )
    )

    bars = csvdir.fetch_bars(daily(("AAPL",), D(2014, 6, 5), D(2014, 6, 11)))
    actions = csvdir.fetch_actions(ActionsRequest(("AAPL",), D(2014, 1, 1), D(2015, 1, 1)))

    assert isinstance(csvdir, FilesActionsProvider)
    restored = {"price_adjustment": "split_adjusted, restored to raw with 1 listed split(s)"}
    assert bars.notes == restored
    closes = dict(zip(bars.frame["ts"].dt.date(), bars.frame["close"], strict=True))
    assert closes[D(2014, 6, 6)] == pytest.approx(645.57, abs=1e-4)  # 92.224289 x 7: raw
    assert closes[D(2014, 6, 9)] == pytest.approx(93.699997)
    splits = actions.frame.filter(pl.col("action_type") == "split")
    assert splits.select("ex_date", "ratio").rows() == [(D(2014, 6, 9), 7.0)]
    dividends = actions.frame.filter(pl.col("action_type") == "dividend")
    assert dividends["ex_date"].to_list() == [
        D(2014, 2, 6),
        D(2014, 5, 8),
        D(2014, 8, 7),
        D(2014, 11, 6),
    ]
    assert dividends["amount"].to_list() == pytest.approx([3.04997, 3.29, 0.47, 0.47])
    assert dividends["currency"].unique().to_list() == ["USD"]


def test_repository_example_entries_are_valid_mappings():
    lean = parse_mapping({k: v for k, v in repo_entry("lean_daily").items() if k != "kind"})
    csvdir = parse_mapping({k: v for k, v in repo_entry("zipline_csvdir").items() if k != "kind"})

    assert (lean.header, lean.price_scale, lean.price_adjustment) == (False, 0.0001, "raw")
    assert lean.file_columns() == ("ts", "open", "high", "low", "close", "volume")
    assert csvdir.price_adjustment == "split_adjusted" and csvdir.has_actions
    assert csvdir.column_for("ts") == "date"


# ---------------------------------------------------------------------------- generated files


def test_csv_with_tz_aware_timestamps_gives_utc_bar_opens(tmp_path):
    (tmp_path / "AAPL.csv").write_text(
        "ts,open,high,low,close,volume\n"
        "2024-03-08 09:30:00-05:00,10,11,9,10.5,100\n"
        "2024-03-08 09:31:00-05:00,10.5,11,10,10.6,200\n"
        "2024-03-11 09:30:00-04:00,11,12,10,11.5,300\n"
    )
    minute = provider(tmp_path, granularity="1m")

    result = minute.fetch_bars(
        BarRequest("bars_1m", ("AAPL",), "1m", D(2024, 3, 8), D(2024, 3, 12))
    )

    assert result.frame["ts"].to_list() == [
        dt.datetime(2024, 3, 8, 14, 30, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 8, 14, 31, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 11, 13, 30, tzinfo=dt.UTC),  # New York is on summer time now
    ]
    assert result.frame["volume"].to_list() == [100, 200, 300]
    assert result.frame["granularity"].unique().to_list() == ["1m"]


def test_naive_bar_close_stamps_in_new_york_become_utc_bar_opens(tmp_path):
    (tmp_path / "SPY.csv").write_text(
        "time,o,h,l,c,v\n03/08/2024 09:31,10,11,9,10.5,100\n03/11/2024 09:31,11,12,10,11.5,300\n"
    )
    minute = provider(
        tmp_path,
        granularity="1m",
        columns={"ts": "time", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"},
        timestamp_format="%m/%d/%Y %H:%M",
        timezone="America/New_York",
        timestamp_marks="close",
    )

    result = minute.fetch_bars(BarRequest("bars_1m", ("SPY",), "1m", D(2024, 3, 8), D(2024, 3, 12)))

    assert result.frame["ts"].to_list() == [
        dt.datetime(2024, 3, 8, 14, 30, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 11, 13, 30, tzinfo=dt.UTC),
    ]


def test_parquet_with_a_symbol_column_serves_each_symbol_and_reports_absent_ones(tmp_path):
    pl.DataFrame(
        {
            "ticker": ["AAPL", "AAPL", "MSFT", "MSFT"],
            "day": [D(2024, 3, 7), D(2024, 3, 8), D(2024, 3, 7), D(2024, 3, 8)],
            "open": [170.0, 171.0, 400.0, 401.0],
            "high": [172.0, 173.0, 402.0, 403.0],
            "low": [169.0, 170.0, 399.0, 400.0],
            "close": [171.0, 172.0, 401.0, 402.0],
            "volume": [1_000, 2_000, 3_000, 4_000],
        }
    ).write_parquet(tmp_path / "bars.parquet")
    files = provider(tmp_path, pattern="bars.parquet", columns={"symbol": "ticker", "ts": "day"})

    result = files.fetch_bars(daily(("AAPL", "MSFT", "NVDA"), D(2024, 3, 8), D(2024, 3, 9)))

    assert result.frame.select("symbol", "close").rows() == [("AAPL", 172.0), ("MSFT", 402.0)]
    assert result.frame["ts"].unique().to_list() == [dt.datetime(2024, 3, 8, tzinfo=dt.UTC)]
    assert list(result.failures) == ["NVDA"]
    assert "bars.parquet has no rows for NVDA" in result.failures["NVDA"]
    assert result.requests == 1


def test_unparseable_timestamp_fails_only_that_symbol_naming_file_line_and_field(tmp_path):
    good = daily_rows(D(2024, 1, 2), 20)
    lines = good.splitlines(keepends=True)
    lines[15] = "2024-13-45,1,2,0.5,1.5,10\n"  # line 17 of the file, counting the header
    (tmp_path / "AAPL.csv").write_text(HEADER + "".join(lines))
    (tmp_path / "MSFT.csv").write_text(HEADER + good)
    files = provider(tmp_path, columns={"ts": "date"}, timestamp_format="%Y-%m-%d")

    result = files.fetch_bars(daily(("AAPL", "MSFT"), D(2024, 1, 2), D(2024, 2, 1)))

    assert result.frame["symbol"].unique().to_list() == ["MSFT"]
    assert len(result.frame) == 20
    message = result.failures["AAPL"]
    assert f"{tmp_path / 'AAPL.csv'} line 17: field ts (column 'date'): '2024-13-45'" in message
    assert "is not a timestamp in format '%Y-%m-%d'" in message
    assert "symbols=AAPL" in message


def test_unreadable_price_is_named_with_its_line_field_value_and_later_bad_lines_counted(
    tmp_path,
):
    lines = daily_rows(D(2024, 1, 2), 5).splitlines(keepends=True)
    lines[1] = lines[1].replace(",101.0,", ",1O1.0,", 1)  # the letter O typed for a zero
    lines[3] = lines[3].replace(",103.0,", ",n/a,", 1)
    (tmp_path / "KO.csv").write_text(HEADER + "".join(lines))
    files = provider(tmp_path, columns={"ts": "date"})

    with pytest.raises(BadFileError) as raised:
        files.fetch_bars(daily(("KO",), D(2024, 1, 2), D(2024, 2, 1)))

    assert "KO.csv line 3: field close (column 'close'): '1O1.0' is not a number" in str(
        raised.value
    )
    assert "(1 more bad lines)" in str(raised.value)


def test_empty_or_nan_price_passes_on_as_null_for_quarantine_not_as_a_file_error(tmp_path):
    (tmp_path / "IBM.csv").write_text(
        HEADER + "2024-01-02,1,2,0.5,,10\n2024-01-03,1,2,0.5,NaN,11\n2024-01-04,1,2,0.5,1.5,12\n"
    )
    files = provider(tmp_path, columns={"ts": "date"})

    result = files.fetch_bars(daily(("IBM",), D(2024, 1, 2), D(2024, 1, 5)))

    assert result.frame["close"].to_list() == [None, None, 1.5]
    assert result.failures == {}


def test_every_symbol_failing_raises_one_error_naming_each_file(tmp_path):
    (tmp_path / "AAPL.csv").write_text(HEADER + "not-a-date,1,2,0.5,1.5,10\n")
    files = provider(tmp_path, columns={"ts": "date"}, timestamp_format="%Y-%m-%d")

    with pytest.raises(BadFileError) as raised:
        files.fetch_bars(daily(("AAPL", "MSFT"), D(2024, 1, 2), D(2024, 2, 1)))

    message = str(raised.value)
    assert message.startswith("files dataset=bars_1d symbols=AAPL,MSFT range=[2024-01-02,")
    assert "AAPL.csv line 2: field ts" in message
    assert f"no file for MSFT: {tmp_path / 'MSFT.csv'} does not exist" in message


def test_only_missing_files_raise_unknown_symbol_error(tmp_path):
    files = provider(tmp_path, columns={"ts": "date"})

    with pytest.raises(UnknownSymbolError, match="no file for ZZZ"):
        files.fetch_bars(daily(("ZZZ",), D(2024, 1, 2), D(2024, 2, 1)))


def test_missing_folder_is_a_bad_request_naming_the_setting(tmp_path):
    files = provider(tmp_path / "nowhere", columns={"ts": "date"})

    with pytest.raises(BadRequestError, match=r"folder .*nowhere does not exist \(settings"):
        files.fetch_bars(daily(("AAPL",), D(2024, 1, 2), D(2024, 2, 1)))


def test_ragged_line_in_a_headerless_gzip_file_is_named(tmp_path):
    text = "20240102 00:00,1,2,0.5,1.5,10\n20240103 00:00,1,2,0.5,1.5,10,99\n"
    (tmp_path / "aapl.csv.gz").write_bytes(gzip.compress(text.encode()))
    files = provider(
        tmp_path,
        pattern="{symbol_lower}.csv.gz",
        header=False,
        column_order=["ts", "open", "high", "low", "close", "volume"],
        timestamp_format="%Y%m%d %H:%M",
    )

    with pytest.raises(BadFileError, match=r"aapl\.csv\.gz: .*line 2 has 7 fields, expected 6"):
        files.fetch_bars(daily(("AAPL",), D(2024, 1, 2), D(2024, 2, 1)))


def test_zip_holding_two_files_is_rejected_naming_them(tmp_path):
    with zipfile.ZipFile(tmp_path / "aapl.zip", "w") as archive:
        archive.writestr("a.csv", "20240102 00:00,1,2,0.5,1.5,10\n")
        archive.writestr("b.csv", "20240102 00:00,1,2,0.5,1.5,10\n")
    files = FilesProvider.from_config(
        repo_entry("lean_daily", directory=str(tmp_path), pattern="{symbol_lower}.zip")
    )

    with pytest.raises(BadFileError, match=r"exactly one CSV file, it holds \['a.csv', 'b.csv'\]"):
        files.fetch_bars(daily(("AAPL",), D(2024, 1, 2), D(2024, 2, 1)))


def test_headerless_zip_is_scaled_and_skips_unused_columns(tmp_path):
    with zipfile.ZipFile(tmp_path / "aapl.zip", "w") as archive:
        archive.writestr("aapl.csv", "x,20240102 00:00,1855000,1880000,1849000,1870000,5000\n")
    files = provider(
        tmp_path,
        pattern="{symbol_lower}.zip",
        header=False,
        column_order=["skip", "ts", "open", "high", "low", "close", "volume"],
        timestamp_format="%Y%m%d %H:%M",
        timezone="America/New_York",
        price_scale=0.0001,
    )

    result = files.fetch_bars(daily(("AAPL",), D(2024, 1, 2), D(2024, 1, 3)))

    assert result.frame.select("open", "high", "low", "close", "volume").rows() == [
        (185.5, 188.0, 184.9, 187.0, 5000)
    ]
    assert result.frame["ts"].to_list() == [dt.datetime(2024, 1, 2, tzinfo=dt.UTC)]


def test_epoch_nanosecond_parquet_timestamps_are_read_with_timestamp_unit(tmp_path):
    first = dt.datetime(2024, 3, 8, 14, 30, tzinfo=dt.UTC)
    nanos = int(first.timestamp()) * 1_000_000_000
    pl.DataFrame(
        {
            "ts_event": [nanos, nanos + 60_000_000_000],
            "open": [1.0, 1.1],
            "high": [1.2, 1.2],
            "low": [0.9, 1.0],
            "close": [1.1, 1.15],
            "volume": [5.0, 7.0],
        }
    ).write_parquet(tmp_path / "ES.parquet")
    files = provider(
        tmp_path,
        pattern="{symbol}.parquet",
        granularity="1m",
        columns={"ts": "ts_event"},
        timestamp_unit="ns",
    )

    result = files.fetch_bars(BarRequest("bars_1m", ("ES",), "1m", D(2024, 3, 8), D(2024, 3, 9)))

    assert result.frame["ts"].to_list() == [first, first + dt.timedelta(minutes=1)]
    assert result.frame["volume"].dtype == pl.Int64


def test_a_granularity_the_files_do_not_hold_is_a_bad_request(tmp_path):
    files = provider(tmp_path, columns={"ts": "date"})

    with pytest.raises(BadRequestError, match="these files hold 1d bars, not 1m"):
        files.fetch_bars(BarRequest("bars_1m", ("AAPL",), "1m", D(2024, 1, 2), D(2024, 1, 3)))


# ---------------------------------------------------------------------------- the mapping


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"timezone": "America/NewYork"}, "settings.timezone: unknown time zone 'America/NewYork'"),
        ({"colums": {}}, "settings.colums: Extra inputs are not permitted"),
        ({"header": False}, "settings: header: false needs column_order"),
        ({"columns": {"adj_open": "x"}}, "unknown canonical field(s) ['adj_open']"),
        ({"pattern": "all.csv"}, "map its symbol column (columns: {symbol: ticker})"),
        ({"pattern": "../{symbol}.csv"}, "must stay inside `directory`"),
        ({"pattern": "{ticker}.csv"}, "unknown placeholder(s) ['ticker']"),
        ({"price_scale": 0}, "settings.price_scale: Input should be greater than 0"),
    ],
)
def test_bad_mapping_fails_fast_naming_the_key(settings, expected):
    with pytest.raises(ValueError) as raised:
        FilesProvider.from_config({"kind": "files", "directory": "x", **settings})

    assert expected in str(raised.value)


def test_bad_mapping_in_providers_yaml_names_the_file_and_provider(tmp_path):
    (tmp_path / "universes.yaml").write_text("universes:\n  demo:\n    symbols: [AAPL]\n")
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n  bars_1d:\n    granularity: 1d\n    start: '2009-01-02'\n"
        "    providers: [mine]\n"
    )
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  mine:\n    kind: files\n"
        "    settings: {directory: x, timezone: Mars/Olympus}\n"
    )

    with pytest.raises(ConfigError) as raised:
        ProviderRegistry.from_app_config(AppConfig.load(tmp_path))

    assert str(raised.value).startswith(
        f"{tmp_path / 'providers.yaml'}: provider 'mine' (kind files): settings.timezone: "
        "unknown time zone 'Mars/Olympus'"
    )


def test_provider_without_action_columns_is_not_an_actions_source(tmp_path):
    files = provider(tmp_path, columns={"ts": "date"})

    assert not hasattr(files, "fetch_actions")
    assert files.granularities == ("1d",)


def test_bad_row_in_a_shared_csv_fails_only_the_symbol_it_belongs_to(tmp_path):
    (tmp_path / "all.csv").write_text(
        "symbol,date,open,high,low,close,volume\n"
        "AAPL,2024-01-02,1,2,0.5,1.5,10\n"
        "MSFT,2024-01-02,1,2,0.5,1.5,10\n"
        "\n"
        "MSFT,2024-01-03,1,2,0.5,one,10\n"
    )
    files = provider(tmp_path, pattern="all.csv", columns={"ts": "date", "symbol": "symbol"})

    result = files.fetch_bars(daily(("AAPL", "MSFT"), D(2024, 1, 2), D(2024, 1, 4)))

    assert result.frame["symbol"].to_list() == ["AAPL"]
    assert (
        "all.csv line 5: field close (column 'close'): 'one' is not a number"
        in (result.failures["MSFT"])
    )
