"""Per-partition-key materialization metadata (io_managers.partition_figures).

The figures are summed over each key's (symbol, session) pairs with group-bys; these tests
compare them with the plain per-pair sums they replace, on bucket keys and symbol keys, with
missing pairs, several sources and quarantined rows.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.stores.layout import layout_for
from market_assets.defs.io_managers import partition_figures
from market_assets.defs.partitions import PartitionRectangle

DAYS = [dt.date(2024, 3, 7), dt.date(2024, 3, 8), dt.date(2024, 3, 11)]


def per_pair_figures(rectangle, stored, quarantined) -> dict[str, dict[str, object]]:
    """The figures summed pair by pair, the way record_partitions computed them before."""
    session = stored.get_column("ts").dt.date() if not stored.is_empty() else None
    rows: dict[tuple[str, dt.date], int] = {}
    sources: dict[tuple[str, dt.date], set[str]] = {}
    if session is not None:
        for symbol, day, source in zip(stored["symbol"], session, stored["source"], strict=True):
            rows[(symbol, day)] = rows.get((symbol, day), 0) + 1
            sources.setdefault((symbol, day), set()).add(source)
    bad: dict[tuple[str, dt.date], int] = {}
    if quarantined is not None:
        for symbol, day in zip(quarantined["symbol"], quarantined["session"], strict=True):
            bad[(symbol, day)] = bad.get((symbol, day), 0) + 1
    figures = {}
    for key, pairs in rectangle.by_key:
        metadata: dict[str, object] = {"rows": sum(rows.get(pair, 0) for pair in pairs)}
        if sources:
            names = set().union(*(sources.get(pair, set()) for pair in pairs))
            metadata["source"] = ",".join(sorted(names)) or "none"
        if quarantined is not None:
            metadata["quarantined_rows"] = sum(bad.get(pair, 0) for pair in pairs)
        if len(pairs) > 1:
            metadata["symbols"] = len(pairs)
        figures[key] = metadata
    return figures


def rectangle_of(groups: dict[str, list[str]]) -> PartitionRectangle:
    by_key = tuple(
        (f"{day}|{name}", tuple((symbol, day) for symbol in members))
        for day in DAYS
        for name, members in groups.items()
    )
    return PartitionRectangle(tuple(p for _, pairs in by_key for p in pairs), by_key)


def bars(rows: list[tuple[str, dt.date, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [dt.datetime.combine(d, dt.time(), dt.UTC) for _, d, _ in rows],
            "symbol": [s for s, _, _ in rows],
            "source": [src for _, _, src in rows],
        },
        schema={"ts": pl.Datetime("us", "UTC"), "symbol": pl.String(), "source": pl.String()},
    )


@pytest.mark.parametrize(
    "groups",
    [
        {"b0": ["AAA", "BBB"], "b1": ["CCC"], "b2": ["DDD", "EEE", "FFF"], "b3": []},
        {"AAA": ["AAA"]},
    ],
    ids=["buckets", "symbols"],
)
def test_figures_equal_the_per_pair_sums(groups):
    # Arrange: pairs without rows, a pair with two sources (failover), quarantined rows.
    rectangle = rectangle_of(groups)
    stored = bars(
        [
            ("AAA", DAYS[0], "synthetic"),
            ("AAA", DAYS[1], "synthetic"),
            ("BBB", DAYS[1], "backup"),
            ("CCC", DAYS[2], "synthetic"),
            ("DDD", DAYS[0], "synthetic"),
            ("DDD", DAYS[0], "backup"),
        ]
    )
    quarantined = pl.DataFrame(
        {"symbol": ["AAA", "AAA", "EEE"], "session": [DAYS[1], DAYS[1], DAYS[0]]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    )
    session = layout_for("bars_1d").session_expr()
    members = {s for m in groups.values() for s in m}
    stored = stored.filter(pl.col("symbol").is_in(list(members)))

    # Act / Assert
    for bad in (quarantined, quarantined.clear(), None):
        assert partition_figures(rectangle, stored, session, bad) == per_pair_figures(
            rectangle, stored, bad
        )
    empty = stored.clear()
    assert partition_figures(rectangle, empty, session, None) == per_pair_figures(
        rectangle, empty, None
    )


def test_a_bucket_with_nothing_stored_still_gets_its_figures():
    rectangle = rectangle_of({"b0": ["AAA", "BBB"]})
    stored = bars([("AAA", DAYS[0], "synthetic")])

    figures = partition_figures(rectangle, stored, layout_for("bars_1d").session_expr(), None)

    assert figures[f"{DAYS[0]}|b0"] == {"rows": 1, "source": "synthetic", "symbols": 2}
    assert figures[f"{DAYS[2]}|b0"] == {"rows": 0, "source": "none", "symbols": 2}
