"""market-assets: demo | ingest | query | status | report | ui."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(
    help="market-assets: market data as Dagster assets (demo, ingest, query, status, report, ui).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

DEFAULT_DAGSTER_HOME = ".dagster_home"
INSTANCE_LOCK = ".market-assets.lock"
"""Lock file in DAGSTER_HOME: held while a command creates the instance's storage."""
DAGSTER_HOME_YAML = """\
# Dagster instance for local runs of market-assets (SQLite storage in this folder).
# The full stack's PostgreSQL-backed instance is ../dagster.yaml (see README).
telemetry:
  enabled: false
# UI backfills run as rectangles of sessions x symbol keys (market_assets/defs/backfills.py).
instance_class:
  module: market_assets.defs.instance
  class: MarketAssetsInstance
"""
WIDE_TERMINAL = 120  # from this width the summary also shows where each dataset is stored
SILENT_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""Runs log nothing to the terminal: the CLI prints what happened, and a failed run's root
cause on its `error:` line (`--debug` shows Dagster's own log and the trace instead)."""


def _prepare_environment(
    dagster_home: Path | None, data_dir: str | None, config_dir: Path | None
) -> None:
    """Point Dagster and the platform at their folders, and create the instance there."""
    home = (dagster_home or Path(os.environ.get("DAGSTER_HOME", DEFAULT_DAGSTER_HOME))).resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    if data_dir:
        os.environ["MARKET_ASSETS_DATA_DIR"] = data_dir
    if config_dir:
        os.environ["MARKET_ASSETS_CONFIG_DIR"] = str(config_dir)
    try:
        home.mkdir(parents=True, exist_ok=True)
        _create_instance_once(home)
    except OSError as exc:
        from market_assets.core.errors import cannot

        _fail(f"{cannot('set up the Dagster home', home, exc)} (--dagster-home, $DAGSTER_HOME)")


def _create_instance_once(home: Path) -> None:
    """Write dagster.yaml when missing and create the instance's storage, one command at a
    time: two commands creating a fresh SQLite instance at once can break it for good
    (`alembic_version has more than one head`, `table runs already exists`)."""
    from dagster import DagsterInstance
    from filelock import FileLock

    with FileLock(home / INSTANCE_LOCK):
        if not (home / "dagster.yaml").exists():
            (home / "dagster.yaml").write_text(DAGSTER_HOME_YAML)
        with DagsterInstance.get():
            pass  # creating it creates (or migrates) its storage


def _parse_date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name) from None


def _fail(message: str) -> None:
    _error(message)
    raise typer.Exit(code=2)


def _error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}")


def _note(message: str) -> None:
    console.print(f"[yellow]{escape(message)}[/yellow]")


Debug = Annotated[
    bool, typer.Option("--debug", help="Show Dagster's log and full traces of failures.")
]


DagsterHome = Annotated[
    Path | None,
    typer.Option(help="Dagster instance folder (default $DAGSTER_HOME or ./.dagster_home)."),
]
DataDir = Annotated[
    str | None, typer.Option(help="Lake root: folder or s3://bucket/prefix (default ./data).")
]
ConfigDir = Annotated[Path | None, typer.Option(help="Config folder (default ./configs).")]


def _print_summary(summary, data_root: str, title: str, order: list[str]) -> None:  # noqa: ANN001
    """What the runs stored, one row per dataset, fitted to the terminal; then every row
    that was quarantined or not stored, with the rule or reason, and every failed symbol."""
    from market_assets.cli_output import fitted_tables, print_tables
    from market_assets.core.stores.layout import layout_for

    wide = console.width >= WIDE_TERMINAL
    ranked = sorted(
        summary.datasets.items(),
        key=lambda item: order.index(item[0]) if item[0] in order else len(order),
    )
    headers = ["dataset", "partitions", "rows", "quarantined", "not\nstored", "seconds", "source"]
    rows = []
    for name, stats in ranked:
        row = [
            name,
            stats.partitions,
            stats.rows,
            stats.quarantined,
            sum(stats.dropped.values()),
            f"{stats.seconds:.2f}",
            ", ".join(sorted(stats.sources)) or "-",
        ]
        if wide:
            try:
                row.append(f"{data_root.rstrip('/')}/{layout_for(name).folder}/")
            except ValueError:
                row.append("-")
        rows.append(row)
    numbers = {"partitions", "rows", "quarantined", "not\nstored", "seconds"}
    columns = [*headers, "files"] if wide else headers
    print_tables(console, fitted_tables(title, columns, rows, console.width, right=numbers))
    for name, stats in ranked:
        if stats.quarantine_rules:
            rules = ", ".join(f"{rule} {n:,}" for rule, n in sorted(stats.quarantine_rules.items()))
            _note(
                f"{name}: {stats.quarantined:,} row(s) quarantined ({rules}) in "
                f"{data_root.rstrip('/')}/quarantine/{name}/"
            )
        if stats.dropped:
            reasons = ", ".join(f"{why} {n:,}" for why, n in sorted(stats.dropped.items()))
            _note(f"{name}: {sum(stats.dropped.values()):,} row(s) not stored ({reasons})")
        for symbol, message in stats.failed_symbols.items():
            _note(f"{name} {symbol} failed: {message}")
    if not wide and ranked:
        console.print(f"stored under {data_root.rstrip('/')}/ (read with market-assets query)")


def _record_report(instance, config, summary) -> None:  # noqa: ANN001 - lazily imported types
    """Record the coverage report (no run) and count it in the summary."""
    from market_assets.defs.assets.coverage import COVERAGE_ASSET, record_report
    from market_assets.defs.checks.status import bar_datasets_of, lake_of
    from market_assets.defs.runner import DatasetStats

    metadata = record_report(instance, config, lake_of(config), bar_datasets_of(config))
    stats = summary.datasets.setdefault(COVERAGE_ASSET, DatasetStats(COVERAGE_ASSET))
    stats.partitions += 1
    stats.seconds += float(metadata["seconds"])


def _failed_runs(instance, summary, debug: bool) -> list[str]:  # noqa: ANN001
    """One line per failed run: its id, step and root cause (the trace too with --debug)."""
    from market_assets.defs.run_errors import run_failure

    lines = []
    for run_id in summary.failed_runs:
        failure = run_failure(instance, run_id)
        if debug and failure.trace:
            console.print(failure.trace, markup=False, highlight=False)
        lines.append(failure.line())
    return lines


def _stops_cleanly(command: Callable[..., None]) -> Callable[..., None]:
    """A command that launches runs, with SIGINT/SIGTERM turned into a clean stop: the current
    run finishes, no further run starts, a second signal stops at once (defs/process_runs.py)."""

    @functools.wraps(command)
    def run(*args, **kwargs) -> None:  # noqa: ANN002, ANN003 - the command's own options
        from market_assets.defs.process_runs import StopSignals

        with StopSignals(notify=_note, error=_error):
            command(*args, **kwargs)

    return run


def _recover_orphaned_runs(instance) -> None:  # noqa: ANN001 - DagsterInstance
    """Fail the runs earlier commands on this host left unfinished when they died, and free
    their pool slots (they would block every later run of their pools)."""
    from market_assets.defs.process_runs import fail_orphaned_runs

    for line in fail_orphaned_runs(instance):
        _note(line)


def _finish(summary, failures: list[str], debug: bool, interrupted=None) -> None:  # noqa: ANN001
    """The final `error:` line when a signal stopped the runs (exit 128 + signal) or a run
    failed (the first root cause, with its run id)."""
    if interrupted is not None:
        for line in failures:
            _note(line)
        _error(
            f"stopped by {interrupted.signal_name}: {len(summary.run_ids)} run(s) finished, "
            "no further run started; run the same command again to do the rest"
        )
        raise typer.Exit(code=interrupted.exit_code)
    if not failures:
        return
    for line in failures[1:]:
        _note(line)
    more = f" ({len(failures) - 1} more above)" if len(failures) > 1 else ""
    hint = "" if debug else " (--debug shows the trace)"
    _fail(f"{failures[0]}{more}{hint}")


@app.command()
@_stops_cleanly
def demo(
    universe: Annotated[str, typer.Option(help="Universe from configs/universes.yaml.")] = "demo",
    minute_sessions: Annotated[
        int, typer.Option(help="Sessions of 1-minute bars (and of option chains).")
    ] = 5,
    daily_sessions: Annotated[int, typer.Option(help="Sessions of daily bars.")] = 60,
    dagster_home: DagsterHome = None,
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
    debug: Debug = False,
) -> None:
    """Ingest a demo universe from the synthetic provider through Dagster, offline, no keys."""
    started = time.perf_counter()
    _prepare_environment(dagster_home, data_dir, config_dir)
    from dagster import AssetKey

    from market_assets.core.calendar import get_calendar
    from market_assets.core.config import AppConfig
    from market_assets.core.errors import MarketAssetsError
    from market_assets.defs.assets.coverage import COVERAGE_ASSET
    from market_assets.defs.process_runs import RunsInterrupted, raise_if_stopping
    from market_assets.defs.runner import RunSummary

    try:
        config = AppConfig.load()
        # Imported here: importing market_assets.definitions builds its Definitions from
        # the configs, so a bad config file is reported like any other config error.
        from market_assets.definitions import build_definitions

        defs = build_definitions(config)
        keys = config.symbol_partitions.keys_for_symbols(config.universe_symbols(universe))
    except (MarketAssetsError, ValueError) as exc:
        if debug:
            raise
        _fail(str(exc))
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
    minute_calendar = get_calendar(config.calendar_of("bars_1m"))
    daily_calendar = get_calendar(config.calendar_of("bars_1d"))
    plan = [
        (minute, minute_calendar.last_completed_sessions(minute_sessions), minute_sessions),
        (daily, daily_calendar.last_completed_sessions(daily_sessions), daily_sessions),
        (options, daily_calendar.last_completed_sessions(minute_sessions), minute_sessions),
    ]
    run_config = None if debug else SILENT_RUN_CONFIG
    tags = {"trigger": "market-assets demo"}
    summary = RunSummary()
    interrupted = None
    opened = _rectangle_runs(defs, keys, tags=tags, summary=summary, run_config=run_config)
    with opened as (instance, rectangle):
        try:
            for assets, sessions, per_run in plan:
                if not assets or not sessions:
                    continue
                label = ", ".join(a.to_user_string() for a in assets)
                rectangle(label, assets, sessions, per_run)
            raise_if_stopping()
        except RunsInterrupted as exc:
            interrupted = exc
        if AssetKey(COVERAGE_ASSET) in present and not summary.failed_runs and not interrupted:
            # The report reads what the runs above recorded; one event, not a run.
            _record_report(instance, config, summary)
        checks_line = _check_summary_line(instance, summary.run_ids)
        failures = _failed_runs(instance, summary, debug)
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
    _finish(summary, failures, debug, interrupted)


@app.command()
@_stops_cleanly
def ingest(
    dataset: Annotated[
        list[str],
        typer.Option(
            help="Dataset or asset (repeatable): bars_1d, bars_1m, trades, corporate_actions, "
            "bars_1d_adjusted, indicators, coverage_report, ..."
        ),
    ],
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
    with_downstream: Annotated[
        bool,
        typer.Option(
            help="Also materialize every asset downstream of these (adjusted bars, "
            "indicators, coverage_report, ...) over the same sessions and symbols."
        ),
    ] = False,
    allow_incomplete: Annotated[
        bool,
        typer.Option(help="Also ingest today's session while it is still open (partial bars)."),
    ] = False,
    dagster_home: DagsterHome = None,
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
    debug: Debug = False,
) -> None:
    """Materialize datasets for sessions in [start, end) on the Dagster instance."""
    _prepare_environment(dagster_home, data_dir, config_dir)

    from market_assets.cli_reference import check_snapshot_sources, snapshot_datasets_only
    from market_assets.core.calendar import get_calendar
    from market_assets.core.config import AppConfig
    from market_assets.core.errors import MarketAssetsError
    from market_assets.core.ranges import plan_sessions
    from market_assets.core.symbols import validate_symbols
    from market_assets.defs.assets.bars import FILES_DIR_TAG, PROVIDER_TAG
    from market_assets.defs.process_runs import RunsInterrupted, raise_if_stopping
    from market_assets.defs.run_once import materialize_once
    from market_assets.defs.runner import RunSummary
    from market_assets.defs.selection import plan_steps

    first, stop = _parse_date(start, "--start"), _parse_date(end, "--end")
    try:
        config = AppConfig.load()
        if snapshot_datasets_only(config, dataset):
            check_snapshot_sources(config, dataset, provider, files)
    except MarketAssetsError as exc:
        _fail(str(exc))
    if snapshot_datasets_only(config, dataset):
        if universe or symbols:
            _fail("reference and index_constituents have no symbols: drop --universe/--symbols")
        _ingest_snapshots(config, list(dataset), first, stop, provider, files)
        return
    if bool(universe) == bool(symbols):
        _fail("give exactly one of --universe or --symbols")
    try:
        wanted = (
            config.universe_symbols(universe)
            if universe
            else validate_symbols(s.strip() for s in (symbols or "").split(",") if s.strip())
        )
        if provider and provider not in config.providers.providers:
            _fail(f"unknown provider {provider!r}; known: {sorted(config.providers.providers)}")
        if provider and files is None and not config.providers.providers[provider].enabled:
            _fail(f"provider {provider!r} is disabled in providers.yaml: set enabled: true")
        from market_assets.definitions import build_definitions  # builds from the configs

        defs = build_definitions(config)
        steps = plan_steps(
            defs, config, list(dataset), with_derived=with_derived, with_downstream=with_downstream
        )
        if files is not None:
            fetched = [n for n in dataset if n in config.datasets and config.datasets[n].providers]
            provider = _files_provider(config, files, fetched or list(dataset), provider)
        plans = {
            step: plan_sessions(
                step.name,
                step.start,
                get_calendar(step.calendar),
                first,
                stop,
                datasets_file=config.config_dir / "datasets.yaml",
                start_key=_configured_start(config, step.name),
                allow_incomplete=allow_incomplete,
            )
            for step in steps
            if step.start is not None
        }
    except (MarketAssetsError, ValueError) as exc:
        if debug:
            raise
        _fail(str(exc))
    for plan in plans.values():
        for note in plan.notes:
            _note(note)
    keys = (
        config.symbol_partitions.keys_for_universe(universe, wanted)
        if universe
        else config.symbol_partitions.keys_for_symbols(wanted)
    )
    tags = {"trigger": "market-assets ingest"}
    if provider:
        tags[PROVIDER_TAG] = provider
    if files is not None:
        tags[FILES_DIR_TAG] = str(files.resolve())
    run_config = None if debug else SILENT_RUN_CONFIG
    summary = RunSummary()
    interrupted = None
    opened = _rectangle_runs(defs, keys, tags=tags, summary=summary, run_config=run_config)
    with opened as (instance, rectangle):
        try:
            for step in steps:
                if step.start is None:
                    if not summary.failed_runs:
                        materialize_once(defs, instance, step.assets, tags, summary, run_config)
                    continue
                rectangle(
                    step.label, list(step.assets), plans[step].sessions, step.sessions_per_run
                )
            raise_if_stopping()
        except RunsInterrupted as exc:
            interrupted = exc
        failures = _failed_runs(instance, summary, debug)
    _print_summary(summary, config.data_dir, f"ingest [{first}, {stop})", list(config.datasets))
    console.print(
        f"Dagster runs {summary.wall_seconds:.1f} s: our code {summary.our_seconds:.1f} s, "
        f"Dagster bookkeeping {summary.dagster_seconds:.1f} s"
    )
    _finish(summary, failures, debug, interrupted)


def _configured_start(config, name: str) -> str:  # noqa: ANN001 - AppConfig, imported lazily
    """The datasets.yaml entry whose `start` a dataset's partitions begin at."""
    return name if name in config.datasets else "bars_1d"


@app.command()
def query(
    dataset: Annotated[
        str,
        typer.Argument(
            help="bars_1m, bars_5m, bars_15m, bars_1h, bars_1d, indicators, options_chains "
            "(--as-of), fundamentals (point in time, --as-of), fundamental_ratios"
        ),
    ],
    symbols: Annotated[str, typer.Argument(help="Comma-separated symbols.")],
    start: Annotated[
        str | None, typer.Option(help="Start (inclusive): date or UTC datetime.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="End (exclusive): date or UTC datetime.")] = None,
    format: Annotated[str, typer.Option(help="table, csv or parquet.")] = "table",  # noqa: A002
    out: Annotated[Path | None, typer.Option(help="Output file (csv/parquet).")] = None,
    adjusted: Annotated[
        bool,
        typer.Option(help="Add split/dividend adjusted prices and the factors (bars only)."),
    ] = False,
    names: Annotated[
        str | None, typer.Option(help="Indicators to show, comma-separated (default: all).")
    ] = None,
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
    """Print or export bars or indicators in [start, end) from the lake (or PostgreSQL with
    --dsn), an option chain as of a moment, or fundamentals as known on --as-of."""
    import warnings

    from market_assets.core.errors import MarketAssetsError
    from market_assets.core.symbols import validate_symbols
    from market_assets.query import INDICATORS, MarketData

    symbol_list = [s.strip() for s in symbols.split(",") if s.strip()]
    if dataset == "options_chains":
        if as_of is None:
            _fail("options_chains needs --as-of DATE (or a UTC datetime)")
        try:
            market = MarketData(root=data_dir, dsn=dsn)
            frame = _concat(market.option_chain(symbol, as_of) for symbol in symbol_list)
        except (MarketAssetsError, ValueError) as exc:
            _fail(str(exc))
        _emit(frame.select(CHAIN_TABLE_COLUMNS) if format == "table" else frame, format, out)
        return
    granularity = {n: g for g, n in _granularity_map().items()}.get(dataset)
    known = [*_granularity_map().values(), INDICATORS, *FUNDAMENTAL_QUERIES]
    if granularity is None and dataset not in known:
        _fail(f"unknown dataset {dataset!r}; one of {known}")
    if dataset != "fundamentals" and (start is None or end is None):
        _fail(f"{dataset} needs --start and --end")
    if adjusted and granularity is None:
        _fail(f"--adjusted applies to bars, not {dataset}")
    store = "timescale" if dsn else "lake"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            validate_symbols(symbol_list)
            market = MarketData(root=data_dir, dsn=dsn)
            if dataset == "fundamentals":
                wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
                frame = market.fundamentals(symbol_list, wanted, as_of=as_of)
            elif dataset == "fundamental_ratios":
                frame = market.fundamental_ratios(symbol_list, start, end)
            elif dataset == INDICATORS:
                wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
                frame = market.indicators(symbol_list, start, end, names=wanted)
            else:
                frame = market.bars(
                    symbol_list, start, end, granularity=granularity, store=store, adjusted=adjusted
                )
        except (MarketAssetsError, ValueError) as exc:
            _fail(str(exc))
    for warning in said:
        if issubclass(warning.category, UserWarning):
            _note(str(warning.message))
    _emit(frame, format, out, title=dataset)


CHAIN_TABLE_COLUMNS = [
    *("symbol", "contract", "expiration", "strike", "kind", "bid", "ask", "last", "volume"),
    *("open_interest", "iv", "delta", "gamma", "vega", "theta", "iv_status"),
]
"""Columns `query options_chains --format table` prints (csv and parquet hold them all)."""


def _concat(frames):  # noqa: ANN001, ANN202 - polars frames, imported lazily
    """Concatenate query results (polars imported only when a query runs)."""
    import polars as pl

    return pl.concat(list(frames))


def _emit(frame, format: str, out: Path | None, title: str = "") -> None:  # noqa: ANN001, A002
    """Print a frame as a table (every column, fitted to the terminal), or write it as CSV
    (stdout or --out) or Parquet (--out)."""
    from market_assets.cli_output import frame_tables, print_tables

    if format == "table":
        print_tables(console, frame_tables(frame, console.width, title=title))
        console.print(f"{len(frame):,} rows, {len(frame.columns)} columns")
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


def _ingest_snapshots(  # noqa: ANN001 - config: AppConfig, imported lazily
    config, datasets: list[str], first: dt.date, stop: dt.date, provider, files
) -> None:
    """`ingest` of reference / index_constituents: session runs, then the derived tables."""
    from market_assets.cli_reference import ingest_snapshots
    from market_assets.defs.assets.bars import FILES_DIR_TAG, PROVIDER_TAG
    from market_assets.defs.process_runs import RunsInterrupted, raise_if_stopping
    from market_assets.defs.runner import RunSummary

    tags = {"trigger": "market-assets ingest"}
    if provider:
        tags[PROVIDER_TAG] = provider
    if files is not None:
        tags[FILES_DIR_TAG] = str(files.resolve())
    summary = RunSummary()
    interrupted = None
    with _progress() as progress:

        def on_progress(name: str):  # noqa: ANN202
            task = progress.add_task(name, total=None)
            return lambda done, total: progress.update(task, completed=done, total=total)

        try:
            ingest_snapshots(
                config, datasets, first, stop, tags, on_progress, summary, _recover_orphaned_runs
            )
            raise_if_stopping()
        except RunsInterrupted as exc:
            interrupted = exc
    _print_summary(summary, config.data_dir, f"ingest [{first}, {stop})", list(config.datasets))
    console.print(
        f"Dagster runs {summary.wall_seconds:.1f} s: our code {summary.our_seconds:.1f} s, "
        f"Dagster bookkeeping {summary.dagster_seconds:.1f} s"
    )
    if interrupted is not None:
        _finish(summary, [], False, interrupted)
    if summary.failed_runs:
        _fail(f"{len(summary.failed_runs)} run(s) failed: {summary.failed_runs}")


@app.command()
def constituents(
    index: Annotated[str, typer.Argument(help="Index, e.g. SP500.")],
    as_of: Annotated[str, typer.Option("--as-of", help="Date (YYYY-MM-DD): members that day.")],
    format: Annotated[str, typer.Option(help="table or csv.")] = "table",  # noqa: A002
    data_dir: DataDir = None,
) -> None:
    """Members of an index on a date, point in time (from the stored snapshots)."""
    from market_assets.core.errors import MarketAssetsError
    from market_assets.query import MarketData

    day = _parse_date(as_of, "--as-of")
    try:
        frame = MarketData(root=data_dir).constituents(index, day)
    except (MarketAssetsError, ValueError) as exc:
        _fail(str(exc))
    if format == "csv":
        frame.write_csv(sys.stdout)
        return
    if format != "table":
        _fail(f"--format {format!r} must be table or csv")
    from market_assets.cli_output import fitted_tables, print_tables

    shown = ("symbol", "name", "cik", "security_id", "member_since")
    rows = [tuple(row[c] for c in shown) for row in frame.iter_rows(named=True)]
    print_tables(console, fitted_tables(f"{index} as of {day}", shown, rows, console.width))
    sessions = frame["snapshot_session"].unique().to_list()
    console.print(
        f"{frame.height} members"
        + (f" (snapshot of {sessions[0]})" if sessions else ": no snapshot on or before that date")
    )


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
        bool,
        typer.Option(
            "--json",
            help="JSON Lines: one record per line (kind: summary, failure, feed, gap, result).",
        ),
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
    from dagster import DagsterInstance

    from market_assets.cli_output import json_lines, print_tables
    from market_assets.core.config import AppConfig
    from market_assets.core.errors import MarketAssetsError
    from market_assets.defs.checks.status import (
        coverage_of,
        coverage_records,
        results_json,
        status_tables,
    )

    try:
        config = AppConfig.load()
        with DagsterInstance.get() as instance:
            coverage = coverage_of(instance, config, dataset)
        if json_output:
            results = ({"kind": "result", **row} for row in results_json(config, dataset))
            sys.stdout.write(json_lines(coverage_records(coverage)))
            sys.stdout.write(json_lines(results))
            return
    except (MarketAssetsError, ValueError) as exc:
        _fail(str(exc))
    print_tables(console, status_tables(coverage, console.width))


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


@contextlib.contextmanager
def _rectangle_runs(  # noqa: ANN001 - Dagster types, imported lazily
    defs, keys, **options
) -> Iterator[tuple[Any, Callable[..., None]]]:
    """The Dagster instance (entered: the context Dagster resolves definitions against), with
    runs orphaned by killed commands recovered, and `rectangle(label, assets, sessions,
    per_run)`: `materialize_rectangle` of `defs` over symbol `keys` with `options`, behind a
    progress bar."""
    from dagster import DagsterInstance

    from market_assets.defs.runner import materialize_rectangle

    with DagsterInstance.get() as instance, _progress() as progress:
        _recover_orphaned_runs(instance)

        def rectangle(label: str, assets, sessions, per_run: int) -> None:  # noqa: ANN001
            task = progress.add_task(label, total=None)
            materialize_rectangle(
                defs,
                instance,
                assets,
                sessions,
                keys,
                per_run,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                **options,
            )

        yield instance, rectangle


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
