"""From vendor quotes to the stored chain: contracts, pricing inputs, IV and greeks.

`fetch_partition_options` asks the providers for a rectangle of (underlying, session)
partitions in as few requests as possible; `build_chain` turns their rows
(OPTION_QUOTE_SCHEMA) into OPTION_CHAIN_SCHEMA:

- the contract symbol is parsed into root, expiration, kind and strike and re-built as the
  padded OSI symbol (market_assets.core.options.contracts); a symbol that does not parse
  keeps its raw text with null contract fields and is quarantined by validation;
- adjusted series (a digit after the root, or the vendor's flag) are flagged, never merged;
  standard contracts have multiplier 100 unless the vendor says otherwise;
- exercise style: european for the cash-settled index roots of options.yaml, else american;
- the underlying price is the vendor's when it sends one, else the session's close from
  the stored daily bars (`bars_1d:<source>`). Synthetic bars never price real options, nor
  real bars synthetic ones;
- time to expiry is ACT/365 calendar time from the snapshot `ts` to 16:00 New York on the
  expiration date; the rate comes from the configured source, the dividend yield from
  options.yaml; the IV is implied from the quote midpoint (both sides quoted, bid <= ask);
- IV and greeks are always recomputed (market_assets.core.options.greeks) into their own
  columns; the vendor's stay in vendor_* columns.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from market_assets.core.calendar import TradingCalendar, get_calendar
from market_assets.core.options.contracts import STANDARD_MULTIPLIER, parse_osi_column
from market_assets.core.options.greeks import STATUS_OK, add_greeks
from market_assets.core.options.quotes import conform_quotes, empty_quotes
from market_assets.core.options.rates import RateSource
from market_assets.core.options.settings import OptionsSettings
from market_assets.core.providers.base import FetchResult, OptionChainRequest
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.schemas import OPTION_CHAIN_SCHEMA, TS_DTYPE
from market_assets.core.stores.layout import EXCHANGE_TZ

OPTIONS_ROUTE = "options_chains"
EXPIRY_TIME = dt.time(16, 0)  # New York: equity options stop trading at the close
EXPIRY_CONVENTION = "act365_to_1600NY"
SECONDS_PER_YEAR = 365 * 86_400
SYNTHETIC = "synthetic"


def empty_chain() -> pl.DataFrame:
    return pl.DataFrame(schema=OPTION_CHAIN_SCHEMA)


def underlying_closes(bars: pl.DataFrame | None, calendar: TradingCalendar) -> pl.DataFrame:
    """(symbol, session) -> close, its time (the session close) and source, from daily bars."""
    schema = {
        "symbol": pl.String(),
        "session": pl.Date(),
        "bar_close": pl.Float64(),
        "bar_close_ts": TS_DTYPE,
        "bar_source": pl.String(),
    }
    if bars is None or bars.is_empty():
        return pl.DataFrame(schema=schema)
    closes = bars.select(
        "symbol",
        pl.col("ts").dt.date().alias("session"),
        pl.col("close").alias("bar_close"),
        pl.col("source").alias("bar_source"),
    ).unique(["symbol", "session"], keep="last")
    sessions = closes.get_column("session").unique().to_list()
    close_times = pl.DataFrame(
        {
            "session": sessions,
            "bar_close_ts": [calendar.session_open_close(day)[1] for day in sessions],
        },
        schema={"session": pl.Date(), "bar_close_ts": TS_DTYPE},
    )
    return closes.join(close_times, on="session", how="left").select(list(schema))


def _expiry_instant() -> pl.Expr:
    return (
        pl.col("expiration")
        .cast(pl.Datetime("us"))
        .dt.offset_by(f"{EXPIRY_TIME.hour}h{EXPIRY_TIME.minute}m")
        .dt.replace_time_zone(str(EXCHANGE_TZ))
        .dt.convert_time_zone("UTC")
    )


@dataclass(frozen=True)
class ChainBuild:
    """The chain rows and what building them found."""

    frame: pl.DataFrame
    iv_status_counts: dict[str, int]
    unparsed_contracts: int
    adjusted_contracts: int


def build_chain(
    quotes: pl.DataFrame,
    settings: OptionsSettings,
    rates: RateSource,
    underlying_bars: pl.DataFrame | None = None,
    calendar: TradingCalendar | None = None,
) -> ChainBuild:
    """OPTION_CHAIN_SCHEMA rows from provider rows (see the module docstring)."""
    calendar = calendar or get_calendar()
    quotes = conform_quotes(quotes)
    if quotes.is_empty():
        return ChainBuild(empty_chain(), {}, 0, 0)
    contracts = parse_osi_column(quotes.get_column("contract"))
    pricing = settings.pricing
    frame = quotes.with_columns(
        pl.coalesce(contracts.get_column("contract"), pl.col("contract")).alias("contract"),
        *(contracts.get_column(name) for name in ("root", "expiration", "kind", "strike")),
    )
    frame = frame.with_columns(
        (pl.col("adjusted").fill_null(False) | pl.col("root").str.contains(r"[0-9]$"))
        .fill_null(False)
        .alias("adjusted")
    ).with_columns(
        pl.when(pl.col("multiplier").is_null() & ~pl.col("adjusted"))
        .then(pl.lit(STANDARD_MULTIPLIER))
        .otherwise(pl.col("multiplier"))
        .alias("multiplier"),
        pl.when(pl.col("root").is_in(list(pricing.european_roots)))
        .then(pl.lit("european"))
        .otherwise(pl.lit("american"))
        .alias("exercise_style"),
    )
    closes = underlying_closes(underlying_bars, calendar)
    both_synthetic = (pl.col("source") == SYNTHETIC) == (pl.col("bar_source") == SYNTHETIC)
    usable_close = pl.col("bar_close").is_not_null() & both_synthetic
    vendor_price = pl.col("underlying_price").is_not_null() & (pl.col("underlying_price") > 0)
    frame = (
        frame.join(closes, on=["symbol", "session"], how="left", maintain_order="left")
        .with_columns(
            pl.when(vendor_price)
            .then(pl.lit("vendor"))
            .when(usable_close)
            .then(pl.concat_str(pl.lit("bars_1d:"), pl.col("bar_source")))
            .alias("underlying_source"),
            pl.when(vendor_price)
            .then(pl.col("underlying_ts"))
            .when(usable_close)
            .then(pl.col("bar_close_ts"))
            .alias("underlying_ts"),
            pl.when(vendor_price)
            .then(pl.col("underlying_price"))
            .when(usable_close)
            .then(pl.col("bar_close"))
            .alias("underlying_price"),
        )
        .with_columns(
            (
                (_expiry_instant() - pl.col("ts")).dt.total_microseconds() / 1e6 / SECONDS_PER_YEAR
            ).alias("time_to_expiry"),
            pl.lit(EXPIRY_CONVENTION).alias("expiry_convention"),
            pl.col("symbol")
            .replace_strict(
                pricing.dividend_yield.symbols,
                default=pricing.dividend_yield.default,
                return_dtype=pl.Float64,
            )
            .alias("dividend_yield"),
            pl.when((pl.col("bid") > 0) & (pl.col("ask") > 0) & (pl.col("bid") <= pl.col("ask")))
            .then(((pl.col("bid") + pl.col("ask")) / 2).round(9))
            .alias("iv_price"),
        )
    )
    frame = add_greeks(rates.apply(frame)).select(
        pl.col(name).cast(dtype) for name, dtype in OPTION_CHAIN_SCHEMA.items()
    )
    counts = frame.get_column("iv_status").value_counts().sort("iv_status").rows()
    return ChainBuild(
        frame=frame.sort("symbol", "ts", "contract"),
        iv_status_counts={str(status): int(n) for status, n in counts if status is not None},
        unparsed_contracts=int(frame.get_column("root").null_count()),
        adjusted_contracts=int(frame.get_column("adjusted").sum()),
    )


def fetch_partition_options(
    registry: ProviderRegistry,
    partitions: Sequence[tuple[str, dt.date]],
    snapshot_times: Sequence[dt.time] = (),
) -> FetchResult:
    """Provider rows for exactly `partitions`, in as few requests as possible.

    Underlyings sharing the same first and last session go in one request over that span;
    rows of other (symbol, session) pairs are dropped. A symbol no provider serves is
    reported in `failures`, never failing the others.
    """
    sessions_by_symbol: dict[str, set[dt.date]] = defaultdict(set)
    for symbol, session in partitions:
        sessions_by_symbol[symbol].add(session)
    groups: dict[tuple[dt.date, dt.date], list[str]] = defaultdict(list)
    for symbol, sessions in sessions_by_symbol.items():
        groups[(min(sessions), max(sessions))].append(symbol)
    frames: list[pl.DataFrame] = []
    merged = FetchResult(frame=empty_quotes(), source="")
    sources: dict[str, None] = {}
    for (first, last), symbols in sorted(groups.items()):
        request = OptionChainRequest(
            tuple(sorted(symbols)), first, last + dt.timedelta(days=1), tuple(snapshot_times)
        )
        result = registry.fetch_capability(
            OPTIONS_ROUTE,
            request.symbols,
            "fetch_options",
            lambda provider, chosen, r=request: provider.fetch_options(r.for_symbols(chosen)),
            empty=empty_quotes(),
            context={"start": request.start, "end": request.end},
        )
        frames.append(conform_quotes(result.frame))
        merged.requests += result.requests
        merged.failures.update(result.failures)
        merged.attempts.extend(result.attempts)
        sources.update(dict.fromkeys(s for s in result.source.split(",") if s))
    merged.source = ",".join(sources)
    wanted = pl.DataFrame(
        {"symbol": [s for s, _ in partitions], "session": [d for _, d in partitions]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    )
    merged.frame = pl.concat(frames).join(wanted, on=["symbol", "session"], how="semi")
    return merged


def iv_coverage(build: ChainBuild) -> float:
    """Share of rows with a recomputed IV (0 when there are none)."""
    total = sum(build.iv_status_counts.values())
    return build.iv_status_counts.get(STATUS_OK, 0) / total if total else 0.0


@dataclass(frozen=True)
class PartitionChains:
    """What one run fetched and built for its partitions."""

    fetched: FetchResult
    built: ChainBuild


def chains_for_partitions(
    registry: ProviderRegistry,
    partitions: Sequence[tuple[str, dt.date]],
    settings: OptionsSettings,
    config_dir: str,
    underlying_bars: pl.DataFrame | None = None,
    calendar: TradingCalendar | None = None,
) -> PartitionChains:
    """Fetch and build the chains of `partitions` (the `options_chains` asset's body)."""
    fetched = fetch_partition_options(registry, partitions, settings.snapshot_times())
    rates = RateSource(settings.pricing.rate, config_dir)
    built = build_chain(fetched.frame, settings, rates, underlying_bars, calendar)
    return PartitionChains(fetched=fetched, built=built)
