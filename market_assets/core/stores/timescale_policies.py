"""TimescaleDB policies and continuous aggregates, as configured per dataset.

`apply_policies` makes the database match configs/datasets.yaml (`timescale:` per dataset):
a compression policy per `compress_after`, a retention policy per `drop_after` (none unless
configured), and the continuous aggregates listed in `continuous_aggregates` (created from
sql/timescale/aggregates/<view>.sql; an aggregate no longer configured is dropped, its rows
being derived). It runs inside the schema transaction; created aggregates still need a first
refresh, which `refresh_aggregate` does outside any transaction.

Aggregates are refreshed by the write path over the window each write touched, not left to
background jobs: on PostgreSQL 15.20 every TimescaleDB background job run is recorded as
failed although its work commits (see docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from market_assets.core.config import TimescalePolicy
from market_assets.core.errors import StoreError
from market_assets.core.stores.timescale_rewrite import lock_namespace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContinuousAggregate:
    """A continuous aggregate serving `granularity` bars from the hypertable `source`."""

    view: str
    source: str
    granularity: str
    bucket: dt.timedelta


HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
AGGREGATES: dict[tuple[str, str], ContinuousAggregate] = {
    ("bars_1m", "1h"): ContinuousAggregate("bars_1h_from_1m", "bars_1m", "1h", HOUR),
    ("bars_1m", "1d"): ContinuousAggregate("bars_1d_from_1m", "bars_1m", "1d", DAY),
}
AGGREGATE_VIEWS = {a.view: a for a in AGGREGATES.values()}
REFRESH_ATTEMPTS = 5


@dataclass(frozen=True)
class _Job:
    proc: str
    key: str
    add: str
    remove: str


COMPRESSION = _Job(
    "policy_compression", "compress_after", "add_compression_policy", "remove_compression_policy"
)
RETENTION = _Job(
    "policy_retention", "drop_after", "add_retention_policy", "remove_retention_policy"
)


def apply_policies(
    cur: psycopg.Cursor,
    policies: Mapping[str, TimescalePolicy],
    hypertables: Mapping[str, bool],
    aggregates_dir: Path,
) -> list[ContinuousAggregate]:
    """Reconcile jobs and aggregates with `policies`; return the aggregates created now.

    `hypertables` maps each hypertable to whether its time column is an integer (epoch ns).
    Raises StoreError naming the dataset when a policy targets a table that is not a
    hypertable, or an aggregate whose definition file is missing.
    """
    created: list[ContinuousAggregate] = []
    for dataset, policy in sorted(policies.items()):
        if dataset not in hypertables:
            if policy.compress_after or policy.drop_after or policy.continuous_aggregates:
                raise StoreError(
                    f"{dataset}: timescale policies apply to hypertables only "
                    f"({sorted(hypertables)}); remove `timescale:` from {dataset} in "
                    "configs/datasets.yaml"
                )
            continue
        integer_time = hypertables[dataset]
        for job, value in ((COMPRESSION, policy.compress_after), (RETENTION, policy.drop_after)):
            _reconcile_job(cur, dataset, job, value, integer_time)
        created += _reconcile_aggregates(cur, dataset, policy.continuous_aggregates, aggregates_dir)
    return created


def aggregates_of(cur: psycopg.Cursor, table: str) -> list[ContinuousAggregate]:
    """The known continuous aggregates that exist over `table` in this schema."""
    cur.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = %s "
        "AND view_schema = current_schema() ORDER BY view_name",
        (table,),
    )
    return [AGGREGATE_VIEWS[name] for (name,) in cur.fetchall() if name in AGGREGATE_VIEWS]


def refresh_aggregate(
    conn: psycopg.Connection,
    aggregate: ContinuousAggregate,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
) -> None:
    """`refresh_continuous_aggregate` over [lo, hi) widened by one bucket on each side (None:
    unbounded), in its own transaction as TimescaleDB requires.

    Only the invalidated parts of the window are recomputed, so the widening costs nothing
    but makes sure buckets that straddle the window's edges are refreshed too.
    """
    window = (
        None if lo is None else lo - aggregate.bucket,
        None if hi is None else hi + aggregate.bucket,
    )
    statement = sql.SQL("CALL refresh_continuous_aggregate({view}, {lo}, {hi})").format(
        view=sql.Literal(aggregate.view),
        lo=sql.SQL("NULL") if window[0] is None else sql.Literal(window[0]),
        hi=sql.SQL("NULL") if window[1] is None else sql.Literal(window[1]),
    )
    previous = conn.autocommit
    conn.autocommit = True
    lock = (lock_namespace(aggregate.view), 0)
    try:
        # TimescaleDB refuses a refresh that overlaps one in progress: writers take turns
        # (session-level lock), and a refresh started elsewhere is waited out.
        conn.execute("SELECT pg_advisory_lock(%s, %s)", lock)
        try:
            for attempt in Retrying(
                retry=retry_if_exception(_concurrent_refresh),
                stop=stop_after_attempt(REFRESH_ATTEMPTS),
                wait=wait_exponential(multiplier=0.1, max=5),
                reraise=True,
            ):
                with attempt:
                    conn.execute(statement)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
    except psycopg.Error as exc:
        raise StoreError(
            f"refreshing continuous aggregate {aggregate.view} over [{window[0]}, {window[1]}) "
            f"failed: {exc}; the rows of {aggregate.source} are written, rewrite the "
            "partitions (or CALL refresh_continuous_aggregate) to bring the aggregate up to date"
        ) from exc
    finally:
        conn.autocommit = previous


def _concurrent_refresh(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and "due to a concurrent refresh" in str(exc)


def _reconcile_job(
    cur: psycopg.Cursor,
    table: str,
    job: _Job,
    interval: str | None,
    integer_time: bool,
) -> None:
    wanted = TimescalePolicy.as_timedelta(interval)
    cur.execute(
        "SELECT config ->> %s FROM timescaledb_information.jobs WHERE proc_name = %s "
        "AND hypertable_schema = current_schema() AND hypertable_name = %s",
        (job.key, job.proc, table),
    )
    existing = [value for (value,) in cur.fetchall()]
    value: int | dt.timedelta | None = wanted
    if wanted is not None and integer_time:
        value = wanted // dt.timedelta(microseconds=1) * 1000
    if existing and value is not None and all(_same(cur, e, value) for e in existing):
        return
    if existing:
        cur.execute(
            sql.SQL("SELECT {}({}, if_exists => TRUE)").format(
                sql.Identifier(job.remove), sql.Literal(table)
            )
        )
        log.info("%s: removed %s (%s => %s)", table, job.proc, job.key, ", ".join(existing))
    if value is not None:
        cur.execute(
            sql.SQL("SELECT {}({}, {} => {})").format(
                sql.Identifier(job.add),
                sql.Literal(table),
                sql.Identifier(job.key),
                sql.Literal(value),
            )
        )
        log.info("%s: %s set to %s", table, job.key, interval)


def _same(cur: psycopg.Cursor, existing: str | None, value: int | dt.timedelta) -> bool:
    if existing is None:
        return False
    if isinstance(value, int):
        return existing.strip().lstrip("-").isdigit() and int(existing) == value
    cur.execute("SELECT %s::interval = %s::interval", (existing, value))
    row = cur.fetchone()
    return bool(row and row[0])


def _reconcile_aggregates(
    cur: psycopg.Cursor, table: str, granularities: list[str], aggregates_dir: Path
) -> list[ContinuousAggregate]:
    wanted = []
    for granularity in granularities:
        aggregate = AGGREGATES.get((table, granularity))
        if aggregate is None:
            raise StoreError(
                f"{table}: no continuous aggregate serves {granularity} bars from it; known: "
                f"{sorted(f'{s}->{g}' for s, g in AGGREGATES)}"
            )
        wanted.append(aggregate)
    existing = {a.view for a in aggregates_of(cur, table)}
    for aggregate in AGGREGATES.values():
        if aggregate.source == table and aggregate.view in existing and aggregate not in wanted:
            cur.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(aggregate.view)))
            log.info("%s: dropped continuous aggregate %s (not configured)", table, aggregate.view)
    created = []
    for aggregate in wanted:
        if aggregate.view in existing:
            continue
        path = aggregates_dir / f"{aggregate.view}.sql"
        if not path.is_file():
            raise StoreError(f"{table}: continuous aggregate definition {path} not found")
        cur.execute(path.read_text(encoding="utf-8"))
        log.info("%s: created continuous aggregate %s", table, aggregate.view)
        created.append(aggregate)
    return created
