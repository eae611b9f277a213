"""Databento adapter: bars and ticks from the Historical API or downloaded DBN files.

- provider.py: `DatabentoProvider` (fetch_bars, fetch_ticks, from_config), batching, cost guard
- decode.py: DBN records -> canonical polars frames (fixed-point prices, UNDEF -> null, symbology)
- files.py: a folder of `.dbn` / `.dbn.zst` files chosen by their DBN headers
- errors.py: client errors -> our provider error hierarchy
- routing.py: a registry that serves a dataset from DBN files only (`ingest --files DIR`)
"""

from market_assets.core.providers.databento.errors import (
    DatabentoCostError,
    DatabentoPayloadError,
)
from market_assets.core.providers.databento.provider import DatabentoProvider

__all__ = ["DatabentoCostError", "DatabentoPayloadError", "DatabentoProvider"]
