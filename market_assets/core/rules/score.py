"""Quality scores: 0-100 per partition, weighted by severity, and per feed.

A partition starts at 100 and every failed result takes off its severity's weight
(configs/checks.yaml `score.weights`, by default ERROR 40 and WARN 10), never below 0. So a
clean partition scores 100, one WARN 90, one ERROR 60. A feed is one dataset from one source
over one calendar month; its score is the mean of its partitions' scores, so it reads as
"the average partition lost this many points".
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from market_assets.core.rules.base import Severity

FEED_KEYS = ("dataset", "source", "month")


def penalty_expr(weights: Mapping[Severity, float]) -> pl.Expr:
    """Points a result row (columns `passed`, `severity`) takes off its partition's score."""
    expr = pl.lit(0.0)
    for severity, weight in weights.items():
        expr = (
            pl.when(pl.col("severity") == severity.value)
            .then(pl.lit(float(weight)))
            .otherwise(expr)
        )
    return pl.when(pl.col("passed")).then(pl.lit(0.0)).otherwise(expr)


def feed_scores(partitions: pl.DataFrame) -> pl.DataFrame:
    """Per feed (dataset x source x month): mean partition score and partition counts.

    `partitions` needs dataset, source, session, score and errors columns; `month` is the
    session's calendar month as YYYY-MM.
    """
    return (
        partitions.with_columns(pl.col("session").dt.strftime("%Y-%m").alias("month"))
        .group_by(*FEED_KEYS)
        .agg(
            pl.col("score").mean().round(2).alias("score"),
            pl.len().alias("partitions"),
            (pl.col("errors") > 0).sum().cast(pl.Int64).alias("partitions_with_errors"),
        )
        .sort(*FEED_KEYS)
    )
