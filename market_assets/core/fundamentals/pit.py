"""The point-in-time view of fundamentals: what was knowable on a date, by SEC filing date.

For each (symbol, field) as of a date D, among the facts of the field's concepts with
`filed <= D` (a restatement is visible only from its own filing date):

1. the latest `period_end`;
2. for that period end, the latest filing (`filed`), so a restated value replaces the original
   from the restatement's filing date on;
3. then the shortest period (a 10-Q reports the quarter and the year to date with one end:
   the quarter is taken; a 10-K's year is all it reports), then the concept listed first in
   configs/fundamentals.yaml, then the latest accession.

Trailing twelve months (`<field>_ttm`, duration fields in a currency) as of D, from the facts
filed by D with the latest filing per (period_start, period_end): the latest period end's
annual value (350-380 days) when there is one, else its year-to-date value plus the previous
fiscal year minus the same year-to-date one year earlier (ends matched within 10 days, for
52/53-week years). Its `filed` is the latest filing among those parts; with a part missing
the value is null rather than a guess.

The engine walks each (symbol, field)'s facts in filing order once per sorted list of dates,
so a daily series costs one pass, not one query per day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from market_assets.core.fundamentals.config import TTM_SUFFIX, FundamentalsConfig

PIT_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "field": pl.String(),
    "as_of": pl.Date(),
    "value": pl.Float64(),
    "unit": pl.String(),
    "taxonomy": pl.String(),
    "concept": pl.String(),
    "period_start": pl.Date(),
    "period_end": pl.Date(),
    "fiscal_year": pl.Int64(),
    "fiscal_period": pl.String(),
    "form": pl.String(),
    "filed": pl.Date(),
    "accession": pl.String(),
}
ANNUAL_DAYS = (350, 380)
MATCH_DAYS = 10  # tolerance when matching period ends across years (52/53-week fiscal years)
UNLISTED_PRIORITY = 1_000  # a stored concept no longer in the config ranks last


@dataclass(frozen=True, slots=True)
class Fact:
    """One stored fact of a field, with its rank in the field's concept list."""

    value: float
    unit: str
    taxonomy: str
    concept: str
    period_start: dt.date | None
    period_end: dt.date
    fiscal_year: int | None
    fiscal_period: str | None
    form: str | None
    filed: dt.date
    accession: str | None
    priority: int

    @property
    def days(self) -> int:
        """Length of the period in days (0 for an instant)."""
        if self.period_start is None:
            return 0
        return (self.period_end - self.period_start).days + 1

    def rank(self) -> tuple:
        """Larger is preferred: latest period end, latest filing, shortest, first concept."""
        return (self.period_end, self.filed, -self.days, -self.priority, self.accession or "")


@dataclass(frozen=True, slots=True)
class Known:
    """A field's value as of a date, from one fact or (TTM) from several."""

    value: float
    source: Fact  # the fact whose concept, unit, form and accession describe the value
    period_start: dt.date | None
    period_end: dt.date
    filed: dt.date


def _facts_by_field(
    facts: pl.DataFrame, config: FundamentalsConfig, fields: Iterable[str]
) -> dict[tuple[str, str], list[Fact]]:
    """Usable facts (a field, a value, an end and a filed date) per (symbol, field), in filing
    order."""
    ranks = config.concept_table.select("taxonomy", "concept", "field", "priority")
    rows = (
        facts.filter(
            pl.col("field").is_in(list(fields))
            & pl.col("value").is_not_null()
            & pl.col("period_end").is_not_null()
            & pl.col("filed").is_not_null()
        )
        .join(ranks, on=["taxonomy", "concept", "field"], how="left")
        .with_columns(pl.col("priority").fill_null(UNLISTED_PRIORITY))
        .sort("symbol", "field", "filed")
    )
    grouped: dict[tuple[str, str], list[Fact]] = {}
    columns = [name for name in Fact.__slots__]
    for symbol, field, *values in rows.select("symbol", "field", *columns).iter_rows():
        grouped.setdefault((symbol, field), []).append(Fact(*values))
    return grouped


def _annual(fact: Fact) -> bool:
    return ANNUAL_DAYS[0] <= fact.days <= ANNUAL_DAYS[1]


def _near(a: dt.date, b: dt.date) -> bool:
    return abs((a - b).days) <= MATCH_DAYS


def trailing_twelve_months(known: Sequence[Fact]) -> Known | None:
    """TTM of a duration field from the facts known (see the module docstring)."""
    latest: dict[tuple[dt.date, dt.date], Fact] = {}
    for fact in known:
        if fact.period_start is None:
            continue
        key = (fact.period_start, fact.period_end)
        held = latest.get(key)
        if held is None or (fact.filed, -fact.priority) > (held.filed, -held.priority):
            latest[key] = fact
    if not latest:
        return None
    end = max(fact.period_end for fact in latest.values())
    at_end = [fact for fact in latest.values() if fact.period_end == end]
    annual = [fact for fact in at_end if _annual(fact)]
    if annual:
        best = max(annual, key=lambda f: (f.filed, -f.priority))
        return Known(best.value, best, best.period_start, end, best.filed)
    ytd = max(at_end, key=lambda f: (f.days, f.filed, -f.priority))
    assert ytd.period_start is not None
    fiscal_year_end = ytd.period_start - dt.timedelta(days=1)
    prior_years = [
        f for f in latest.values() if _annual(f) and _near(f.period_end, fiscal_year_end)
    ]
    year_ago = end - dt.timedelta(days=365)
    prior_ytds = [
        f
        for f in latest.values()
        if abs(f.days - ytd.days) <= MATCH_DAYS and _near(f.period_end, year_ago)
    ]
    if not prior_years or not prior_ytds:
        return None
    prior_year = max(prior_years, key=lambda f: (f.filed, -f.priority))
    prior_ytd = max(prior_ytds, key=lambda f: (f.filed, -f.priority))
    value = ytd.value + prior_year.value - prior_ytd.value
    filed = max(ytd.filed, prior_year.filed, prior_ytd.filed)
    start = prior_ytd.period_end + dt.timedelta(days=1)
    return Known(value, ytd, start, end, filed)


def _row(symbol: str, field: str, day: dt.date, known: Known | None) -> tuple:
    if known is None:
        return (symbol, field, day, *([None] * (len(PIT_SCHEMA) - 3)))
    fact = known.source
    return (
        symbol,
        field,
        day,
        known.value,
        fact.unit,
        fact.taxonomy,
        fact.concept,
        known.period_start,
        known.period_end,
        fact.fiscal_year,
        fact.fiscal_period,
        fact.form,
        known.filed,
        fact.accession,
    )


def _series(facts: list[Fact], dates: list[dt.date], ttm: bool) -> list[Known | None]:
    """The field's known value at each date of sorted `dates`, in one pass over the facts."""
    values: list[Known | None] = []
    known: list[Fact] = []
    best: Fact | None = None
    current: Known | None = None
    position = 0
    for day in dates:
        changed = False
        while position < len(facts) and facts[position].filed <= day:
            fact = facts[position]
            known.append(fact)
            if best is None or fact.rank() > best.rank():
                best = fact
            position += 1
            changed = True
        if changed:
            if ttm:
                current = trailing_twelve_months(known)
            elif best is not None:
                current = Known(best.value, best, best.period_start, best.period_end, best.filed)
        values.append(current)
    return values


def point_in_time_series(
    facts: pl.DataFrame,
    symbols: Sequence[str],
    fields: Sequence[str],
    dates: Iterable[dt.date],
    config: FundamentalsConfig,
) -> pl.DataFrame:
    """One row per (symbol, field, date) in PIT_SCHEMA: each field as known on each date
    (value and source columns null when nothing was filed by then). Sorted by symbol, then
    `fields` order, then date. Raises ValueError naming an unknown field."""
    names = config.check_names(list(fields))
    days = sorted(set(dates))
    bases = {name.removesuffix(TTM_SUFFIX) for name in names}
    grouped = _facts_by_field(facts, config, bases)
    rows: list[tuple] = []
    for symbol in dict.fromkeys(symbols):
        for name in names:
            ttm = name.endswith(TTM_SUFFIX)
            history = grouped.get((symbol, name.removesuffix(TTM_SUFFIX)), [])
            for day, known in zip(days, _series(history, days, ttm), strict=True):
                rows.append(_row(symbol, name, day, known))
    return pl.DataFrame(rows, schema=PIT_SCHEMA, orient="row")


def point_in_time(
    facts: pl.DataFrame,
    symbols: Sequence[str],
    fields: Sequence[str],
    as_of: dt.date,
    config: FundamentalsConfig,
) -> pl.DataFrame:
    """One row per (symbol, field): each field as known at the end of `as_of` (filed <= as_of)."""
    return point_in_time_series(facts, symbols, fields, [as_of], config)
