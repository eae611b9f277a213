"""IO manager for tick datasets (trades, tbbo, statistics): validate, quarantine, store.

Output: the frame is split by the tick hard rules (market_assets.core.validate_ticks); good
rows replace exactly the run's (symbol, session) partitions in the Parquet lake (always) and
in PostgreSQL/TimescaleDB (when the dataset lists `timescale` and a DSN is set); bad rows go
to the dataset's quarantine. Input: partitions are read back from the lake.
"""

from __future__ import annotations

import time

import polars as pl
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext
from pydantic import PrivateAttr

from market_assets.core.validate_ticks import split_valid_ticks
from market_assets.defs.partitions import PartitionRectangle, resolve_partition_keys
from market_assets.defs.resources import PlatformResource

TICKS_IO_MANAGER_KEY = "ticks_io_manager"


class TicksIOManager(ConfigurableIOManager):
    """Stores polars frames of canonical ticks, partitioned by (session, symbol key)."""

    platform: PlatformResource

    _load_seconds: dict[str, float] = PrivateAttr(default_factory=dict)

    def _rectangle(self, context: OutputContext | InputContext) -> PartitionRectangle:
        if not context.has_asset_partitions:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: TicksIOManager only stores "
                "partitioned assets (session x symbol)"
            )
        symbol_partitions = self.platform.app_config().symbol_partitions
        return resolve_partition_keys(context.asset_partition_keys, symbol_partitions)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        started = time.perf_counter()
        dataset = context.asset_key.path[-1]
        rectangle = self._rectangle(context)
        checked = split_valid_ticks(obj, dataset=dataset, partitions=rectangle.pairs)
        lake = self.platform.lake()
        lake.write_partitions(dataset, checked.valid, rectangle.pairs)
        lake.write_quarantine(dataset, checked.quarantined, rectangle.pairs)
        stores = ["lake"]
        timescale = self.platform.timescale()
        dataset_config = self.platform.app_config().datasets.get(dataset)
        if timescale is not None and dataset_config and "timescale" in dataset_config.stores:
            timescale.write_partitions(dataset, checked.valid, rectangle.pairs)
            timescale.write_quarantine(dataset, checked.quarantined, rectangle.pairs)
            stores.append("timescale" if timescale.uses_timescale else "postgresql")
        first_symbol, first_session = rectangle.pairs[0]
        context.add_output_metadata(
            {
                "rows_stored": len(checked.valid),
                "quarantined_rows": len(checked.quarantined),
                "quarantine_rules": MetadataValue.json(checked.rule_counts),
                "stores": ", ".join(stores),
                "write_seconds": round(time.perf_counter() - started, 4),
                "load_seconds": round(self._load_seconds.pop(context.op_def.name, 0.0), 4),
                "lake_path_example": MetadataValue.path(
                    lake.uri_for(dataset, first_symbol, first_session)
                ),
            }
        )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        upstream = context.upstream_output
        dataset = (upstream.asset_key if upstream else context.asset_key).path[-1]
        started = time.perf_counter()
        rectangle = self._rectangle(context)
        frame = self.platform.lake().read_partitions(dataset, list(rectangle.pairs))
        self._load_seconds[context.op_def.name] = time.perf_counter() - started
        return frame
