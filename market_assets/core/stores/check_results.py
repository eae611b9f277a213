"""Our own table of quality-check results, one row per (dataset, symbol, session, rule).

Dagster stores one check evaluation per partition key, and a key may be a bucket of many
symbols (docs/design.md); this table keeps the per-symbol verdicts so the coverage report and
`market-assets status` can speak about symbols in bucket mode too. It lives in the lake at
`quality/check_results/{dataset}/{YYYY}.parquet` (local folder or S3). Re-checking a
partition replaces its rows; writers of one file never lose each other's rows (the lake's
lock on local disk, conditional PUTs on S3, retried with jitter).
"""

from __future__ import annotations

import datetime as dt
import io
import random
import time
from collections.abc import Iterable, Sequence

import polars as pl

from market_assets.core.errors import StoreError
from market_assets.core.rules.engine import RESULT_SCHEMA
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.objectstore import VersionConflict
from market_assets.core.symbols import validate_symbol

FOLDER = "quality/check_results"
CHECK_RESULT_SCHEMA: dict[str, pl.DataType] = {
    **RESULT_SCHEMA,
    "partition_key": pl.String(),  # the Dagster partition key (a bucket key in bucket mode)
    "source": pl.String(),  # the rows' source(s), "+"-joined; "none" for an empty partition
    "rows": pl.Int64(),  # bars stored in the (symbol, session) partition
    "quarantined_rows": pl.Int64(),  # rows set aside by validation for that partition
    "partition_score": pl.Float64(),  # 0-100 score of the (symbol, session) partition
    "run_id": pl.String(),
    "checked_at": pl.Datetime("us", "UTC"),
}
MAX_WRITE_ATTEMPTS = 30
RETRY_CAP_SECONDS = 1.0


def results_path(dataset: str, year: int) -> str:
    if not dataset.replace("_", "").isalnum():
        raise ValueError(f"invalid dataset name {dataset!r} for the check results table")
    return f"{FOLDER}/{dataset}/{year:04d}.parquet"


def empty_results() -> pl.DataFrame:
    return pl.DataFrame(schema=CHECK_RESULT_SCHEMA)


class CheckResultsStore:
    """Read and replace check results in the lake, by (dataset, symbol, session)."""

    def __init__(self, lake: ParquetLake) -> None:
        self.lake = lake
        self._store = lake.store

    def uri(self, dataset: str, year: int) -> str:
        return self._store.uri(results_path(dataset, year))

    def replace(
        self, dataset: str, rows: pl.DataFrame, partitions: Sequence[tuple[str, dt.date]]
    ) -> int:
        """Replace every stored result of the listed (symbol, session) partitions with `rows`.

        `rows` must only hold results of listed partitions (CHECK_RESULT_SCHEMA columns).
        Returns the number of rows written.
        """
        frame = rows.select(pl.col(name).cast(dtype) for name, dtype in CHECK_RESULT_SCHEMA.items())
        listed = pl.DataFrame(
            {"symbol": [s for s, _ in partitions], "session": [d for _, d in partitions]},
            schema={"symbol": pl.String(), "session": pl.Date()},
        ).unique()
        for symbol in listed.get_column("symbol").unique().to_list():
            validate_symbol(symbol)
        stray = frame.join(listed, on=["symbol", "session"], how="anti")
        if stray.height:
            first = stray.row(0, named=True)
            raise StoreError(
                f"{dataset}: {stray.height} check result(s) outside the listed partitions, "
                f"first {first['symbol']} {first['session']}; list the partition"
            )
        years = listed.get_column("session").dt.year().unique().sort().to_list()
        for year in years:
            in_year = pl.col("session").dt.year() == year
            self._replace_year(dataset, year, frame.filter(in_year), listed.filter(in_year))
        return frame.height

    def _replace_year(
        self, dataset: str, year: int, rows: pl.DataFrame, listed: pl.DataFrame
    ) -> None:
        path = results_path(dataset, year)
        with self._store.locked(path):
            for attempt in range(MAX_WRITE_ATTEMPTS):
                data, version = self._store.get(path)
                kept = (
                    _read(data, self._store.uri(path)).join(
                        listed, on=["symbol", "session"], how="anti"
                    )
                    if data is not None
                    else empty_results()
                )
                merged = pl.concat([kept, rows]).sort("symbol", "session", "rule")
                buffer = io.BytesIO()
                merged.write_parquet(buffer, compression="zstd")
                try:
                    self._store.put(path, buffer.getvalue(), expected_version=version)
                    return
                except VersionConflict:
                    time.sleep(random.uniform(0.0, min(RETRY_CAP_SECONDS, 0.02 * 2**attempt)))
        raise StoreError(
            f"gave up writing {self._store.uri(path)} after {MAX_WRITE_ATTEMPTS} attempts: "
            "other writers kept changing it; re-run the checks"
        )

    def read(self, datasets: Iterable[str], years: Iterable[int]) -> pl.DataFrame:
        """Every stored result of `datasets` in `years` (files that do not exist are skipped)."""
        paths = [results_path(d, y) for d in datasets for y in years]
        sources = self._store.read_sources(paths)
        if not sources:
            return empty_results()
        try:
            frame = pl.read_parquet(sources)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise StoreError(
                f"cannot read check results under {self._store.uri(FOLDER)}: {exc}; move the "
                "unreadable file aside and re-run the checks"
            ) from exc
        return frame.select(pl.col(name).cast(dtype) for name, dtype in CHECK_RESULT_SCHEMA.items())


def _read(data: bytes, uri: str) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(data)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise StoreError(
            f"cannot merge into {uri}: not readable as check results ({exc}); move it aside "
            "and re-run the checks"
        ) from exc
    return frame.select(pl.col(name).cast(dtype) for name, dtype in CHECK_RESULT_SCHEMA.items())
