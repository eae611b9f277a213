"""CSV files cut mid-line (an interrupted download or copy) are one error for the file."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from market_assets.core.providers.base import ActionsRequest, BarRequest
from market_assets.core.providers.files import BadFileError, FilesActionsProvider, FilesProvider

D = dt.date
HEADER = "date,open,high,low,close,volume\n"
DAYS = ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05")


def rows(days: tuple[str, ...] = DAYS) -> str:
    return "".join(f"{day},100,101,99,100.5,1000\n" for day in days)


def provider(directory: Path, **settings) -> FilesProvider:
    return FilesProvider.from_config(
        {"kind": "files", "directory": str(directory), "columns": {"ts": "date"}, **settings}
    )


def daily(*symbols: str) -> BarRequest:
    return BarRequest("bars_1d", symbols, "1d", D(2024, 1, 2), D(2024, 1, 9))


def test_a_file_cut_mid_line_fails_its_symbol_once_naming_file_and_line(tmp_path):
    (tmp_path / "AAPL.csv").write_text(HEADER + rows())
    (tmp_path / "MSFT.csv").write_text(HEADER + rows(DAYS[:3]) + "2024-01-05,100,101,9")

    result = provider(tmp_path).fetch_bars(daily("AAPL", "MSFT"))

    assert result.frame["symbol"].to_list() == ["AAPL"] * 4
    assert set(result.failures) == {"MSFT"}
    message = result.failures["MSFT"]
    assert "\n" not in message
    assert f"{tmp_path / 'MSFT.csv'} line 5: truncated file: its last line has 4 of 6" in message
    assert "the file ends inside it" in message
    assert "none of its rows were used" in message


def test_a_short_last_line_after_a_newline_is_a_truncated_file_too(tmp_path):
    text = "20240102 00:00,1,2,0.5,1.5,10\n20240103 00:00,1,2,0.5\n"
    (tmp_path / "aapl.csv.gz").write_bytes(gzip.compress(text.encode()))
    files = provider(
        tmp_path,
        pattern="{symbol_lower}.csv.gz",
        header=False,
        columns={},
        column_order=["ts", "open", "high", "low", "close", "volume"],
        timestamp_format="%Y%m%d %H:%M",
    )

    with pytest.raises(BadFileError, match=r"aapl\.csv\.gz line 2: truncated file: .* 4 of 6"):
        files.fetch_bars(daily("AAPL"))


def test_a_shared_file_cut_mid_line_fails_every_symbol_with_one_message(tmp_path):
    (tmp_path / "all.csv").write_text(
        "symbol," + HEADER
        + "".join(f"{s},{day},100,101,99,100.5,1000\n" for day in DAYS for s in ("AAPL", "MSFT"))
        + "AAPL,2024-01-08,100,1"
    )  # fmt: skip
    files = provider(tmp_path, pattern="all.csv", columns={"ts": "date", "symbol": "symbol"})

    with pytest.raises(BadFileError) as raised:
        files.fetch_bars(daily("AAPL", "MSFT"))

    message = str(raised.value)
    assert message.count("truncated file") == 1
    assert f"{tmp_path / 'all.csv'} line 10: truncated file: its last line has 4 of 7" in message


def test_a_complete_file_without_a_final_newline_or_with_blank_lines_is_read_whole(tmp_path):
    (tmp_path / "AAPL.csv").write_text(HEADER + rows().rstrip("\n"))
    (tmp_path / "MSFT.csv").write_text(HEADER + rows() + "\n\n")

    result = provider(tmp_path).fetch_bars(daily("AAPL", "MSFT"))

    assert result.failures == {}
    assert result.frame.height == 8


def test_rows_that_all_omit_a_trailing_empty_column_are_not_a_truncated_file(tmp_path):
    (tmp_path / "AAPL.csv").write_text(
        "date,open,high,low,close,volume,note\n" + rows()
    )

    result = provider(tmp_path).fetch_bars(daily("AAPL"))

    assert result.failures == {}
    assert result.frame.height == 4


def test_an_actions_file_cut_mid_line_is_named_as_truncated(tmp_path):
    (tmp_path / "AAPL.csv").write_text(HEADER + rows())
    (tmp_path / "actions.csv").write_text(
        "symbol,ex_date,split,dividend\nAAPL,2024-01-03,1,0.24\nAAPL,2024-01-0"
    )
    files = FilesProvider.from_config(
        {
            "kind": "files",
            "directory": str(tmp_path),
            "columns": {"ts": "date"},
            "currency": "USD",
            "actions": {
                "pattern": "actions.csv",
                "columns": {"ex_date": "ex_date", "split": "split", "dividend": "dividend",
                            "symbol": "symbol"},
            },
        }
    )  # fmt: skip
    assert isinstance(files, FilesActionsProvider)

    with pytest.raises(BadFileError, match=r"actions\.csv line 3: truncated file"):
        files.fetch_actions(ActionsRequest(("AAPL",), D(2024, 1, 2), D(2024, 1, 9)))
