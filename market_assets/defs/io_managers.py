"""One IO manager for every bar dataset: validate, quarantine, write every configured store.

Output: the frame is split by the hard schema rules (market_assets.core.validate); good rows
replace exactly the run's partitions in the Parquet lake (always) and TimescaleDB (when the
dataset lists it and a DSN is set); bad rows go to quarantine. Input: the upstream partitions
(a single one or a whole range) are read from the primary store, the lake.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

import polars as pl
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext
from pydantic import PrivateAttr

from market_assets.core.validate import ValidationResult, split_valid_bars
from market_assets.defs.partitions import PartitionRectangle, resolve_partition_keys
from market_assets.defs.resources import PlatformResource


def io_rectangle(
    context: OutputContext | InputContext, platform: PlatformResource, manager: str
) -> PartitionRectangle:
    """The (symbol, session) pairs an IO manager call covers; unpartitioned assets refused."""
    if not context.has_asset_partitions:
        raise ValueError(
            f"{context.asset_key.to_user_string()}: {manager} only stores "
            "partitioned assets (session x symbol)"
        )
    symbol_partitions = platform.app_config().symbol_partitions
    return resolve_partition_keys(context.asset_partition_keys, symbol_partitions)


class PartitionedFrameIOManager(ConfigurableIOManager):
    """Validates, quarantines and stores frames partitioned by (session, symbol key).

    Subclasses say which hard rules apply by implementing `split`.
    """

    platform: PlatformResource

    _load_seconds: dict[str, float] = PrivateAttr(default_factory=dict)

    def _rectangle(self, context: OutputContext | InputContext) -> PartitionRectangle:
        return io_rectangle(context, self.platform, type(self).__name__)

    def split(
        self, frame: pl.DataFrame, dataset: str, pairs: Sequence[tuple[str, dt.date]]
    ) -> ValidationResult:
        """Rows to store and rows to quarantine, by the dataset's hard rules."""
        raise NotImplementedError

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        started = time.perf_counter()
        dataset = context.asset_key.path[-1]
        rectangle = self._rectangle(context)
        checked = self.split(obj, dataset, rectangle.pairs)
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
        dataset = (
            context.upstream_output.asset_key.path[-1]
            if context.upstream_output
            else (context.asset_key.path[-1])
        )
        started = time.perf_counter()
        rectangle = self._rectangle(context)
        frame = self.platform.lake().read_partitions(dataset, list(rectangle.pairs))
        # Reported with the consuming step's output (input metadata cannot be attached to a
        # multi-dimensional partition range).
        self._load_seconds[context.op_def.name] = time.perf_counter() - started
        return frame


class BarsIOManager(PartitionedFrameIOManager):
    """Stores polars frames of canonical bars, partitioned by (session, symbol key)."""

    def split(
        self, frame: pl.DataFrame, dataset: str, pairs: Sequence[tuple[str, dt.date]]
    ) -> ValidationResult:
        return split_valid_bars(frame, dataset=dataset, partitions=pairs)
