"""The bar rules on real vendor files: what they catch and how often they cry wolf.

Data: Lean's RAW daily AAPL, SPY and IBM (1998-2021) and zipline's csvdir samples (prices
already split-adjusted while the split is still listed). The history is judged the way the
pipeline judges it: runs of 250 sessions, each with the 60 sessions before it as lookback.
Skips, naming the missing file, when MARKET_ASSETS_REALDATA has no samples.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.rules import RuleContext, check_bars, load_thresholds
from market_assets.core.schemas import ACTION_SCHEMA, BAR_SCHEMA
from market_assets_tests.realdata import (
    lean_actions,
    lean_daily_bars,
    lean_factor_file,
    zipline_csvdir,
)

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
AAPL_SPLITS = [
    dt.date(2000, 6, 21),
    dt.date(2005, 2, 28),
    dt.date(2014, 6, 9),
    dt.date(2020, 8, 31),
]
AAPL_CRASH = dt.date(2000, 9, 29)
RUN_SESSIONS = 250
LOOKBACK = 60


def judge_history(
    bars: pl.DataFrame,
    symbol: str,
    actions: pl.DataFrame | None = None,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> pl.DataFrame:
    """Results of every session of `bars` (or [first, last]), judged run by run."""
    thresholds = load_thresholds(REPO_CONFIGS)
    days = bars.get_column("ts").dt.date()
    sessions = get_calendar().sessions(first or days.min(), last or days.max())
    results = []
    for start in range(0, len(sessions), RUN_SESSIONS):
        judged = sessions[start : start + RUN_SESSIONS]
        in_run = pl.col("ts").dt.date().is_between(judged[0], judged[-1])
        context = RuleContext(
            "bars_1d",
            "1d",
            tuple((symbol, day) for day in judged),
            thresholds,
            history=bars.filter(pl.col("ts").dt.date() < judged[0]).tail(LOOKBACK),
            actions=actions,
        )
        results.append(check_bars(bars.filter(in_run), context).results)
    return pl.concat(results)


def flags(results: pl.DataFrame, rule: str | None = None) -> pl.DataFrame:
    failed = results.filter(~pl.col("passed"))
    return failed if rule is None else failed.filter(pl.col("rule") == rule)


def csvdir_bars_and_actions(ticker: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """zipline csvdir sample as canonical bars plus the splits/dividends its columns list."""
    raw = zipline_csvdir(ticker)
    bars = raw.select(
        pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
        pl.lit(ticker).alias("symbol"),
        "open",
        "high",
        "low",
        "close",
        pl.col("volume").cast(pl.Int64),
        pl.lit(None, pl.Int64).alias("trade_count"),
        pl.lit(None, pl.Float64).alias("vwap"),
        pl.lit("1d").alias("granularity"),
        pl.lit("zipline").alias("source"),
    ).select(pl.col(c).cast(t) for c, t in BAR_SCHEMA.items())
    listed = pl.concat(
        [
            raw.filter(pl.col("split") != 1.0).select(
                pl.lit("split").alias("action_type"),
                pl.col("split").alias("ratio"),
                pl.lit(None, pl.Float64).alias("amount"),
                "date",
            ),
            raw.filter(pl.col("dividend") > 0).select(
                pl.lit("dividend").alias("action_type"),
                pl.lit(None, pl.Float64).alias("ratio"),
                pl.col("dividend").alias("amount"),
                "date",
            ),
        ]
    )
    actions = listed.select(
        pl.lit(ticker).alias("symbol"),
        pl.col("date").alias("ex_date"),
        "action_type",
        "ratio",
        "amount",
        pl.lit("USD").alias("currency"),
        pl.lit("zipline").alias("source"),
    ).select(pl.col(c).cast(t) for c, t in ACTION_SCHEMA.items())
    return bars, actions


def test_every_aapl_split_is_flagged_as_unexplained_and_the_2000_crash_is_not_a_split():
    results = judge_history(lean_daily_bars("aapl"), "AAPL")

    jumps = flags(results, "split_sized_jumps")
    assert jumps["session"].to_list() == AAPL_SPLITS
    assert all('"kind": "unexplained"' in sample for sample in jumps["sample"])
    assert AAPL_CRASH not in jumps["session"].to_list()
    assert AAPL_CRASH in flags(results, "return_outliers")["session"].to_list()
    assert flags(results).filter(pl.col("severity") == "ERROR").is_empty()


def test_aapl_splits_and_dividends_from_lean_factor_files_explain_every_jump():
    actions = lean_actions("AAPL", lean_factor_file("aapl"))
    results = judge_history(lean_daily_bars("aapl"), "AAPL", actions=actions)

    assert flags(results, "split_sized_jumps").is_empty()
    reflected = results.filter(pl.col("rule") == "split_not_reflected")
    assert reflected["session"].to_list() == AAPL_SPLITS
    assert reflected["passed"].all()
    assert results.filter(pl.col("rule") == "dividend_mismatch")["passed"].all()


def test_ibm_2x_opening_print_of_2002_12_23_is_a_spike_and_its_1999_split_a_jump():
    results = judge_history(lean_daily_bars("ibm"), "IBM")

    assert flags(results, "price_spikes")["session"].to_list() == [dt.date(2002, 12, 23)]
    assert flags(results, "split_sized_jumps")["session"].to_list() == [dt.date(1999, 5, 27)]


def test_spy_2010_2019_raises_no_error_and_few_warnings_per_thousand_sessions():
    results = judge_history(
        lean_daily_bars("spy"), "SPY", first=dt.date(2010, 1, 4), last=dt.date(2019, 12, 31)
    )
    sessions = results["session"].n_unique()
    flagged = flags(results)

    per_thousand = 1000 * flagged.height / sessions
    print(
        f"\nSPY 2010-2019: {sessions} sessions, {flagged.height} flags "
        f"({per_thousand:.2f} per 1,000 sessions): "
        f"{dict(flagged.group_by('rule').len().sort('rule').rows())}"
    )
    assert sessions == 2516
    assert flagged.filter(pl.col("severity") == "ERROR").is_empty()
    assert per_thousand < 2.0


@pytest.mark.parametrize(
    ("ticker", "listed_split"), [("AAPL", dt.date(2014, 6, 9)), ("KO", dt.date(2012, 8, 13))]
)
def test_zipline_csvdir_prices_already_adjusted_while_the_split_is_listed_are_caught(
    ticker, listed_split
):
    bars, actions = csvdir_bars_and_actions(ticker)

    results = judge_history(bars, ticker, actions=actions)

    caught = flags(results, "split_not_reflected")
    assert caught["session"].to_list() == [listed_split]
    assert caught["severity"].to_list() == ["ERROR"]
    assert '"kind": "no_jump"' in caught["sample"][0]


def test_measurement_table_of_flags_per_thousand_sessions():
    """Prints the detection and false-alarm figures quoted in the issue note."""
    rows = []
    for symbol in ("aapl", "spy", "ibm"):
        results = judge_history(lean_daily_bars(symbol), symbol.upper())
        sessions = results["session"].n_unique()
        for severity in ("ERROR", "WARN"):
            found = flags(results).filter(pl.col("severity") == severity)
            by_rule = dict(found.group_by("rule").len().sort("rule").rows())
            rows.append(
                (
                    symbol.upper(),
                    "1998-2021",
                    sessions,
                    severity,
                    found.height,
                    round(1000 * found.height / sessions, 2),
                    by_rule,
                )
            )
    print("\nsymbol period sessions severity flags per_1000 by_rule")
    for row in rows:
        print(*row)
    assert {row[0] for row in rows} == {"AAPL", "SPY", "IBM"}
