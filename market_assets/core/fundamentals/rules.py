"""Quality rules on stored fundamentals partitions: frame in, one result per partition and rule.

Each rule judges the facts of the partitions being checked (`facts`); the 100x-jump rule also
reads the symbols' earlier facts (`history`) for the previous period. Thresholds come from
configs/fundamentals.yaml (`identity`, `checks`).

    balance_sheet_identity  ERROR  assets = liabilities + total equity (+ temporary equity)
                                   within the tolerance, per (filing, period end) where all
                                   three are tagged (total equity: the total concept, else
                                   parent equity + noncontrolling interest)
    filing_lag              WARN   filed - the filing's own period end beyond the form's limit
                                   (its period end: the latest non-dei period end on or
                                   before the filing date)
    negative_shares         ERROR  a share count below zero
    unit_consistency        ERROR  a mapped concept in a unit its field does not take (USD
                                   where shares are due), or one concept in two kinds of unit
                                   (USD and USD/shares; two currencies are one kind) in one
                                   filing
    duplicate_facts         WARN   several facts for one (concept, unit, period, filed)
    jump_100x               WARN   a field's value 100x (or 1/100x) the previous period's
                                   value of the same concept and period length, as known at
                                   filing (a scaling error in the filing)
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator

import polars as pl

from market_assets.core.fundamentals.config import FundamentalsConfig

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "session": pl.Date(),
    "rule": pl.String(),
    "severity": pl.String(),
    "passed": pl.Boolean(),
    "offending_rows": pl.Int64(),
    "details": pl.String(),  # JSON: what was judged and a sample of what failed
}
RULES = {
    "balance_sheet_identity": "ERROR",
    "filing_lag": "WARN",
    "negative_shares": "ERROR",
    "unit_consistency": "ERROR",
    "duplicate_facts": "WARN",
    "jump_100x": "WARN",
}
SAMPLE = 5
Key = tuple[str, dt.date]


def _key(concept: str) -> tuple[str, str]:
    taxonomy, name = concept.split(":", 1)
    return taxonomy, name


def _result(key: Key, rule: str, offending: int, details: dict) -> tuple:
    return (key[0], key[1], rule, RULES[rule], offending == 0, offending, json.dumps(details))


def _by_partition(facts: pl.DataFrame) -> dict[Key, pl.DataFrame]:
    return {
        (symbol, session): part
        for (symbol, session), part in facts.partition_by("symbol", "session", as_dict=True).items()
    }


def identity_groups(facts: pl.DataFrame, config: FundamentalsConfig) -> pl.DataFrame:
    """Per (symbol, session, accession, period_end): assets, liabilities, total equity,
    temporary equity and the relative gap, where assets, liabilities and equity are tagged."""
    spec = config.identity
    roles = {
        "assets": spec.assets,
        "liabilities": spec.liabilities,
        "total_equity": spec.total_equity,
        "parent_equity": spec.parent_equity,
        "noncontrolling_interest": spec.noncontrolling_interest,
        "temporary_equity": spec.temporary_equity,
    }
    wanted = {
        _key(c): (role, rank) for role, names in roles.items() for rank, c in enumerate(names)
    }
    balances = facts.filter(
        pl.col("period_start").is_null()
        & pl.col("value").is_not_null()
        & pl.struct("taxonomy", "concept").is_in([{"taxonomy": t, "concept": c} for t, c in wanted])
    )
    groups: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for symbol, session, accession, end, taxonomy, concept, value in balances.select(
        "symbol", "session", "accession", "period_end", "taxonomy", "concept", "value"
    ).iter_rows():
        role, rank = wanted[(taxonomy, concept)]
        groups[(symbol, session, accession, end)][role].setdefault(rank, value)
    rows = []
    for key, found in groups.items():

        def first(role: str, found: dict = found) -> float | None:
            ranked = found.get(role, {})
            return ranked[min(ranked)] if ranked else None

        assets, liabilities = first("assets"), first("liabilities")
        equity = first("total_equity")
        if equity is None and first("parent_equity") is not None:
            equity = first("parent_equity") + (first("noncontrolling_interest") or 0.0)
        if assets is None or liabilities is None or equity is None or assets == 0:
            continue
        temporary = sum(found.get("temporary_equity", {}).values())
        gap = abs(assets - (liabilities + equity + temporary)) / abs(assets)
        rows.append((*key, assets, liabilities, equity, temporary, gap))
    return pl.DataFrame(
        rows,
        schema={
            "symbol": pl.String(),
            "session": pl.Date(),
            "accession": pl.String(),
            "period_end": pl.Date(),
            "assets": pl.Float64(),
            "liabilities": pl.Float64(),
            "equity": pl.Float64(),
            "temporary_equity": pl.Float64(),
            "gap": pl.Float64(),
        },
        orient="row",
    )


def filing_lags(facts: pl.DataFrame) -> pl.DataFrame:
    """Per (symbol, session, accession, form): the filing's period end and its lag in days."""
    return (
        facts.filter(
            (pl.col("taxonomy") != "dei")
            & pl.col("period_end").is_not_null()
            & (pl.col("period_end") <= pl.col("filed"))
        )
        .group_by("symbol", "session", "accession", "form", "filed")
        .agg(pl.col("period_end").max())
        .with_columns((pl.col("filed") - pl.col("period_end")).dt.total_days().alias("lag_days"))
        .sort("symbol", "session", "accession")
    )


def _identity(parts: dict[Key, pl.DataFrame], config: FundamentalsConfig) -> Iterator[tuple]:
    tolerance = config.identity.tolerance
    for key, part in parts.items():
        groups = identity_groups(part, config)
        failed = groups.filter(pl.col("gap") > tolerance)
        details = {
            "judged": groups.height,
            "passed": groups.height - failed.height,
            "tolerance": tolerance,
            "failed": _sample(failed.drop("symbol", "session")),
        }
        yield _result(key, "balance_sheet_identity", failed.height, details)


def _lag(parts: dict[Key, pl.DataFrame], config: FundamentalsConfig) -> Iterator[tuple]:
    limits = config.checks.filing_lag_days
    for key, part in parts.items():
        lags = filing_lags(part).filter(pl.col("form").is_in(list(limits)))
        late = lags.filter(
            pl.col("lag_days") > pl.col("form").replace_strict(limits, return_dtype=pl.Int64())
        )
        details = {
            "limits_days": limits,
            "filings": {a: d for a, d in lags.select("accession", "lag_days").iter_rows()},
            "late": _sample(late.select("accession", "form", "period_end", "filed", "lag_days")),
        }
        yield _result(key, "filing_lag", late.height, details)


def _negative_shares(parts: dict[Key, pl.DataFrame]) -> Iterator[tuple]:
    for key, part in parts.items():
        bad = part.filter((pl.col("unit") == "shares") & (pl.col("value") < 0))
        yield _result(key, "negative_shares", bad.height, {"sample": _sample(_facts(bad))})


def _units(parts: dict[Key, pl.DataFrame], config: FundamentalsConfig) -> Iterator[tuple]:
    mapped = config.concept_table.select("taxonomy", "concept", "field", "unit_kind")
    for key, part in parts.items():
        wrong_unit = part.filter(pl.col("field").is_null()).join(
            mapped, on=["taxonomy", "concept"], how="inner", suffix="_expected"
        )
        two_units = part.filter(
            unit_kind(pl.col("unit")).n_unique().over("accession", "taxonomy", "concept") > 1
        )
        details = {
            "unit_not_of_field": _sample(
                _facts(wrong_unit).with_columns(wrong_unit.get_column("field_expected"))
                if wrong_unit.height
                else _facts(wrong_unit)
            ),
            "concepts_in_several_units": sorted(
                set(two_units.select(pl.format("{}:{}", "taxonomy", "concept")).to_series())
            ),
        }
        yield _result(key, "unit_consistency", wrong_unit.height + two_units.height, details)


def unit_kind(unit: pl.Expr) -> pl.Expr:
    """What a unit measures: currency (USD, EUR), shares, per_share (USD/shares), rate
    (CRC/USD), else the unit itself (pure, ...). Two currencies are one kind; USD and
    USD/shares are not."""
    return (
        pl.when(unit == "shares")
        .then(pl.lit("shares"))
        .when(unit.str.contains(r"^[A-Z]{3}$"))
        .then(pl.lit("currency"))
        .when(unit.str.contains(r"^[A-Z]{3}/shares$"))
        .then(pl.lit("per_share"))
        .when(unit.str.contains(r"^[A-Z]{3}/[A-Z]{3}$"))
        .then(pl.lit("rate"))
        .otherwise(unit)
    )


def _duplicates(parts: dict[Key, pl.DataFrame]) -> Iterator[tuple]:
    group = ["taxonomy", "concept", "unit", "period_start", "period_end", "filed"]
    for key, part in parts.items():
        dupes = (
            part.group_by(group)
            .agg(pl.len().alias("copies"), pl.col("value").n_unique().alias("values"))
            .filter(pl.col("copies") > 1)
        )
        conflicting = dupes.filter(pl.col("values") > 1)
        details = {
            "groups": dupes.height,
            "conflicting_groups": conflicting.height,
            "sample": _sample(dupes.sort("values", descending=True)),
        }
        yield _result(key, "duplicate_facts", int(dupes.get_column("copies").sum() or 0), details)


def _period_class(start: dt.date | None, end: dt.date) -> int:
    """0 for an instant, else the period's length in quarters (1 quarter .. 4 a year)."""
    if start is None:
        return 0
    return max(1, round(((end - start).days + 1) / 91.3))


def jumps(facts: pl.DataFrame, history: pl.DataFrame, factor: float) -> pl.DataFrame:
    """Facts of `facts` (with a field) whose value is `factor`x or 1/`factor`x the previous
    period's value of the same concept, unit and period length, as known at their filing."""
    columns = ["symbol", "taxonomy", "concept", "unit", "period_start", "period_end"]
    known = (
        pl.concat([history, facts], how="vertical_relaxed")
        .filter(pl.col("field").is_not_null() & pl.col("value").is_not_null())
        .unique([*columns, "filed", "accession", "value"])
        .sort("filed")
    )
    series: dict[tuple, list[tuple]] = defaultdict(list)
    for symbol, taxonomy, concept, unit, start, end, filed, value in known.select(
        *columns, "filed", "value"
    ).iter_rows():
        series[(symbol, taxonomy, concept, unit, _period_class(start, end))].append(
            (end, filed, value)
        )
    rows = []
    new = facts.filter(pl.col("field").is_not_null() & pl.col("value").is_not_null())
    for row in new.select(*columns, "filed", "value", "session", "accession").iter_rows():
        symbol, taxonomy, concept, unit, start, end, filed, value, session, accession = row
        earlier = [
            (e, f, v)
            for e, f, v in series[(symbol, taxonomy, concept, unit, _period_class(start, end))]
            if e < end and f <= filed
        ]
        if not earlier or value == 0:
            continue
        previous = max(earlier, key=lambda item: (item[0], item[1]))[2]
        if previous == 0 or (previous > 0) != (value > 0):
            continue
        ratio = abs(value / previous)
        if ratio >= factor or ratio <= 1 / factor:
            rows.append((symbol, session, f"{taxonomy}:{concept}", end, value, previous, accession))
    return pl.DataFrame(
        rows,
        schema={
            "symbol": pl.String(),
            "session": pl.Date(),
            "concept": pl.String(),
            "period_end": pl.Date(),
            "value": pl.Float64(),
            "previous_value": pl.Float64(),
            "accession": pl.String(),
        },
        orient="row",
    )


def _jumps(
    parts: dict[Key, pl.DataFrame], history: pl.DataFrame, config: FundamentalsConfig
) -> Iterator[tuple]:
    factor = config.checks.jump_factor
    for key, part in parts.items():
        found = jumps(part, history.filter(pl.col("symbol") == key[0]), factor)
        details = {"factor": factor, "sample": _sample(found.drop("symbol", "session"))}
        yield _result(key, "jump_100x", found.height, details)


def _facts(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("taxonomy", "concept", "unit", "value", "period_end", "accession")


def _sample(frame: pl.DataFrame) -> list[dict]:
    return [
        {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in row.items()}
        for row in frame.head(SAMPLE).to_dicts()
    ]


def judge_fundamentals(
    facts: pl.DataFrame, history: pl.DataFrame, config: FundamentalsConfig
) -> pl.DataFrame:
    """Every rule on every (symbol, session) partition present in `facts` (RESULT_SCHEMA).

    `history` holds the same symbols' stored facts (any filing date) for the previous-period
    comparisons; partitions without facts have nothing to judge and get no rows.
    """
    parts = _by_partition(facts)
    rows = [
        *_identity(parts, config),
        *_lag(parts, config),
        *_negative_shares(parts),
        *_units(parts, config),
        *_duplicates(parts),
        *_jumps(parts, history, config),
    ]
    return pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row").sort("symbol", "session")


RATIO_RULES = {"inputs_filed_after_session": "ERROR", "missing_close": "WARN"}
RATIO_INPUT_FILED = (
    "shares_filed",
    "equity_filed",
    "assets_filed",
    "debt_filed",
    "net_income_filed",
)


def judge_ratios(ratios: pl.DataFrame) -> pl.DataFrame:
    """Rules on stored ratio rows, one result per (symbol, session) present and rule:
    `inputs_filed_after_session` (ERROR: an input filed after the row's session, i.e.
    look-ahead) and `missing_close` (WARN: no daily bar, so the price-based ratios are null)."""
    session = pl.col("ts").dt.date()
    late = pl.any_horizontal(pl.col(c) > session for c in RATIO_INPUT_FILED).fill_null(False)
    per_row = ratios.select(
        "symbol",
        session.alias("session"),
        late.alias("inputs_filed_after_session"),
        pl.col("close").is_null().alias("missing_close"),
    )
    counts = per_row.group_by("symbol", "session").agg(
        pl.col(rule).sum().alias(rule) for rule in RATIO_RULES
    )
    rows = [
        (symbol, day, rule, severity, offending == 0, offending, json.dumps({}))
        for symbol, day, *values in counts.select("symbol", "session", *RATIO_RULES).iter_rows()
        for (rule, severity), offending in zip(RATIO_RULES.items(), values, strict=True)
    ]
    return pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row").sort("symbol", "session")
