"""market-assets: demo | ingest | query | status | report | ui."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="market-assets: market data as Dagster assets (demo, ingest, query, status, report, ui).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

DEFAULT_DAGSTER_HOME = ".dagster_home"
DAGSTER_HOME_YAML = """\
# Dagster instance for local runs of market-assets (SQLite storage in this folder).
# The full stack's PostgreSQL-backed instance is ../dagster.yaml (see README).
telemetry:
  enabled: false
"""


def _prepare_environment(
    dagster_home: Path | None, data_dir: str | None, config_dir: Path | None
) -> None:
    """Point Dagster and the platform at their folders before anything imports them."""
    home = (dagster_home or Path(os.environ.get("DAGSTER_HOME", DEFAULT_DAGSTER_HOME))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_HOME_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    if data_dir:
        os.environ["MARKET_ASSETS_DATA_DIR"] = data_dir
    if config_dir:
        os.environ["MARKET_ASSETS_CONFIG_DIR"] = str(config_dir)


def _parse_date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name) from None


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


DagsterHome = Annotated[
    Path | None,
    typer.Option(help="Dagster instance folder (default $DAGSTER_HOME or ./.dagster_home)."),
]
DataDir = Annotated[
    str | None, typer.Option(help="Lake root: folder or s3://bucket/prefix (default ./data).")
]
ConfigDir = Annotated[Path | None, typer.Option(help="Config folder (default ./configs).")]


def _print_summary(summary, data_root: str, title: str, order: list[str]) -> None:  # noqa: ANN001
    table = Table(title=title)
    for column in ("dataset", "partitions", "rows", "seconds", "quarantined", "source", "files"):
        table.add_column(
            column,
            justify="right"
            if column in {"partitions", "rows", "seconds", "quarantined"}
            else "left",
        )
    from market_assets.core.stores.layout import layout_for

    ranked = sorted(
        summary.datasets.items(),
        key=lambda item: order.index(item[0]) if item[0] in order else len(order),
    )
    for name, stats in ranked:
        try:
            folder = f"{data_root.rstrip('/')}/{layout_for(name).folder}/"
        except ValueError:
            folder = "-"
        table.add_row(
            name,
            str(stats.partitions),
            f"{stats.rows:,}",
            f"{stats.seconds:.2f}",
            str(stats.quarantined),
            ", ".join(sorted(stats.sources)) or "-",
            folder,
        )
    console.print(table)
    for name, stats in summary.datasets.items():
        for symbol, message in stats.failed_symbols.items():
            console.print(f"[yellow]{name} {symbol} failed:[/yellow] {message}")


@app.command()
def demo(
    universe: Annotated[str, typer.Option(help="Universe from configs/universes.yaml.")] = "demo",
    minute_sessions: Annotated[
        int, typer.Option(help="Sessions of 1-minute bars (and of option chains).")
    ] = 5,
    daily_sessions: Annotated[int, typer.Option(help="Sessions of daily bars.")] = 60,
    dagster_home: DagsterHome = None,
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
) -> None:
    """Ingest a demo universe from the synthetic provider through Dagster, offline, no keys."""
    started = time.perf_counter()
    _prepare_environment(dagster_home, data_dir, config_dir)
    from dagster import AssetKey, DagsterInstance

    from market_assets.core.calendar import get_calendar
    from market_assets.core.config import AppConfig
    from market_assets.definitions import build_definitions
    from market_assets.defs.runner import RunSummary, materialize_rectangle

    config = AppConfig.load()
    defs = build_definitions(config)
    calendar = get_calendar(config.exchange)
    keys = config.symbol_partitions.keys_for_symbols(config.universe_symbols(universe))
    minute = [
        AssetKey(n)
        for n, d in config.datasets.items()
        if d.granularity != "1d"
        # Bars only: ticks cost money; corporate actions run with the daily bars below; options
        # get their own runs after the daily bars that price them; fundamentals (SEC) and the
        # other families are not part of the offline demo.
        and d.kind == "bars"
    ]
    daily = [AssetKey(n) for n, d in config.datasets.items() if d.granularity == "1d"]
    present = defs.resolve_asset_graph().get_all_asset_keys()
    daily += [
        key
        for key in map(AssetKey, ("corporate_actions", "bars_1d_adjusted", "indicators"))
        if key in present
    ]
    options = [AssetKey(n) for n, d in config.datasets.items() if d.kind == "options"]
    plan = [
        (minute, calendar.last_completed_sessions(minute_sessions), minute_sessions),
        (daily, calendar.last_completed_sessions(daily_sessions), daily_sessions),
        (options, calendar.last_completed_sessions(minute_sessions), minute_sessions),
    ]
    summary = RunSummary()
    # Entering the instance makes it the context Dagster resolves definitions against.
    with DagsterInstance.get() as instance, _progress() as progress:
        for assets, sessions, per_run in plan:
            if not assets or not sessions:
                continue
            label = ", ".join(a.to_user_string() for a in assets)
            task = progress.add_task(label, total=None)
            materialize_rectangle(
                defs,
                instance,
                assets,
                sessions,
                keys,
                per_run,
                tags={"trigger": "market-assets demo"},
                on_progress=lambda done, total, t=task: progress.update(
                    t, completed=done, total=total
                ),
                summary=summary,
            )
        checks_line = _check_summary_line(instance, summary.run_ids)
    _print_summary(
        summary,
        config.data_dir,
        f"demo universe '{universe}' (source: synthetic)",
        list(config.datasets),
    )
    wall = time.perf_counter() - started
    console.print(
        f"wall time {wall:.1f} s: Dagster runs {summary.wall_seconds:.1f} s "
        f"(our code {summary.our_seconds:.1f} s, Dagster bookkeeping "
        f"{summary.dagster_seconds:.1f} s), startup and imports {wall - summary.wall_seconds:.1f} s"
    )
    console.print(checks_line)
    console.print(
        f"runs recorded in {os.environ['DAGSTER_HOME']}: "
        f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev -m market_assets.definitions"
    )
    if summary.failed_runs:
        _fail(f"{len(summary.failed_runs)} run(s) failed: {summary.failed_runs}")


@app.command()
def ingest(
    dataset: Annotated[list[str], typer.Option(help="Dataset(s), e.g. bars_1d (repeatable).")],
    start: Annotated[str, typer.Option(help="First session (inclusive), YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="End date (exclusive), YYYY-MM-DD.")],
    universe: Annotated[str | None, typer.Option(help="Universe name.")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols.")] = None,
    provider: Annotated[str | None, typer.Option(help="Use only this provider.")] = None,
    files: Annotated[
        Path | None,
        typer.Option(
            help="Read the dataset from the files in this folder instead of any API, with the "
            "provider that reads them (e.g. Databento .dbn/.dbn.zst); no key, no network."
        ),
    ] = None,
    with_derived: Annotated[bool, typer.Option(help="Also resample 5m/15m/1h from 1m.")] = True,
    dagster_home: DagsterHome = None,
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
) -> None:
    """Materialize datasets for sessions in [start, end) on the Dagster instance."""
    _prepare_environment(dagster_home, data_dir, config_dir)
    from dagster import AssetKey, DagsterInstance

    from market_assets.core.calendar import get_calendar
    from market_assets.core.config import AppConfig
    from market_assets.core.errors import MarketAssetsError
    from market_assets.core.symbols import validate_symbols
    from market_assets.definitions import build_definitions
    from market_assets.defs.assets.bars import FILES_DIR_TAG, PROVIDER_TAG
    from market_assets.defs.runner import RunSummary, materialize_rectangle

    first, stop = _parse_date(start, "--start"), _parse_date(end, "--end")
    if bool(universe) == bool(symbols):
        _fail("give exactly one of --universe or --symbols")
    try:
        config = AppConfig.load()
        wanted = (
            config.universe_symbols(universe)
            if universe
            else validate_symbols(s.strip() for s in (symbols or "").split(",") if s.strip())
        )
        for name in dataset:
            config.dataset(name)
        if provider and provider not in config.providers.providers:
            _fail(f"unknown provider {provider!r}; known: {sorted(config.providers.providers)}")
        if provider and files is None and not config.providers.providers[provider].enabled:
            _fail(f"provider {provider!r} is disabled in providers.yaml: set enabled: true")
        if files is not None:
            provider = _files_provider(config, files, list(dataset), provider)
    except MarketAssetsError as exc:
        _fail(str(exc))
    keys = config.symbol_partitions.keys_for_symbols(wanted)
    defs = build_definitions(config)
    calendar = get_calendar(config.exchange)
    selected = list(dataset)
    if with_derived:
        selected += [n for n, d in config.datasets.items() if d.derived_from in dataset]
    tags = {"trigger": "market-assets ingest"}
    if provider:
        tags[PROVIDER_TAG] = provider
    if files is not None:
        tags[FILES_DIR_TAG] = str(files.resolve())
    summary = RunSummary()
    # Entering the instance makes it the context Dagster resolves definitions against.
    with DagsterInstance.get() as instance, _progress() as progress:
        for name in dict.fromkeys(selected):
            ds = config.datasets[name]
            if ds.derived_from and ds.derived_from in selected:
                continue  # materialized in the same runs as its parent
            assets = [AssetKey(name)] + [
                AssetKey(n) for n in selected if config.datasets[n].derived_from == name
            ]
            sessions = calendar.sessions(max(first, ds.start), stop - dt.timedelta(days=1))
            if not sessions:
                console.print(f"[yellow]{name}: no sessions in [{first}, {stop})[/yellow]")
                continue
            task = progress.add_task(", ".join(a.to_user_string() for a in assets), total=None)
            materialize_rectangle(
                defs,
                instance,
                assets,
                sessions,
                keys,
                ds.backfill_sessions_per_run,
                tags=tags,
                on_progress=lambda done, total, t=task: progress.update(
                    t, completed=done, total=total
                ),
                summary=summary,
            )
    _print_summary(summary, config.data_dir, f"ingest [{first}, {stop})", list(config.datasets))
    console.print(
        f"Dagster runs {summary.wall_seconds:.1f} s: our code {summary.our_seconds:.1f} s, "
        f"Dagster bookkeeping {summary.dagster_seconds:.1f} s"
    )
    if summary.failed_runs:
        _fail(f"{len(summary.failed_runs)} run(s) failed: {summary.failed_runs}")


@app.command()
def query(
    dataset: Annotated[
        str,
        typer.Argument(
            help="bars_1m, bars_5m, bars_15m, bars_1h, bars_1d, options_chains (--as-of), "
            "fundamentals (point in time, --as-of), fundamental_ratios"
        ),
    ],
    symbols: Annotated[str, typer.Argument(help="Comma-separated symbols.")],
    start: Annotated[
        str | None, typer.Option(help="Start (inclusive): date or UTC datetime.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="End (exclusive): date or UTC datetime.")] = None,
    format: Annotated[str, typer.Option(help="table, csv or parquet.")] = "table",  # noqa: A002
    out: Annotated[Path | None, typer.Option(help="Output file (csv/parquet).")] = None,
    data_dir: DataDir = None,
    dsn: Annotated[str | None, typer.Option(help="Read TimescaleDB/PostgreSQL instead.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="fundamentals: as known at the end of this date (default today); "
            "options_chains: the chain as of this date (its session's close) or UTC datetime "
            "(latest snapshot at or before it)."
        ),
    ] = None,
    fields: Annotated[
        str | None, typer.Option(help="fundamentals: comma-separated fields (default all).")
    ] = None,
) -> None:
    """Print or export bars in [start, end) from the lake (or PostgreSQL with --dsn), an
    option chain as of a moment, or fundamentals as known on --as-of."""
    from market_assets.core.errors import MarketAssetsError
    from market_assets.core.stores.layout import _LAYOUTS
    from market_assets.query import MarketData

    symbol_list = [s.strip() for s in symbols.split(",") if s.strip()]
    market = MarketData(root=data_dir, dsn=dsn)
    if dataset == "options_chains":
        if as_of is None:
            _fail("options_chains needs --as-of DATE (or a UTC datetime)")
        try:
            frame = _concat(market.option_chain(symbol, as_of) for symbol in symbol_list)
        except (MarketAssetsError, ValueError) as exc:
            _fail(str(exc))
        _emit(frame.select(CHAIN_TABLE_COLUMNS) if format == "table" else frame, format, out)
        return
    granularity = {n: g for g, n in _granularity_map().items()}.get(dataset)
    if granularity is None and dataset not in FUNDAMENTAL_QUERIES:
        _fail(f"unknown dataset {dataset!r}; one of {sorted([*_LAYOUTS, *FUNDAMENTAL_QUERIES])}")
    if dataset != "fundamentals" and (start is None or end is None):
        _fail(f"{dataset} needs --start and --end")
    try:
        if dataset == "fundamentals":
            wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
            frame = market.fundamentals(symbol_list, wanted, as_of=as_of)
        elif dataset == "fundamental_ratios":
            frame = market.fundamental_ratios(symbol_list, start, end)
        else:
            frame = market.bars(
                symbol_list,
                start,
                end,
                granularity=granularity,
                store="timescale" if dsn else "lake",
            )
    except (MarketAssetsError, ValueError) as exc:
        _fail(str(exc))
    _emit(frame, format, out)


CHAIN_TABLE_COLUMNS = [
    *("symbol", "contract", "expiration", "strike", "kind", "bid", "ask", "last", "volume"),
    *("open_interest", "iv", "delta", "gamma", "vega", "theta", "iv_status"),
]
"""Columns `query options_chains --format table` prints (csv and parquet hold them all)."""


def _concat(frames):  # noqa: ANN001, ANN202 - polars frames, imported lazily
    """Concatenate query results (polars imported only when a query runs)."""
    import polars as pl

    return pl.concat(list(frames))


def _emit(frame, format: str, out: Path | None) -> None:  # noqa: ANN001, A002
    """Print a frame as a table, or write it as CSV (stdout or --out) or Parquet (--out)."""
    if format == "table":
        console.print(frame)
        console.print(f"{len(frame):,} rows")
    elif format in {"csv", "parquet"}:
        if out is None:
            if format == "parquet":
                _fail("--format parquet needs --out FILE")
            frame.write_csv(sys.stdout)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(out) if format == "csv" else frame.write_parquet(out, compression="zstd")
        console.print(f"wrote {len(frame):,} rows to {out}")
    else:
        _fail(f"--format {format!r} must be table, csv or parquet")


FUNDAMENTAL_QUERIES = ("fundamentals", "fundamental_ratios")


@app.command()
def ui(dagster_home: DagsterHome = None, port: int = 3000) -> None:
    """Start the Dagster UI on this project's instance (dagster dev)."""
    _prepare_environment(dagster_home, None, None)
    os.execvp(
        "dagster",
        ["dagster", "dev", "-m", "market_assets.definitions", "-p", str(port)],
    )


def _files_provider(  # noqa: ANN001 - config: AppConfig, imported lazily
    config, files: Path, datasets: list[str], provider: str | None
) -> str | None:
    """The provider that reads each dataset from `files` (ConfigError naming what is wrong).

    Returns the provider to pin: `provider` when given, else the one provider every dataset
    resolved to (several different ones are left to each run's own choice, made the same way).
    """
    from market_assets.core.errors import ConfigError
    from market_assets.core.providers.files_route import choose_file_reader

    chosen: set[str] = set()
    for name in datasets:
        try:
            chosen.add(choose_file_reader(config, name, files, provider).name)
        except ValueError as exc:
            raise ConfigError(f"--files: {exc}") from exc
    return provider or (chosen.pop() if len(chosen) == 1 else None)


@app.command()
def status(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print every check result (and the summary) as JSON.")
    ] = False,
    dataset: Annotated[
        list[str] | None, typer.Option(help="Only this bar dataset (repeatable).")
    ] = None,
    dagster_home: DagsterHome = None,
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
) -> None:
    """Coverage and quality of the bar datasets (the coverage_report's numbers)."""
    _prepare_environment(dagster_home, data_dir, config_dir)
    import json

    from dagster import DagsterInstance

    from market_assets.core.config import AppConfig
    from market_assets.core.errors import MarketAssetsError
    from market_assets.defs.checks.status import (
        coverage_json,
        coverage_of,
        results_json,
        status_tables,
    )

    try:
        config = AppConfig.load()
        with DagsterInstance.get() as instance:
            coverage = coverage_of(instance, config, dataset)
        if json_output:
            document = {**coverage_json(coverage), "results": results_json(config, dataset)}
            sys.stdout.write(json.dumps(document, default=str) + "\n")
            return
    except (MarketAssetsError, ValueError) as exc:
        _fail(str(exc))
    for table in status_tables(coverage):
        console.print(table)


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Folder to write the report into.")],
    dagster_home: DagsterHome = None,
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
) -> None:
    """Write the coverage report (Markdown) and its heatmap (PNG) into --out."""
    _prepare_environment(dagster_home, data_dir, config_dir)
    from dagster import DagsterInstance

    from market_assets.core.config import AppConfig
    from market_assets.core.errors import MarketAssetsError
    from market_assets.core.stores.lake import ParquetLake
    from market_assets.defs.assets.coverage import write_report
    from market_assets.defs.checks.status import coverage_of

    try:
        config = AppConfig.load()
        with DagsterInstance.get() as instance:
            coverage = coverage_of(instance, config)
        written = write_report(ParquetLake(str(out)), coverage, folder="")
    except (MarketAssetsError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"wrote {written.markdown_uri} and {written.heatmap_uri}")


def _check_summary_line(instance, run_ids: list[str]) -> str:  # noqa: ANN001
    from market_assets.defs.checks.status import summarize_run_checks

    return summarize_run_checks(instance, run_ids).line()


def _granularity_map() -> dict[str, str]:
    from market_assets.core.stores.layout import GRANULARITY_DATASET

    return GRANULARITY_DATASET


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("partitions"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


if __name__ == "__main__":
    app()
