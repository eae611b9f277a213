"""The IO manager of fundamentals and fundamental_ratios: TableIOManager, plus the quarantine
of facts that break a hard rule (core.fundamentals.ingest.QUARANTINE_RULES) for fundamentals.

The frame replaces exactly the run's (symbol, session) partitions in the lake, and the
partitions' quarantined facts (quarantine/fundamentals/...) are replaced with it.
"""

from __future__ import annotations

import polars as pl
from dagster import MetadataValue

from market_assets.core.fundamentals.ingest import split_valid_facts
from market_assets.defs.partitions import PartitionRectangle
from market_assets.defs.table_io import TableIOManager

QUARANTINED_DATASETS = ("fundamentals",)


class FundamentalsIOManager(TableIOManager):
    """Stores fundamentals (quarantining bad facts) and fundamental ratios."""

    def prepare(
        self, dataset: str, frame: pl.DataFrame, rectangle: PartitionRectangle
    ) -> tuple[pl.DataFrame, dict[str, object]]:
        """Valid facts to store; the rest is written to the quarantine here."""
        if dataset not in QUARANTINED_DATASETS:
            return frame, {}
        valid, quarantined = split_valid_facts(frame, dataset)
        self.platform.lake().write_quarantine(dataset, quarantined, rectangle.pairs)
        rules = quarantined.group_by("rule").len().sort("rule").rows()
        return valid, {
            "quarantined_rows": len(quarantined),
            "quarantine_rules": MetadataValue.json(dict(rules)),
        }
