"""ticker_history: renames keep the security, reused tickers get a new one, delistings end."""

import datetime as dt

import polars as pl

from market_assets.core.reference.schemas import CONSTITUENT_SCHEMA, REFERENCE_SCHEMA, empty
from market_assets.core.reference.securities import build_ticker_history, securities_of

D = [dt.date(2024, 1, day) for day in (2, 3, 4, 5, 8, 9, 10, 11)]


def listings(days: dict[str, tuple[list[int], int | None]]) -> pl.DataFrame:
    """Reference rows: symbol -> (positions in D, cik)."""
    rows = [
        {"session": D[i], "symbol": s, "cik": cik, "name": f"{s} Inc", "exchange": "NYSE"}
        for s, (positions, cik) in days.items()
        for i in positions
    ]
    return pl.DataFrame(rows).with_columns(pl.col("cik").cast(pl.Int64))


def members(days: dict[str, tuple[list[int], int | None]]) -> pl.DataFrame:
    rows = [
        {"session": D[i], "index": "SP500", "symbol": s, "cik": cik, "name": None}
        for s, (positions, cik) in days.items()
        for i in positions
    ]
    return pl.DataFrame(rows).with_columns(
        pl.col("cik").cast(pl.Int64), pl.col("name").cast(pl.String)
    )


def history_of(frame: pl.DataFrame, symbol: str) -> list[tuple]:
    return (
        securities_of(frame, symbol)
        .select("security_id", "symbol", "valid_from", "valid_to", "change", "end_change")
        .rows()
    )


def test_a_ticker_change_under_one_cik_is_a_rename_of_the_same_security():
    snapshots = listings(
        {"FB": ([0, 1, 2], 1326801), "META": ([3, 4], 1326801), "X": ([0, 1, 2, 3, 4], 7)}
    )

    history, stats = build_ticker_history(snapshots, empty(CONSTITUENT_SCHEMA))

    assert history_of(history, "META") == [
        ("FB@2024-01-02", "FB", D[0], D[3], "listed", "renamed"),
        ("FB@2024-01-02", "META", D[3], None, "renamed", None),
    ]
    assert stats.renames == 1 and stats.delistings == 0


def test_a_ticker_that_disappears_from_listings_is_delisted():
    snapshots = listings({"GONE": ([0, 1], 5), "X": ([0, 1, 2, 3], 7)})

    history, stats = build_ticker_history(snapshots, empty(CONSTITUENT_SCHEMA))

    assert history_of(history, "GONE") == [
        ("GONE@2024-01-02", "GONE", D[0], D[2], "listed", "delisted")
    ]
    assert stats.delistings == 1


def test_a_reused_ticker_under_another_cik_is_a_new_security():
    snapshots = listings({"AAL": ([0, 1], 111), "X": ([0, 1, 2, 3, 4, 5], 7)})
    reused = listings({"AAL": ([4, 5], 6201)})

    history, _ = build_ticker_history(pl.concat([snapshots, reused]), empty(CONSTITUENT_SCHEMA))

    ids = securities_of(history, "AAL")["security_id"].unique().sort().to_list()
    assert ids == ["AAL@2024-01-02", "AAL@2024-01-08"]


def test_the_same_ticker_and_cik_back_after_a_delisting_is_relisted():
    snapshots = listings({"PCG": ([0, 1, 4, 5], 1004980), "X": ([0, 1, 2, 3, 4, 5], 7)})

    history, stats = build_ticker_history(snapshots, empty(CONSTITUENT_SCHEMA))

    assert [r[4] for r in history_of(history, "PCG")] == ["listed", "relisted"]
    assert securities_of(history, "PCG")["security_id"].n_unique() == 1
    assert stats.relistings == 1


def test_leaving_an_index_is_unobserved_not_delisted_and_without_cik_not_linked():
    index = members({"PCG": ([0, 1, 4, 5], None), "X": ([0, 1, 2, 3, 4, 5], 7)})

    history, _ = build_ticker_history(empty(REFERENCE_SCHEMA), index)

    rows = history_of(history, "PCG")
    assert [r[5] for r in rows] == ["unobserved", None]
    assert [r[0] for r in rows] == ["PCG@2024-01-02", "PCG@2024-01-08"]


def test_index_and_listing_evidence_of_one_ticker_join_into_one_interval():
    index = members({"AAPL": ([0, 1, 2, 3, 4, 5, 6], 320193)})
    listed = listings({"AAPL": ([5, 6], 320193)})

    history, _ = build_ticker_history(listed, index)

    assert history.select("security_id", "valid_from", "valid_to", "evidence").rows() == [
        ("AAPL@2024-01-02", D[0], None, "index:SP500+reference")
    ]
