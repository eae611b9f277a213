"""Scale benchmark (issue 8): how much of a daily-history backfill is Dagster's bookkeeping.

Backfills bars_1d and its daily downstream assets (corporate_actions, bars_1d_adjusted,
indicators, and the checks) for N symbols x S sessions through Dagster from the synthetic
provider, the way `market-assets ingest` does (ranged runs of `backfill_sessions_per_run`
sessions x all symbol keys), once per instance storage: the embedded SQLite default and
PostgreSQL (a scratch database on 127.0.0.1:5432). Each backfill runs in its own process so
its peak RSS is its own. Per materialized partition it prints our code's ms, Dagster's ms and
the events stored; then the wall time and peak RSS.

It also times `market-assets demo` on a fresh folder (embedded default), and, when
benchmarks/ui_backfill.py is present, takes its UI/GraphQL figures.

    python benchmarks/scale.py                                   # 20 symbols x 250 sessions
    python benchmarks/scale.py --symbols 503 --since 2009-01-02 --storage postgres
    python benchmarks/scale.py --baseline /path/to/older/checkout  # the same work, before/after

`--symbols 503` takes the S&P 500 tickers of ../shared/realdata/sp500 (bucket partitioning,
16 buckets, above 100 symbols). The last line is
`RESULT sp500_history_s=<s> demo_s=<s> bookkeeping_share=<0..1> ui_backfill_runs=<n>
launch_one_symbol_s=<s> webserver_rss_mb=<mb>`; sp500_history_s is the measured wall time
when the run covered the S&P 500 since 2009, else an extrapolation from the PostgreSQL run's
per-partition cost (said so on the line before).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SP500 = REPO.parent / "shared" / "realdata" / "sp500" / "sp500_constituents_datasets.csv"
DAILY_ASSETS = ["bars_1d", "corporate_actions", "bars_1d_adjusted", "indicators"]
SP500_SINCE = dt.date(2009, 1, 2)
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

# Runs inside the measured process: only the runner API that older checkouts share.
WORKER = r"""
import datetime as dt, json, os, resource, sys, time
from dagster import AssetKey, DagsterInstance
from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.definitions import build_definitions
from market_assets.defs.runner import materialize_rectangle

spec = json.loads(sys.argv[1])
started = time.perf_counter()
config = AppConfig.load()
defs = build_definitions(config)
calendar = get_calendar(config.exchange)
first, last = (dt.date.fromisoformat(spec[k]) for k in ("first", "last"))
sessions = calendar.sessions(first, last)
keys = config.symbol_partitions.keys_for_symbols(config.universe_symbols("bench"))
per_run = config.datasets["bars_1d"].backfill_sessions_per_run
with DagsterInstance.get() as instance:
    summary = materialize_rectangle(
        defs, instance, [AssetKey(a) for a in spec["assets"]], sessions, keys, per_run
    )
    events = 0
    storage = instance.event_log_storage
    from sqlalchemy import text
    for run_id in summary.run_ids:
        with storage.run_connection(run_id) as conn:
            events += conn.execute(
                text("select count(*) from event_logs where run_id = :r"), {"r": run_id}
            ).scalar()
print(json.dumps({
    "wall": time.perf_counter() - started,
    "runs_wall": summary.wall_seconds,
    "ours": summary.our_seconds,
    "runs": len(summary.run_ids),
    "failed_runs": len(summary.failed_runs),
    "partitions": {n: s.partitions for n, s in summary.datasets.items()},
    "rows": {n: s.rows for n, s in summary.datasets.items()},
    "events": events,
    "sessions": len(sessions),
    "keys": len(keys),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
}))
"""


def universe_symbols(count: int) -> list[str]:
    lines = SP500.read_text().splitlines()[1:]
    symbols = sorted({line.split(",")[0].strip() for line in lines if line.strip()})
    return symbols[:count]


def prepare(folder: Path, checkout: Path, symbols: list[str], buckets: int | None) -> Path:
    """A config folder: the checkout's own configs plus the `bench` universe."""
    configs = folder / "configs"
    shutil.copytree(checkout / "configs", configs)
    universes = yaml.safe_load((configs / "universes.yaml").read_text())
    bench: dict[str, object] = {"description": "scale benchmark", "symbols": symbols}
    if buckets:
        bench.update(partitioning="bucket", buckets=buckets)
    universes["universes"] = {"bench": bench}
    (configs / "universes.yaml").write_text(yaml.safe_dump(universes))
    return configs


def dagster_home(folder: Path, storage: str, dsn: str | None) -> Path:
    home = folder / "dagster_home"
    home.mkdir()
    lines = ["telemetry:\n  enabled: false\n"]
    if storage == "postgres":
        assert dsn is not None
        lines.append(f"storage:\n  postgres:\n    postgres_url: {dsn}\n")
    (home / "dagster.yaml").write_text("".join(lines))
    return home


def scratch_database() -> tuple[str, str]:
    """(name, SQLAlchemy URL) of a new scratch database for Dagster's instance storage."""
    import psycopg

    name = f"market_assets_scale_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backfill(
    checkout: Path,
    storage: str,
    symbols: list[str],
    buckets: int | None,
    first: dt.date,
    last: dt.date,
) -> dict:
    """One backfill in a fresh folder and process; its figures."""
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        folder = Path(tmp)
        configs = prepare(folder, checkout, symbols, buckets)
        database, dsn = scratch_database() if storage == "postgres" else (None, None)
        try:
            env = {
                **os.environ,
                "PYTHONPATH": str(checkout),
                "DAGSTER_HOME": str(dagster_home(folder, storage, dsn)),
                "MARKET_ASSETS_CONFIG_DIR": str(configs),
                "MARKET_ASSETS_DATA_DIR": str(folder / "data"),
            }
            env.pop("MARKET_ASSETS_TIMESCALE_DSN", None)
            spec = {"assets": DAILY_ASSETS, "first": first.isoformat(), "last": last.isoformat()}
            done = subprocess.run(
                [sys.executable, "-c", WORKER, json.dumps(spec)],
                env=env,
                cwd=folder,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            if database:
                drop_database(database)
    if done.returncode != 0:
        raise RuntimeError(f"backfill failed ({checkout}, {storage}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def demo_seconds(checkout: Path) -> float:
    """Wall time of `market-assets demo` on a fresh folder (embedded default)."""
    with tempfile.TemporaryDirectory(prefix="scale-demo-") as tmp:
        shutil.copytree(checkout / "configs", Path(tmp) / "configs")
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        for name in ("DAGSTER_HOME", "MARKET_ASSETS_DATA_DIR", "MARKET_ASSETS_CONFIG_DIR"):
            env.pop(name, None)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "market_assets.cli", "demo"],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"demo failed ({checkout}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def ui_figures() -> dict[str, str]:
    """benchmarks/ui_backfill.py's RESULT fields, when that script exists."""
    script = REPO / "benchmarks" / "ui_backfill.py"
    if not script.exists():
        return {}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, cwd=REPO
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"ui_backfill.py failed: {done.stderr[-1500:]}")
        return {}
    print(done.stdout.strip())
    return dict(part.split("=", 1) for part in lines[-1].split()[1:])


def row(label: str, figures: dict) -> tuple[str, int, float, float, float, float, float, float]:
    partitions = sum(figures["partitions"].values())
    dagster = max(figures["runs_wall"] - figures["ours"], 0.0)
    return (
        label,
        partitions,
        1000 * figures["ours"] / max(partitions, 1),
        1000 * dagster / max(partitions, 1),
        figures["events"] / max(partitions, 1),
        figures["wall"],
        figures.get("cpu_s", float("nan")),
        figures["peak_rss_mb"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=250, help="sessions up to the last one")
    parser.add_argument("--since", type=dt.date.fromisoformat, help="first session instead")
    parser.add_argument("--storage", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--buckets", type=int, help="bucket partitioning (default: 16 > 100)")
    parser.add_argument("--baseline", type=Path, help="an older checkout to run the same work")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-ui", action="store_true")
    args = parser.parse_args()

    from market_assets.core.calendar import get_calendar

    calendar = get_calendar()
    last = calendar.last_completed_sessions(1)[-1]
    first = args.since or calendar.sessions(last - dt.timedelta(days=args.sessions * 2), last)[
        -args.sessions
    ]
    symbols = universe_symbols(args.symbols)
    buckets = args.buckets if args.buckets else (16 if len(symbols) > 100 else None)
    checkouts = [("after", REPO)] + ([("before", args.baseline)] if args.baseline else [])
    storages = [s.strip() for s in args.storage.split(",") if s.strip()]
    print(
        f"{len(symbols)} symbols ({'bucket x' + str(buckets) if buckets else 'one key each'}), "
        f"sessions {first} .. {last}, assets {', '.join(DAILY_ASSETS)} + checks"
    )
    header = (
        "run", "partitions", "ours ms/p", "dagster ms/p", "events/p", "wall s", "cpu s", "rss MB"
    )
    print(f"{header[0]:<22}" + "".join(f"{h:>14}" for h in header[1:]))
    results: dict[tuple[str, str], dict] = {}
    for label, checkout in checkouts:
        for storage in storages:
            figures = backfill(checkout, storage, symbols, buckets, first, last)
            results[(label, storage)] = figures
            name, *values = row(f"{label} {storage}", figures)
            print(
                f"{name:<22}{values[0]:>14,}{values[1]:>14.3f}{values[2]:>14.3f}"
                f"{values[3]:>14.2f}{values[4]:>14.1f}{values[5]:>14.1f}{values[6]:>14.0f}"
            )
            if figures["failed_runs"]:
                print(f"  {figures['failed_runs']} run(s) failed")
    main_run = results.get(("after", "postgres")) or results[("after", storages[0])]
    bookkeeping = max(main_run["runs_wall"] - main_run["ours"], 0.0) / main_run["wall"]
    sp500_keys = 16
    full = len(symbols) >= 503 and first <= SP500_SINCE
    if full:
        sp500 = main_run["wall"]
    else:
        sessions = len(calendar.sessions(SP500_SINCE, last))
        partitions = sum(main_run["partitions"].values())
        symbol_sessions = main_run["sessions"] * len(symbols)
        ours = main_run["ours"] / symbol_sessions  # our code scales with symbol-sessions
        dagster = (main_run["wall"] - main_run["ours"]) / partitions  # Dagster's with partitions
        sp500 = ours * 503 * sessions + dagster * sessions * sp500_keys * len(DAILY_ASSETS)
        print(
            f"sp500_history_s extrapolated: our code {ours * 1e6:.0f} us per symbol-session x "
            f"503 x {sessions} + Dagster {dagster * 1000:.2f} ms per partition x {sessions} "
            f"sessions x {sp500_keys} buckets x {len(DAILY_ASSETS)} assets (measure it with "
            "--symbols 503 --since 2009-01-02 --storage postgres)"
        )
    demo = {} if args.skip_demo else {label: demo_seconds(c) for label, c in checkouts}
    for label, seconds in demo.items():
        print(f"demo ({label}): {seconds:.1f} s")
    ui = {} if args.skip_ui else ui_figures()
    print(
        f"RESULT sp500_history_s={sp500:.1f} demo_s={demo.get('after', float('nan')):.1f} "
        f"bookkeeping_share={bookkeeping:.3f} ui_backfill_runs={ui.get('ui_backfill_runs', 'nan')} "
        f"launch_one_symbol_s={ui.get('launch_one_symbol_s', 'nan')} "
        f"webserver_rss_mb={ui.get('webserver_rss_mb', 'nan')}"
    )


if __name__ == "__main__":
    main()
