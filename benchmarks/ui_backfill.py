"""UI backfill benchmark (issue 8): backfills launched through the webserver's GraphQL API.

Starts a real `dagster-webserver` (and then `dagster-daemon`) on loopback, on a scratch
DAGSTER_HOME written the way `market-assets ui` writes it (the checkout's own instance
config) and a config whose `bench` universe registers N symbols as N symbol keys (default 500, from
../shared/realdata/sp500). Then, launching as the UI does (`launchPartitionBackfill` with the
selected partition names):

(b) a one-symbol full-history backfill of bars_1d (about 4,500 sessions) on the fresh
    webserver: the launch's wall time and the webserver's peak RSS during it (psutil, sampled
    every 20 ms); the backfill is then canceled before any run starts;
(a) with the daemon running, a sessions x symbols backfill of bars_1d (default 5 sessions x 3
    contiguous symbol keys), run to the end: its runs and the partitions each covers, the
    partitions materialized and checked, and the peak RSS of the webserver and the daemon
    meanwhile.

    python benchmarks/ui_backfill.py                          # this checkout
    python benchmarks/ui_backfill.py --baseline /work/main    # and the same on another one

It prints a table (one row per checkout, ratios against the baseline when given) and, last,
`RESULT ui_backfill_runs=<n> launch_one_symbol_s=<s> webserver_rss_mb=<mb>` for this
checkout (benchmarks/scale.py reads that line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
SP500 = REPO.parent / "shared" / "realdata" / "sp500" / "sp500_constituents_datasets.csv"
ASSET = "bars_1d"
BACKFILL_TAG = "dagster/backfill"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
  }
}
"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
DIMENSIONS = """
query Dimensions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode {
    partitionKeysByDimension { name partitionKeys } } }
}
"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
    status
    assetBackfillData { assetBackfillStatuses {
      ... on AssetPartitionsStatusCounts {
        assetKey { path } numPartitionsTargeted numPartitionsMaterialized
        numPartitionsFailed numPartitionsInProgress } } } } }
}
"""
CANCEL = """
mutation Cancel($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }
"""
RUNS = """
query Runs($id: String!) {
  runsOrError(filter: { tags: [{ key: "dagster/backfill", value: $id }] }) {
    ... on Runs { results { runId status tags { key value } } } }
}
"""
CHECKS = """
query Checks($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1000) {
    status evaluation { partition } }
}
"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def universe_symbols(count: int) -> list[str]:
    lines = SP500.read_text().splitlines()[1:]
    symbols = sorted({line.split(",")[0].strip() for line in lines if line.strip()})
    if len(symbols) < count:
        raise SystemExit(f"{SP500} holds {len(symbols)} tickers, fewer than --symbols {count}")
    return symbols[:count]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(folder: Path, checkout: Path, symbols: list[str]) -> dict[str, str]:
    """Configs with the `bench` universe, a DAGSTER_HOME as `market-assets ui` writes it, and
    the process environment for the checkout."""
    configs = folder / "configs"
    shutil.copytree(checkout / "configs", configs)
    universes = yaml.safe_load((configs / "universes.yaml").read_text())
    universes["universes"] = {"bench": {"description": "UI benchmark", "symbols": symbols}}
    (configs / "universes.yaml").write_text(yaml.safe_dump(universes))
    home = folder / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "DAGSTER_HOME": str(home),
        "MARKET_ASSETS_CONFIG_DIR": str(configs),
        "MARKET_ASSETS_DATA_DIR": str(folder / "data"),
    }
    env.pop("MARKET_ASSETS_TIMESCALE_DSN", None)
    # The instance config the checkout's own `market-assets ui` writes, then its symbol keys
    # registered (what the universe sensor or the CLI does).
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from market_assets.cli import DAGSTER_HOME_YAML\n"
        "Path(sys.argv[1], 'dagster.yaml').write_text(DAGSTER_HOME_YAML)\n"
        "from dagster import DagsterInstance\n"
        "from market_assets.core.config import AppConfig\n"
        "from market_assets.defs.runner import register_symbol_keys\n"
        "keys = AppConfig.load().symbol_partitions.keys\n"
        "with DagsterInstance.get() as instance:\n"
        "    register_symbol_keys(instance, keys)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(home)], env=env, cwd=folder, check=True)
    return env


@contextmanager
def process(command: list[str], env: dict[str, str], cwd: Path, log: Path):
    """A child process in its own process group, ended (with its children) on exit."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


class GraphQL:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables: object) -> dict:
        response = requests.post(
            self.url, json={"query": query, "variables": variables}, timeout=600
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_loaded(self, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"webserver exited: {log.read_text()[-3000:]}")
            try:
                entries = self(LOCATIONS)["workspaceOrError"]["locationEntries"]
            except (requests.RequestException, RuntimeError):
                time.sleep(0.5)
                continue
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [
                    e["locationOrLoadError"].get("message")
                    for e in entries
                    if e["locationOrLoadError"]["__typename"] == "PythonError"
                ]
                if errors:
                    raise RuntimeError(f"code location failed to load: {errors[0][:3000]}")
                return
            time.sleep(0.5)
        raise RuntimeError(f"webserver not ready after {timeout} s: {log.read_text()[-3000:]}")

    def launch(self, partition_names: list[str], title: str) -> str:
        params = {
            "assetSelection": [{"path": [ASSET]}],
            "partitionNames": partition_names,
            "fromFailure": False,
            "tags": [],
            "title": title,
        }
        result = self(LAUNCH, params=params)["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launch failed: {json.dumps(result)[:3000]}")
        return result["backfillId"]


class PeakRss:
    """The peak RSS of one process (not its children), sampled in a thread every 20 ms."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_backfill(gql: GraphQL, backfill_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill = gql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        if backfill["status"] in DONE:
            return backfill
        time.sleep(1)
    raise RuntimeError(f"backfill {backfill_id} not finished after {timeout} s: {backfill}")


def measure(checkout: Path, symbols: list[str], sessions: int, keys: int, timeout: float) -> dict:
    """Both launches against a fresh webserver (+ daemon for (a)) running `checkout`'s code."""
    with tempfile.TemporaryDirectory(prefix="ui-backfill-") as tmp:
        folder = Path(tmp)
        env = prepare(folder, checkout, symbols)
        datasets = yaml.safe_load((folder / "configs" / "datasets.yaml").read_text())
        per_run = datasets["datasets"][ASSET].get("backfill_sessions_per_run", 250)
        port = free_port()
        module = ["-m", "market_assets.definitions"]
        webserver_log, daemon_log = folder / "webserver.log", folder / "daemon.log"
        webserver_cmd = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1"]
        with process(
            [*webserver_cmd, "-p", str(port), *module], env, folder, webserver_log
        ) as webserver:
            gql = GraphQL(port)
            gql.wait_loaded(webserver, webserver_log)
            # What the UI's launch dialog loads first: each dimension's keys.
            dims = gql(DIMENSIONS, key={"path": [ASSET]})["assetNodeOrError"]
            by_dim = {d["name"]: d["partitionKeys"] for d in dims["partitionKeysByDimension"]}
            dates, symbol_keys = by_dim["date"], by_dim["symbol"]
            # (b) one symbol's full history, as partition names (what the UI sends), on a
            # webserver that has done nothing else; then canceled before the daemon starts.
            one_symbol = [f"{d}|{symbol_keys[-1]}" for d in dates]
            idle = psutil.Process(webserver.pid).memory_info().rss
            with PeakRss(webserver.pid) as launch_rss:
                started = time.perf_counter()
                one_symbol_id = gql.launch(one_symbol, "one symbol, full history")
                launch_s = time.perf_counter() - started
            gql(CANCEL, id=one_symbol_id)
            # (a) sessions x contiguous symbol keys, well before today (settled sessions),
            # run to the end by the daemon.
            chosen_dates = dates[-30 - sessions : -30]
            names = [f"{d}|{s}" for d in chosen_dates for s in symbol_keys[:keys]]
            daemon_cmd = [sys.executable, "-m", "dagster._daemon", "run", *module]
            with (
                PeakRss(webserver.pid) as serving_rss,
                process(daemon_cmd, env, folder, daemon_log) as daemon,
                PeakRss(daemon.pid) as daemon_rss,
            ):
                backfill_id = gql.launch(names, f"{sessions} sessions x {keys} symbols")
                backfill = wait_backfill(gql, backfill_id, timeout)
            runs = gql(RUNS, id=backfill_id)["runsOrError"]["results"]
            status = backfill["assetBackfillData"]["assetBackfillStatuses"][0]
            checks = gql(CHECKS, key={"path": [ASSET]}, name="quality")
    checked = {
        e["evaluation"]["partition"]
        for e in checks["assetCheckExecutions"]
        if e["evaluation"] and e["status"] in ("SUCCEEDED", "FAILED")
    }
    ranges = []
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        deferred = tags.get("dagster/defer_asset_events", "-")
        ranges.append((tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG), run["status"], deferred))
    return {
        "runs": len(runs),
        "ranges": sorted(ranges, key=lambda r: (r[0] or "", r[1] or "")),
        "targeted": status["numPartitionsTargeted"],
        "materialized": status["numPartitionsMaterialized"],
        "failed": status["numPartitionsFailed"],
        "checked": len(checked & set(names)),
        "backfill_status": backfill["status"],
        "one_symbol_partitions": len(one_symbol),
        "launch_s": launch_s,
        "idle_mb": idle / 2**20,
        "launch_peak_mb": launch_rss.peak / 2**20,
        "serving_peak_mb": serving_rss.peak / 2**20,
        "peak_mb": max(launch_rss.peak, serving_rss.peak) / 2**20,
        "daemon_mb": daemon_rss.peak / 2**20,
        "registered_keys": len(symbol_keys),
        "per_run": per_run,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500, help="symbol keys registered")
    parser.add_argument("--sessions", type=int, default=5, help="sessions of backfill (a)")
    parser.add_argument("--keys", type=int, default=3, help="symbol keys of backfill (a)")
    parser.add_argument("--baseline", type=Path, help="an older checkout to measure the same")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for backfill (a)")
    args = parser.parse_args()

    symbols = universe_symbols(args.symbols)
    checkouts = [("this", REPO)] + (
        [("baseline", args.baseline.resolve())] if args.baseline else []
    )
    results = {
        label: measure(checkout, symbols, args.sessions, args.keys, args.timeout)
        for label, checkout in checkouts
    }
    first = results["this"]
    print(
        f"{first['registered_keys']} symbol keys registered. (a) {args.sessions} sessions x "
        f"{args.keys} contiguous symbol keys of {ASSET}, run by the daemon "
        f"(backfill_sessions_per_run {first['per_run']}); (b) launching one symbol's "
        f"{first['one_symbol_partitions']} partitions on a fresh webserver"
    )
    columns = [
        ("runs (a)", lambda r: f"{r['runs']}"),
        ("mat/targ (a)", lambda r: f"{r['materialized']}/{r['targeted']}"),
        ("checked (a)", lambda r: f"{r['checked']}"),
        ("launch (b) s", lambda r: f"{r['launch_s']:.2f}"),
        ("idle MB", lambda r: f"{r['idle_mb']:.0f}"),
        ("launch MB", lambda r: f"{r['launch_peak_mb']:.0f}"),
        ("serving (a) MB", lambda r: f"{r['serving_peak_mb']:.0f}"),
        ("daemon (a) MB", lambda r: f"{r['daemon_mb']:.0f}"),
    ]
    print(f"{'checkout':<10}" + "".join(f"{name:>16}" for name, _ in columns))
    for label, r in results.items():
        print(f"{label:<10}" + "".join(f"{cell(r):>16}" for _, cell in columns))
        for start, end, status, deferred in r["ranges"]:
            print(f"{'':<12}run {start} .. {end} {status} (deferred events tag: {deferred})")
        if r["failed"] or r["backfill_status"] != "COMPLETED_SUCCESS":
            print(f"{'':<12}backfill {r['backfill_status']}, {r['failed']} partition(s) failed")
    if args.baseline:
        base = results["baseline"]
        print(
            f"ratio this/baseline: runs (a) {first['runs'] / max(base['runs'], 1):.2f}, "
            f"launch (b) {first['launch_s'] / base['launch_s']:.3f}, "
            f"webserver peak {first['peak_mb'] / base['peak_mb']:.3f}"
        )
    per_block = math.ceil(args.sessions / first["per_run"])
    print(
        f"targets: (a) at most {per_block} run(s) per contiguous block of symbol keys; "
        "(b) launch under 5 s, webserver under 1024 MB (peak of launch and serving)"
    )
    print(
        f"RESULT ui_backfill_runs={first['runs']} launch_one_symbol_s={first['launch_s']:.2f} "
        f"webserver_rss_mb={first['peak_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
