"""Benchmark building S&P 500 membership 1996-2025 from the real interval file.

    python benchmarks/constituents.py [--files ../shared/realdata/sp500] [--dagster]
        [--sessions-per-run 1000]

Stages, each timed once (median of --repeat for the in-memory ones) on this machine:

- parse: read the interval file (the baseline: the least any approach must do);
- snapshots: the provider's per-session snapshots of every session 1996-01-02..2025-10-31
  (~7,500 sessions x ~500 members);
- store: write them to the lake's year files (reference/index_constituents/{YYYY}.parquet)
  and read them all back;
- intervals: snapshots -> membership intervals; ticker_history: securities and renames;
- with --dagster: the same through `ingest` (ranged runs of --sessions-per-run sessions,
  per-session check evaluations, then one run of the derived tables) on a temporary
  instance, split into our code and Dagster's bookkeeping.

Ratios are against the parse baseline measured in the same run. The last line is
machine-readable:

    RESULT sessions=<n> rows=<n> core_s=<snapshots+store+intervals+history> dagster_s=<..>
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from market_assets.core.providers.sp500 import Sp500Provider, parse_intervals
from market_assets.core.reference.intervals import membership_intervals
from market_assets.core.reference.schemas import REFERENCE_SCHEMA, empty
from market_assets.core.reference.securities import build_ticker_history
from market_assets.core.reference.sources import ConstituentsRequest
from market_assets.core.reference.store import ReferenceStore
from market_assets.core.stores.objectstore import LocalStore

ROOT = Path(__file__).resolve().parents[1]
FIRST, END = dt.date(1996, 1, 2), dt.date(2025, 11, 1)


def timed(function: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def dagster_ingest(files: Path, sessions_per_run: int) -> tuple[float, float, float, int]:
    """(wall s, our code s, bookkeeping s, runs) of `ingest` over FIRST..END in a temp dir."""
    from typer.testing import CliRunner

    from market_assets.cli import app

    work = Path(tempfile.mkdtemp(prefix="bench_constituents_"))
    configs = work / "configs"
    shutil.copytree(ROOT / "configs", configs)
    datasets = (configs / "datasets.yaml").read_text()
    (configs / "datasets.yaml").write_text(
        datasets.replace(
            "    providers: [sp500]\n    backfill_sessions_per_run: 1000",
            f"    providers: [sp500]\n    backfill_sessions_per_run: {sessions_per_run}",
        )
    )
    os.environ["MARKET_ASSETS_CONFIG_DIR"] = str(configs)
    started = time.perf_counter()
    result = CliRunner().invoke(
        app,
        [
            "ingest", "--dataset", "index_constituents", "--files", str(files),
            "--start", FIRST.isoformat(), "--end", END.isoformat(),
            "--data-dir", str(work / "data"), "--dagster-home", str(work / "home"),
        ],
        env={"COLUMNS": "200"},
    )
    wall = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"ingest failed: {result.output}")
    ours = float(result.output.split("our code ")[1].split(" s")[0])
    bookkeeping = float(result.output.split("Dagster bookkeeping ")[1].split(" s")[0])
    runs = -(-len(ConstituentsRequest(FIRST, END).sessions()) // sessions_per_run) + 1
    shutil.rmtree(work, ignore_errors=True)
    return wall, ours, bookkeeping, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=Path, default=ROOT.parent / "shared/realdata/sp500")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dagster", action="store_true")
    parser.add_argument("--sessions-per-run", type=int, default=1000)
    args = parser.parse_args()

    provider = Sp500Provider(files_dir=args.files)
    interval_file = next(args.files.glob("*ticker_start_end*.csv"))
    request = ConstituentsRequest(FIRST, END)
    parse_s, _ = timed(lambda: parse_intervals(interval_file.read_text(), "f"), args.repeat)
    snap_s, fetched = timed(lambda: provider.fetch_constituents(request), args.repeat)
    frame = fetched.frame
    with tempfile.TemporaryDirectory() as folder:
        store = ReferenceStore(LocalStore(folder))
        sessions = request.sessions()
        write_s, _ = timed(lambda: store.write_sessions("index_constituents", frame, sessions))
        read_s, stored = timed(
            lambda: store.read_sessions("index_constituents", FIRST, END), args.repeat
        )
    intervals_s, intervals = timed(lambda: membership_intervals(stored), args.repeat)
    history_s, (history, stats) = timed(
        lambda: build_ticker_history(empty(REFERENCE_SCHEMA), stored), args.repeat
    )
    rows = [
        ("parse interval file (baseline)", parse_s),
        (f"snapshots, {len(sessions)} sessions, {frame.height:,} rows", snap_s),
        ("write year files", write_s),
        ("read all year files", read_s),
        (f"membership intervals ({intervals.height})", intervals_s),
        (f"ticker_history ({history.height} rows, {stats.renames} renames)", history_s),
    ]
    core = snap_s + write_s + read_s + intervals_s + history_s
    rows.append(("core total", core))
    dagster_s = 0.0
    if args.dagster:
        wall, ours, bookkeeping, runs = dagster_ingest(args.files, args.sessions_per_run)
        dagster_s = wall
        rows += [
            (f"ingest through Dagster, {runs} runs of {args.sessions_per_run} (wall)", wall),
            ("  of which our code", ours),
            ("  of which Dagster bookkeeping", bookkeeping),
        ]
    width = max(len(name) for name, _ in rows)
    print(f"{'stage':<{width}}  {'seconds':>9}  {'x parse':>9}")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:9.3f}  {seconds / parse_s:9.1f}")
    print(
        f"RESULT sessions={len(sessions)} rows={frame.height} core_s={core:.2f} "
        f"dagster_s={dagster_s:.1f}"
    )


if __name__ == "__main__":
    main()
