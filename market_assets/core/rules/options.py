"""Quality rules for option chains: frames in, one result per (underlying, session, rule).

Each rule finds the offending rows of the judged partitions (thresholds and severities in
configs/options.yaml `checks`):

- crossed_quotes: bid above ask (both quoted).
- negative_values: a negative bid, ask, last, size, volume or open interest.
- iv_bounds: an implied volatility (recomputed or the vendor's) outside (0, max_iv].
- delta_bounds: a call delta outside [0, 1] or a put delta outside [-1, 0] (both kinds).
- greek_signs: a negative gamma or vega (recomputed or the vendor's).
- put_call_parity: for each call/put pair of one strike and expiration with both sides
  quoted, C - P against the forward S e^(-qT) - K e^(-rT) within the two half spreads plus
  max(tolerance, relative_tolerance x S): an equality for european exercise, and for american
  exercise the bounds S e^(-qT) - K <= C - P <= S - K e^(-rT) widened the same way.
- expirations_on_sessions: an expiration that is not an exchange session (expirations past
  the calendar's last session are not judged).
- strikes_on_grid: a standard (non-adjusted) strike that is not a multiple of `increment`.
- stale_quotes: the same bid and ask as the previous session's last snapshot while the
  contract traded today.
- vendor_iv_difference: |vendor IV - recomputed IV| above max_difference and above what the
  quote's half spread explains (half spread / vega per volatility unit).
- chain_completeness: contracts in the previous session's chain that have not expired
  (expiration after the judged session) and are missing today; an empty chain fails too.

The report has the shape of the bar rules' (RESULT_SCHEMA / PARTITION_SCHEMA), so the check
results table, the Dagster evaluations and the coverage report read it the same way.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from market_assets.core.calendar import TradingCalendar, get_calendar
from market_assets.core.options.settings import OptionCheckSettings
from market_assets.core.rules.base import Severity
from market_assets.core.rules.engine import PARTITION_SCHEMA, RESULT_SCHEMA, QualityReport
from market_assets.core.rules.score import penalty_expr
from market_assets.core.schemas import OPTION_CHAIN_SCHEMA

DATASET = "options_chains"
KEY = ("symbol", "session")
SAMPLE_COLUMNS = ("contract", "ts", "bid", "ask", "iv", "vendor_iv", "delta", "volume")
GRID_TOLERANCE = 1e-6
GREEK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class OptionRuleContext:
    """What the rules may know besides the judged chains."""

    partitions: tuple[tuple[str, dt.date], ...]
    settings: OptionCheckSettings
    previous: pl.DataFrame | None = None  # the chains of each judged session's previous session
    calendar: TradingCalendar | None = None


Rule = Callable[[pl.DataFrame, OptionRuleContext], pl.DataFrame]


def crossed_quotes(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    return chain.filter(pl.col("bid") > pl.col("ask"))


def negative_values(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    columns = ("bid", "ask", "last", "bid_size", "ask_size", "volume", "open_interest")
    return chain.filter(pl.any_horizontal([(pl.col(c) < 0).fill_null(False) for c in columns]))


def iv_bounds(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    top = context.settings.iv_bounds.max_iv
    outside = [((pl.col(c) <= 0) | (pl.col(c) > top)).fill_null(False) for c in ("iv", "vendor_iv")]
    return chain.filter(pl.any_horizontal(outside))


def delta_bounds(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    call = pl.col("kind") == "call"
    checks = []
    for column in ("delta", "vendor_delta"):
        delta = pl.col(column)
        low = pl.when(call).then(0.0).otherwise(-1.0) - GREEK_TOLERANCE
        high = pl.when(call).then(1.0).otherwise(0.0) + GREEK_TOLERANCE
        checks.append(((delta < low) | (delta > high)).fill_null(False))
    return chain.filter(pl.any_horizontal(checks))


def greek_signs(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    columns = ("gamma", "vega", "vendor_gamma", "vendor_vega")
    return chain.filter(
        pl.any_horizontal([(pl.col(c) < -GREEK_TOLERANCE).fill_null(False) for c in columns])
    )


def put_call_parity(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    settings = context.settings.put_call_parity
    pair_key = ["symbol", "session", "ts", "root", "expiration", "strike"]
    side = ["iv_price", "bid", "ask", "contract"]
    quoted = chain.filter(
        pl.col("iv_price").is_not_null()
        & pl.col("underlying_price").is_not_null()
        & pl.col("rate").is_not_null()
        & (pl.col("time_to_expiry") > 0)
    )
    calls = quoted.filter(pl.col("kind") == "call").select(
        *pair_key,
        "underlying_price",
        "rate",
        "dividend_yield",
        "time_to_expiry",
        "exercise_style",
        *(pl.col(c).alias(f"call_{c}") for c in side),
    )
    puts = quoted.filter(pl.col("kind") == "put").select(
        *pair_key, *(pl.col(c).alias(f"put_{c}") for c in side)
    )
    pairs = calls.join(puts, on=pair_key, how="inner")
    spot, years = pl.col("underlying_price"), pl.col("time_to_expiry")
    spot_pv = spot * (-pl.col("dividend_yield").fill_null(0.0) * years).exp()
    strike_pv = pl.col("strike") * (-pl.col("rate") * years).exp()
    slack = (
        (pl.col("call_ask") - pl.col("call_bid")) / 2
        + (pl.col("put_ask") - pl.col("put_bid")) / 2
        + pl.max_horizontal(pl.lit(settings.tolerance), settings.relative_tolerance * spot)
    )
    observed = pl.col("call_iv_price") - pl.col("put_iv_price")
    european = pl.col("exercise_style") == "european"
    lower = pl.when(european).then(spot_pv - strike_pv).otherwise(spot_pv - pl.col("strike"))
    upper = pl.when(european).then(spot_pv - strike_pv).otherwise(spot - strike_pv)
    broken = pairs.with_columns(
        observed.alias("call_minus_put"), lower.alias("parity_low"), upper.alias("parity_high")
    ).filter(
        (pl.col("call_minus_put") < pl.col("parity_low") - slack)
        | (pl.col("call_minus_put") > pl.col("parity_high") + slack)
    )
    return broken.select(
        "symbol",
        "session",
        pl.col("call_contract").alias("contract"),
        pl.col("put_contract"),
        "ts",
        pl.col("call_minus_put").round(6),
        pl.col("parity_low").round(6),
        pl.col("parity_high").round(6),
    )


def expirations_on_sessions(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    calendar = context.calendar or get_calendar()
    days = chain.get_column("expiration").drop_nulls().unique().to_list()
    judged = [d for d in days if calendar.first_session <= d <= calendar.last_session]
    off = [d for d in judged if not calendar.is_session(d)]
    return chain.filter(pl.col("expiration").is_in(off))


def strikes_on_grid(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    step = context.settings.strikes_on_grid.increment
    units = pl.col("strike") / step
    return chain.filter(
        ~pl.col("adjusted").fill_null(False) & ((units - units.round()).abs() > GRID_TOLERANCE)
    )


def _previous_sessions(sessions: Sequence[dt.date], context: OptionRuleContext) -> pl.DataFrame:
    """(session, previous_session) for each judged session."""
    calendar = context.calendar or get_calendar()
    days = sorted(set(sessions))
    return pl.DataFrame(
        {"session": days, "previous_session": [calendar.previous_session(d) for d in days]},
        schema={"session": pl.Date(), "previous_session": pl.Date()},
    )


def _previous_chains(context: OptionRuleContext) -> pl.DataFrame | None:
    """The previous sessions' chains (last snapshot), keyed by the session that follows."""
    before = context.previous
    if before is None or before.is_empty():
        return None
    follows = _previous_sessions([d for _, d in context.partitions], context)
    last = before.filter(pl.col("ts") == pl.col("ts").max().over("symbol", "session"))
    return last.rename({"session": "previous_session"}).join(
        follows, on="previous_session", how="inner"
    )


def stale_quotes(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    before = _previous_chains(context)
    if before is None:
        return chain.clear()
    earlier = before.select(
        *KEY,
        "contract",
        pl.col("bid").alias("previous_bid"),
        pl.col("ask").alias("previous_ask"),
    )
    return chain.join(earlier, on=[*KEY, "contract"], how="inner").filter(
        (pl.col("volume") > 0)
        & (pl.col("bid") == pl.col("previous_bid"))
        & (pl.col("ask") == pl.col("previous_ask"))
    )


def vendor_iv_difference(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    limit = context.settings.vendor_iv_difference.max_difference
    vega_per_unit = pl.coalesce("vega", "vendor_vega").abs() * 100
    explained = ((pl.col("ask") - pl.col("bid")) / 2) / vega_per_unit
    difference = (pl.col("vendor_iv") - pl.col("iv")).abs()
    return chain.filter(
        (difference > limit) & (difference > explained.fill_nan(None).fill_null(float("inf")))
    ).with_columns(difference.round(6).alias("iv_difference"))


def chain_completeness(chain: pl.DataFrame, context: OptionRuleContext) -> pl.DataFrame:
    listed = _partitions_frame(context.partitions)
    present = chain.select(*KEY).unique()
    empty = listed.join(present, on=list(KEY), how="anti").with_columns(
        pl.lit("empty chain").alias("contract")
    )
    before = _previous_chains(context)
    if before is None:
        return empty
    expected = (
        before.select(*KEY, "contract", "expiration")
        .unique([*KEY, "contract"])
        .join(present, on=list(KEY), how="semi")
        .filter(pl.col("expiration") > pl.col("session"))
    )
    missing = expected.join(
        chain.select(*KEY, "contract").unique(), on=[*KEY, "contract"], how="anti"
    )
    return pl.concat(
        [empty.select(*KEY, "contract"), missing.select(*KEY, "contract")], how="vertical"
    )


def _partitions_frame(partitions: Sequence[tuple[str, dt.date]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": [s for s, _ in partitions], "session": [d for _, d in partitions]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    ).unique(maintain_order=True)


OPTION_RULES: dict[str, Rule] = {
    "crossed_quotes": crossed_quotes,
    "negative_values": negative_values,
    "iv_bounds": iv_bounds,
    "delta_bounds": delta_bounds,
    "greek_signs": greek_signs,
    "put_call_parity": put_call_parity,
    "expirations_on_sessions": expirations_on_sessions,
    "strikes_on_grid": strikes_on_grid,
    "stale_quotes": stale_quotes,
    "vendor_iv_difference": vendor_iv_difference,
    "chain_completeness": chain_completeness,
}


def check_options(
    chain: pl.DataFrame,
    context: OptionRuleContext,
    weights: Mapping[Severity, float],
    sample_rows: int = 5,
) -> QualityReport:
    """Judge the chains of `context.partitions` with every enabled rule."""
    partitions = _partitions_frame(context.partitions)
    judged = chain.join(partitions, on=list(KEY), how="semi")
    results: list[pl.DataFrame] = []
    for name, rule in OPTION_RULES.items():
        settings = context.settings.rule(name)
        if not settings.enabled:
            continue
        found = rule(judged, context)
        results.append(_results(name, settings.severity, found, partitions, sample_rows))
    frame = (
        pl.concat(results, how="vertical")
        .with_columns(penalty_expr(weights).alias("score_contribution"))
        .select(list(RESULT_SCHEMA))
        if results
        else pl.DataFrame(schema=RESULT_SCHEMA)
    )
    return QualityReport(results=frame, partitions=_partition_facts(judged, partitions, frame))


def _results(
    rule: str,
    severity: Severity,
    found: pl.DataFrame,
    partitions: pl.DataFrame,
    sample_rows: int,
) -> pl.DataFrame:
    counts = found.group_by(*KEY).agg(pl.len().cast(pl.Int64).alias("offending_rows"))
    samples: dict[tuple[str, dt.date], str] = {}
    if not found.is_empty():
        extra = [c for c in found.columns if c not in OPTION_CHAIN_SCHEMA]
        shown = [c for c in dict.fromkeys([*SAMPLE_COLUMNS, *extra]) if c in found.columns]
        for (symbol, session), rows in found.group_by(*KEY):
            head = rows.head(sample_rows).select(shown)
            samples[(symbol, session)] = json.dumps(head.to_dicts(), default=str)
    return (
        partitions.join(counts, on=list(KEY), how="left")
        .with_columns(pl.col("offending_rows").fill_null(0))
        .with_columns(
            pl.lit(DATASET).alias("dataset"),
            pl.lit(rule).alias("rule"),
            pl.lit(severity.value).alias("severity"),
            (pl.col("offending_rows") == 0).alias("passed"),
            pl.lit(0.0).alias("score_contribution"),
            pl.lit("{}").alias("details"),
            pl.struct(*KEY)
            .map_elements(
                lambda key: samples.get((key["symbol"], key["session"]), "[]"),
                return_dtype=pl.String,
            )
            .alias("sample"),
        )
        .select(list(RESULT_SCHEMA))
    )


def _partition_facts(
    chain: pl.DataFrame, partitions: pl.DataFrame, results: pl.DataFrame
) -> pl.DataFrame:
    facts = chain.group_by(*KEY).agg(
        pl.len().cast(pl.Int64).alias("rows"),
        pl.col("source").unique().sort().str.join("+").alias("source"),
    )
    verdicts = results.group_by(*KEY).agg(
        (100.0 - pl.col("score_contribution").sum()).clip(0.0, 100.0).alias("score"),
        ((~pl.col("passed")) & (pl.col("severity") == "ERROR"))
        .sum()
        .cast(pl.Int64)
        .alias("errors"),
        ((~pl.col("passed")) & (pl.col("severity") == "WARN"))
        .sum()
        .cast(pl.Int64)
        .alias("warnings"),
    )
    return (
        partitions.join(facts, on=list(KEY), how="left")
        .join(verdicts, on=list(KEY), how="left")
        .with_columns(
            pl.lit(DATASET).alias("dataset"),
            pl.col("rows").fill_null(0),
            pl.col("source").fill_null("none"),
            pl.col("score").fill_null(100.0),
            pl.col("errors").fill_null(0),
            pl.col("warnings").fill_null(0),
        )
        .select(list(PARTITION_SCHEMA))
    )


def _failed(severity: str) -> pl.Expr:
    return ((~pl.col("passed")) & (pl.col("severity") == severity)).sum().cast(pl.Int64)
