"""IO manager for tick datasets (trades, tbbo, statistics): validate, quarantine, store.

Same storage path as the bar IO manager (lake always, PostgreSQL/TimescaleDB when the dataset
lists `timescale` and a DSN is set; bad rows to the dataset's quarantine), with the tick hard
rules of market_assets.core.validate_ticks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from market_assets.core.validate import ValidationResult
from market_assets.core.validate_ticks import split_valid_ticks
from market_assets.defs.io_managers import PartitionedFrameIOManager

TICKS_IO_MANAGER_KEY = "ticks_io_manager"


class TicksIOManager(PartitionedFrameIOManager):
    """Stores polars frames of canonical ticks, partitioned by (session, symbol key)."""

    def split(
        self, frame: pl.DataFrame, dataset: str, pairs: Sequence[tuple[str, dt.date]]
    ) -> ValidationResult:
        return split_valid_ticks(frame, dataset=dataset, partitions=pairs)
