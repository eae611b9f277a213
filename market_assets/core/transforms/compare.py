"""Compare bars a backup provider delivered with the bars already stored from the primary.

When the registry fails over, the backup's rows replace nothing silently: the asset compares
them with what the lake holds for the same (symbol, ts) from the primary and records the
result in the run's metadata (`backup_vs_stored`). The comparison is symmetric and unit-free:
the relative difference of two values a and b is |a - b| / max(|a|, |b|), 0 when both are 0,
so it lies in [0, 1] whichever side is larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

CLOSE_TOLERANCE = 0.005  # 0.5%: more than vendors' usual official-close vs last-trade gap
VOLUME_TOLERANCE = 0.10  # 10%: vendors count volume differently (venues, odd lots)
KEY = ("symbol", "ts")


@dataclass(frozen=True)
class BarComparison:
    """How far a backup's bars are from the stored primary bars at the same (symbol, ts)."""

    compared_bars: int
    max_close_rel_diff: float
    max_volume_rel_diff: float
    worst_symbol: str | None
    worst_ts: str | None
    close_tolerance: float
    volume_tolerance: float

    @property
    def disagrees(self) -> bool:
        """True when any compared bar is beyond the close or volume tolerance."""
        return (
            self.max_close_rel_diff > self.close_tolerance
            or self.max_volume_rel_diff > self.volume_tolerance
        )

    def as_metadata(self, backup_sources: list[str], stored_source: str) -> dict[str, object]:
        """A JSON-ready summary for the materialization metadata."""
        return {
            "backup_sources": backup_sources,
            "stored_source": stored_source,
            "compared_bars": self.compared_bars,
            "max_close_rel_diff": self.max_close_rel_diff,
            "max_volume_rel_diff": self.max_volume_rel_diff,
            "worst_symbol": self.worst_symbol,
            "worst_ts": self.worst_ts,
            "disagrees": self.disagrees,
            "close_tolerance": self.close_tolerance,
            "volume_tolerance": self.volume_tolerance,
        }


def relative_difference(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """|a - b| / max(|a|, |b|), and 0 where both are 0."""
    scale = pl.max_horizontal(a.abs(), b.abs())
    return pl.when(scale == 0).then(0.0).otherwise((a - b).abs() / scale)


def compare_bars(
    backup: pl.DataFrame,
    stored: pl.DataFrame,
    close_tolerance: float = CLOSE_TOLERANCE,
    volume_tolerance: float = VOLUME_TOLERANCE,
) -> BarComparison:
    """Compare bars on (symbol, ts); bars present on one side only are not compared.

    Nulls (a quarantined close, say) are skipped. The worst bar is the one with the largest
    close difference.
    """
    joined = (
        backup.select(*KEY, "close", "volume")
        .join(stored.select(*KEY, "close", "volume"), on=list(KEY), suffix="_stored")
        .with_columns(
            relative_difference(pl.col("close"), pl.col("close_stored")).alias("close_diff"),
            relative_difference(
                pl.col("volume").cast(pl.Float64), pl.col("volume_stored").cast(pl.Float64)
            ).alias("volume_diff"),
        )
    )
    if joined.is_empty():
        return BarComparison(0, 0.0, 0.0, None, None, close_tolerance, volume_tolerance)
    worst = joined.sort("close_diff", descending=True, nulls_last=True).row(0, named=True)
    return BarComparison(
        compared_bars=len(joined),
        max_close_rel_diff=round(float(joined["close_diff"].max() or 0.0), 9),
        max_volume_rel_diff=round(float(joined["volume_diff"].max() or 0.0), 9),
        worst_symbol=worst["symbol"],
        worst_ts=str(worst["ts"]),
        close_tolerance=close_tolerance,
        volume_tolerance=volume_tolerance,
    )
