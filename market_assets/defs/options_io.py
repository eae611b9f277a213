"""The IO manager of `options_chains`: hard rules, quarantine, lake and TimescaleDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from market_assets.core.options.validate import split_valid_options
from market_assets.core.validate import ValidationResult
from market_assets.defs.io_managers import PartitionedFrameIOManager

OPTIONS_IO_MANAGER_KEY = "options_io_manager"


class OptionsIOManager(PartitionedFrameIOManager):
    """Stores chain frames, replacing exactly the run's (underlying, session) partitions."""

    def split(
        self, frame: pl.DataFrame, dataset: str, pairs: Sequence[tuple[str, dt.date]]
    ) -> ValidationResult:
        return split_valid_options(frame, pairs)
