"""The Dagster instance of a market-assets deployment: Dagster's own, plus defs/backfills.py.

The webserver and the daemon import no user code (they talk to the code location over gRPC),
so what must change inside them comes in with the instance: dagster.yaml (and the
DAGSTER_HOME that `market-assets` writes) names this class,

    instance_class:
      module: market_assets.defs.instance
      class: MarketAssetsInstance

and every process that loads that instance (webserver, daemon, run workers, the CLI) installs
the backfill replacements before it does anything else. Everything else is Dagster's
`DagsterInstance`, configured by the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance

# Dagster internal: the defaults a custom `instance_class` must provide (1.13, pinned).
from dagster._core.instance.ref import InstanceRef

from market_assets.defs.backfills import install_backfill_replacements


class MarketAssetsInstance(DagsterInstance):
    """Dagster's instance; its processes plan UI backfills of session x symbol key assets as
    rectangle runs and validate them without listing every partition (defs/backfills.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        install_backfill_replacements()
        super().__init__(*args, **kwargs)

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        """No keys beyond Dagster's own."""
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, Any]:
        """Dagster's defaults (SQLite storage under `base_dir`, and so on)."""
        return InstanceRef.config_defaults(base_dir)
