"""Fetch a rectangle of fundamentals partitions: place every fact by its filing date.

A fundamentals partition is (symbol, session) and holds the facts whose FIRST exchange session
on or after `filed` is that session: a filing dated on a weekend or an exchange holiday (EDGAR
is open on Good Friday, for one) lands in the next session's partition, and keeps its true
`filed` date. A run fetches each symbol's companyfacts once (the whole history in one
document) and keeps the facts whose partition is in the run; every other fact is counted:

    facts_in_source = in the run's partitions (stored or quarantined)
                    + outside the run's sessions (another run's partitions)
                    + without a readable filed date (no partition can hold them)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.fundamentals.config import FundamentalsConfig, unit_fits
from market_assets.core.providers.base import FetchResult, FundamentalsRequest, ProviderError
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.schemas import FUNDAMENTAL_SCHEMA, QUARANTINE_EXTRA_SCHEMA

QUARANTINE_RULES = ("missing_value", "missing_period_end", "period_start_after_end")
"""Hard rules: a fact breaking one is quarantined (quarantine/fundamentals/...), not stored."""


@dataclass
class PlacedFacts:
    """The run's facts and the count of every fact of the source, by where it went."""

    frame: pl.DataFrame
    source: str = ""
    requests: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    attempts: list[dict[str, str]] = field(default_factory=list)
    facts_in_source: int = 0
    outside_run: int = 0
    without_filed: int = 0
    by_symbol: dict[str, dict[str, int]] = field(default_factory=dict)


def empty_facts() -> pl.DataFrame:
    return pl.DataFrame(schema=FUNDAMENTAL_SCHEMA)


def partition_sessions(filed: pl.Series, exchange: str = "XNYS") -> pl.Series:
    """The first exchange session on or after each `filed` date (null beyond the calendar)."""
    days = filed.drop_nulls()
    if days.is_empty():
        return pl.Series("session", [None] * len(filed), dtype=pl.Date())
    calendar = get_calendar(exchange)
    sessions = calendar.sessions(days.min(), days.max() + dt.timedelta(days=14))
    table = pl.DataFrame({"session": sessions}, schema={"session": pl.Date()})
    frame = pl.DataFrame({"filed": filed}).with_row_index("__row")
    placed = (
        frame.filter(pl.col("filed").is_not_null())
        .sort("filed")
        .join_asof(table, left_on="filed", right_on="session", strategy="forward")
    )
    return (
        frame.join(placed.select("__row", "session"), on="__row", how="left")
        .sort("__row")
        .get_column("session")
    )


def assign_fields(facts: pl.DataFrame, config: FundamentalsConfig) -> pl.DataFrame:
    """Set `field` on the facts of a mapped concept whose unit fits the field's unit kind
    (a mapped concept filed in another unit keeps a null field; the unit rule flags it)."""
    table = config.concept_table.select(
        "taxonomy", "concept", pl.col("field").alias("__field"), "unit_kind"
    )
    return (
        facts.drop("field")
        .join(table, on=["taxonomy", "concept"], how="left")
        .with_columns(
            pl.when(unit_fits(pl.col("unit_kind"), pl.col("unit")))
            .then(pl.col("__field"))
            .alias("field")
        )
        .select(list(FUNDAMENTAL_SCHEMA))
    )


def place_facts(
    facts: pl.DataFrame,
    partitions: Sequence[tuple[str, dt.date]],
    config: FundamentalsConfig,
    exchange: str = "XNYS",
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """The facts whose (symbol, partition session) is in `partitions`, with `session` and
    `field` set; and per symbol the counts in_source, in_run, outside_run, without_filed."""
    placed = assign_fields(facts, config).with_columns(
        partition_sessions(facts.get_column("filed"), exchange).alias("session")
    )
    wanted = pl.DataFrame(
        {"symbol": [s for s, _ in partitions], "session": [d for _, d in partitions]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    ).unique()
    in_run = placed.join(wanted, on=["symbol", "session"], how="semi")
    counts: dict[str, dict[str, int]] = {}
    for symbol in placed.get_column("symbol").unique().sort().to_list():
        mine = placed.filter(pl.col("symbol") == symbol)
        kept = in_run.filter(pl.col("symbol") == symbol).height
        undated = mine.get_column("session").null_count()
        counts[symbol] = {
            "in_source": mine.height,
            "in_run": kept,
            "outside_run": mine.height - kept - undated,
            "without_filed": undated,
        }
    return in_run.sort("symbol", "session", "taxonomy", "concept", "period_end"), counts


def fetch_partition_facts(
    registry: ProviderRegistry,
    dataset: str,
    partitions: Sequence[tuple[str, dt.date]],
    config: FundamentalsConfig,
    exchange: str = "XNYS",
) -> PlacedFacts:
    """Each symbol's companyfacts fetched once (one registry call per symbol, so a failing
    symbol is retried and failed over alone), placed into the run's partitions.

    A symbol that fails is reported in `failures` and the others go on; when every symbol
    fails, the last error is raised (nothing was fetched: the run must fail visibly).
    """
    symbols = sorted({symbol for symbol, _ in partitions})
    placed = PlacedFacts(frame=empty_facts())
    frames: list[pl.DataFrame] = []
    sources: dict[str, None] = {}

    def call(provider, asked: tuple[str, ...]) -> FetchResult:  # noqa: ANN001
        return provider.fetch_fundamentals(FundamentalsRequest(asked))

    for symbol in symbols:
        try:
            result = registry.fetch_capability(
                dataset, [symbol], "fetch_fundamentals", call, empty=empty_facts()
            )
        except ProviderError as error:
            if len(placed.failures) == len(symbols) - 1:
                raise
            placed.failures[symbol] = str(error)
            placed.attempts.extend(_attempts_of(error))
            continue
        placed.requests += result.requests
        placed.failures.update(result.failures)
        placed.attempts.extend(result.attempts)
        sources.update(dict.fromkeys(s for s in result.source.split(",") if s))
        frame, counts = place_facts(result.frame, partitions, config, exchange)
        frames.append(frame)
        placed.by_symbol.update(counts)
    placed.frame = pl.concat(frames) if frames else empty_facts()
    placed.source = ",".join(sources)
    placed.facts_in_source = sum(c["in_source"] for c in placed.by_symbol.values())
    placed.outside_run = sum(c["outside_run"] for c in placed.by_symbol.values())
    placed.without_filed = sum(c["without_filed"] for c in placed.by_symbol.values())
    return placed


def _attempts_of(error: ProviderError) -> list[dict[str, str]]:
    notes = getattr(error, "__notes__", None) or []
    return [{"provider": "registry", "outcome": "failed", "error": note} for note in notes]


def split_valid_facts(
    facts: pl.DataFrame, dataset: str, now: dt.datetime | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(facts to store, facts to quarantine with `rule` and `detail`) by QUARANTINE_RULES."""
    rule = (
        pl.when(pl.col("value").is_null())
        .then(pl.lit("missing_value"))
        .when(pl.col("period_end").is_null())
        .then(pl.lit("missing_period_end"))
        .when(pl.col("period_start") > pl.col("period_end"))
        .then(pl.lit("period_start_after_end"))
    )
    marked = facts.with_columns(rule.alias("rule"))
    valid = marked.filter(pl.col("rule").is_null()).drop("rule")
    bad = marked.filter(pl.col("rule").is_not_null())
    detail = pl.format(
        "{}:{} unit {} accession {} period {}..{} filed {}",
        "taxonomy",
        "concept",
        "unit",
        "accession",
        pl.col("period_start").cast(pl.String()).fill_null("-"),
        pl.col("period_end").cast(pl.String()).fill_null("?"),
        "filed",
    )
    quarantined = bad.with_columns(
        pl.lit(dataset).alias("dataset"),
        detail.alias("detail"),
        pl.lit(now or dt.datetime.now(dt.UTC))
        .cast(QUARANTINE_EXTRA_SCHEMA["quarantined_at"])
        .alias("quarantined_at"),
    ).select(*FUNDAMENTAL_SCHEMA, "dataset", "rule", "detail", "quarantined_at")
    return valid, quarantined
