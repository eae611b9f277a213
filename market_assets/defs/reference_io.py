"""IO manager of the reference family: session snapshots and the derived interval tables.

A partitioned output (`reference`, `index_constituents`: one partition per session) replaces
exactly the run's sessions in the lake's year files (market_assets.core.reference.store) and
records each session as materialized with its own row count (one batch in runs with deferred
asset events, defs/events.py); an unpartitioned output (`ticker_history`, `index_membership`)
replaces its table whole. Inputs read the same way back. Reference tables are small and live
in the lake only.
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from market_assets.core.reference.store import ReferenceStore
from market_assets.defs.io_managers import record_materialized
from market_assets.defs.resources import PlatformResource

REFERENCE_IO_MANAGER_KEY = "reference_io_manager"


def session_keys(keys: list[str]) -> list[dt.date]:
    """Session partition keys ("2014-03-03") as dates, sorted."""
    return sorted(dt.date.fromisoformat(str(key)) for key in keys)


class ReferenceIOManager(ConfigurableIOManager):
    """Stores polars frames of the reference tables in the Parquet lake."""

    platform: PlatformResource

    def _store(self) -> ReferenceStore:
        return ReferenceStore(self.platform.lake().store)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        started = time.perf_counter()
        dataset = context.asset_key.path[-1]
        store = self._store()
        if not context.has_asset_partitions:
            uri = store.write_derived(dataset, obj)
            context.add_output_metadata(
                {
                    "partitions": 1,
                    "rows_stored": len(obj),
                    "lake_path": MetadataValue.path(uri),
                    "write_seconds": round(time.perf_counter() - started, 4),
                }
            )
            return
        keys = sorted(str(key) for key in context.asset_partition_keys)
        sessions = session_keys(keys)
        written = store.write_sessions(dataset, obj, sessions)
        context.add_output_metadata(
            {
                "partitions": len(keys),
                "rows_stored": written.rows,
                "files_written": written.files,
                "lake_path_example": MetadataValue.path(written.paths[0]) if written.paths else "-",
                "write_seconds": round(time.perf_counter() - started, 4),
            }
        )
        counts = dict(obj.group_by("session").len().iter_rows()) if obj.height else {}
        record_materialized(
            context,
            {key: {"rows": counts.get(day, 0)} for key, day in zip(keys, sessions, strict=True)},
        )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        dataset = (
            context.upstream_output.asset_key.path[-1]
            if context.upstream_output
            else context.asset_key.path[-1]
        )
        store = self._store()
        if context.has_asset_partitions:
            sessions = session_keys(list(context.asset_partition_keys))
            return store.read_sessions(dataset, sessions[0], sessions[-1]).filter(
                pl.col("session").is_in(sessions)
            )
        return store.read_derived(dataset)
