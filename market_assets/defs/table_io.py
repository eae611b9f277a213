"""IO managers for session x symbol tables that are not raw bars.

`TableIOManager` stores bars_1d_adjusted and indicators: the frame replaces exactly the run's
(symbol, session) partitions in the lake (and in PostgreSQL when the dataset lists
`timescale`). `ActionsIOManager` stores corporate_actions the same way, and before writing
keeps the earlier `known_at` of rows that did not change and records which symbols' actions
changed (`changed_symbols` metadata: symbol -> latest changed ex-date), which the re-adjust
sensor reads. Inputs are read from the lake for exactly the mapped upstream partitions (one
session, a lookback window, or every session of a symbol).
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from market_assets.core.actions import carry_known_at, changed_symbols
from market_assets.defs.io_managers import (
    RectangleOutput,
    io_rectangle,
    record_partitions,
    unpack_output,
    write_stores,
)
from market_assets.defs.partitions import PartitionRectangle
from market_assets.defs.resources import PlatformResource

TABLE_IO_MANAGER_KEY = "table_io_manager"
ACTIONS_IO_MANAGER_KEY = "actions_io_manager"


class TableIOManager(ConfigurableIOManager):
    """Stores polars frames of a table dataset, partitioned by (session, symbol key)."""

    platform: PlatformResource

    def _rectangle(self, context: OutputContext | InputContext) -> PartitionRectangle:
        return io_rectangle(context, self.platform, type(self).__name__)

    def prepare(
        self, dataset: str, frame: pl.DataFrame, rectangle: PartitionRectangle
    ) -> tuple[pl.DataFrame, dict[str, object]]:
        """The rows to write and extra metadata; stored as given here."""
        return frame, {}

    def partition_metadata(
        self, rectangle: PartitionRectangle, metadata: dict[str, object]
    ) -> dict[str, dict[str, object]]:
        """Extra metadata of single partitions (by key), from `prepare`'s metadata."""
        return {}

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | RectangleOutput) -> None:
        started = time.perf_counter()
        dataset = context.asset_key.path[-1]
        rectangle = self._rectangle(context)
        frame, failed = unpack_output(obj)
        pairs = [pair for pair in rectangle.pairs if pair[0] not in failed]
        rows, metadata = self.prepare(
            dataset, frame.filter(~pl.col("symbol").is_in(list(failed))), rectangle
        )
        stores = (
            write_stores(
                self.platform, dataset, rows, pairs, context=context, rectangle=rectangle
            )
            if pairs
            else []
        )
        first_symbol, first_session = rectangle.pairs[0]
        context.add_output_metadata(
            {
                **metadata,
                "partitions": len(rectangle.by_key) - len(rectangle.keys_of_symbols(failed)),
                "rows_stored": len(rows),
                "stores": ", ".join(stores) or "none",
                "write_seconds": round(time.perf_counter() - started, 4),
                "lake_path_example": MetadataValue.path(
                    self.platform.lake().uri_for(dataset, first_symbol, first_session)
                ),
            }
        )
        record_partitions(
            context, rectangle, rows, None, failed, self.partition_metadata(rectangle, metadata)
        )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        dataset = (
            context.upstream_output.asset_key.path[-1]
            if context.upstream_output
            else context.asset_key.path[-1]
        )
        rectangle = self._rectangle(context)
        return self.platform.lake().read_partitions(dataset, list(rectangle.pairs))


class ActionsIOManager(TableIOManager):
    """Corporate actions: keeps first-known times and reports which symbols changed."""

    def prepare(
        self, dataset: str, frame: pl.DataFrame, rectangle: PartitionRectangle
    ) -> tuple[pl.DataFrame, dict[str, object]]:
        existing = self.platform.lake().read_partitions(dataset, list(rectangle.pairs))
        rows = carry_known_at(frame, existing)
        changes = changed_symbols(rows, existing)
        return rows, {
            "changed_symbols": MetadataValue.json(
                {symbol: day.isoformat() for symbol, day in changes.items()}
            )
        }

    def partition_metadata(
        self, rectangle: PartitionRectangle, metadata: dict[str, object]
    ) -> dict[str, dict[str, object]]:
        """`changed_symbols` on the partition of each changed symbol's latest changed ex-date
        (the re-adjust sensor reads it from per-partition materializations)."""
        changes: dict[str, str] = metadata["changed_symbols"].value  # type: ignore[union-attr]
        by_pair = {pair: key for key, pairs in rectangle.by_key for pair in pairs}
        extra: dict[str, dict[str, str]] = {}
        for symbol, day in changes.items():
            key = by_pair.get((symbol, dt.date.fromisoformat(day)))
            if key is not None:
                extra.setdefault(key, {})[symbol] = day
        return {key: {"changed_symbols": MetadataValue.json(c)} for key, c in extra.items()}
