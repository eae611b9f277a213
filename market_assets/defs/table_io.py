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

import time

import polars as pl
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext
from pydantic import PrivateAttr

from market_assets.core.actions import carry_known_at, changed_symbols
from market_assets.defs.io_managers import io_rectangle
from market_assets.defs.partitions import PartitionRectangle
from market_assets.defs.resources import PlatformResource

TABLE_IO_MANAGER_KEY = "table_io_manager"
ACTIONS_IO_MANAGER_KEY = "actions_io_manager"


class TableIOManager(ConfigurableIOManager):
    """Stores polars frames of a table dataset, partitioned by (session, symbol key)."""

    platform: PlatformResource

    _load_seconds: dict[str, float] = PrivateAttr(default_factory=dict)

    def _rectangle(self, context: OutputContext | InputContext) -> PartitionRectangle:
        return io_rectangle(context, self.platform, type(self).__name__)

    def prepare(
        self, dataset: str, frame: pl.DataFrame, rectangle: PartitionRectangle
    ) -> tuple[pl.DataFrame, dict[str, object]]:
        """The rows to write and extra metadata; stored as given here."""
        return frame, {}

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        started = time.perf_counter()
        dataset = context.asset_key.path[-1]
        rectangle = self._rectangle(context)
        rows, metadata = self.prepare(dataset, obj, rectangle)
        lake = self.platform.lake()
        lake.write_partitions(dataset, rows, rectangle.pairs)
        stores = ["lake"]
        timescale = self.platform.timescale()
        dataset_config = self.platform.app_config().datasets.get(dataset)
        if timescale is not None and dataset_config and "timescale" in dataset_config.stores:
            timescale.write_partitions(dataset, rows, rectangle.pairs)
            stores.append("timescale" if timescale.uses_timescale else "postgresql")
        first_symbol, first_session = rectangle.pairs[0]
        context.add_output_metadata(
            {
                **metadata,
                "rows_stored": len(rows),
                "stores": ", ".join(stores),
                "write_seconds": round(time.perf_counter() - started, 4),
                "load_seconds": round(self._load_seconds.pop(context.op_def.name, 0.0), 4),
                "lake_path_example": MetadataValue.path(
                    lake.uri_for(dataset, first_symbol, first_session)
                ),
            }
        )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        dataset = (
            context.upstream_output.asset_key.path[-1]
            if context.upstream_output
            else context.asset_key.path[-1]
        )
        started = time.perf_counter()
        rectangle = self._rectangle(context)
        frame = self.platform.lake().read_partitions(dataset, list(rectangle.pairs))
        self._load_seconds[context.op_def.name] = (
            self._load_seconds.get(context.op_def.name, 0.0) + time.perf_counter() - started
        )
        return frame


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
