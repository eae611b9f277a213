"""`coverage_report`: coverage and quality of every bar dataset, from what Dagster stores.

Built from the partitions Dagster recorded as materialized, the `quality` check status it
recorded per partition, and our per-symbol check results table (which is what makes
symbol-level numbers possible when a partition key is a bucket of symbols). The Markdown is
shown in the UI as metadata, with the heatmap PNG (symbol x month, coloured by score)
embedded in it as an image; both are also written under the lake root at
quality/coverage_report.md and quality/coverage_heatmap.png. The demo records it once at
its end (`record_report`: a materialization without a run, so the demo pays one event, not
a run), and automation keeps it current: it is requested after the bar datasets it reports
on are updated (`AutomationCondition.eager()`; one run covers every update since).
"""

import base64
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AutomationCondition,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    asset,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.rules.report import (
    Coverage,
    build_coverage,
    render_heatmap,
    render_markdown,
)
from market_assets.core.rules.thresholds import load_thresholds
from market_assets.core.stores.check_results import CheckResultsStore
from market_assets.core.stores.lake import ParquetLake
from market_assets.defs.checks.bars import CHECK_NAME, bar_datasets
from market_assets.defs.partitions import split_partition_key
from market_assets.defs.resources import PlatformResource

COVERAGE_ASSET = "coverage_report"
MARKDOWN_FILE = "coverage_report.md"
HEATMAP_FILE = "coverage_heatmap.png"
REPORT_FOLDER = "quality"
KEY_SCHEMA = {"dataset": pl.String(), "symbol": pl.String(), "session": pl.Date()}


@dataclass(frozen=True)
class WrittenReport:
    """Where the report went and what it said."""

    coverage: Coverage
    markdown: str
    markdown_uri: str
    heatmap_uri: str
    heatmap: bytes  # the PNG

    def markdown_with_heatmap(self) -> str:
        """The report with the heatmap embedded as a data URI (for the Dagster UI)."""
        data = base64.b64encode(self.heatmap).decode()
        return render_markdown(self.coverage, heatmap_src=f"data:image/png;base64,{data}")


def _expand(
    config: AppConfig, dataset: str, keys: Sequence[str], extra: dict[str, list] | None = None
) -> pl.DataFrame:
    """Dagster partition keys of a dataset as (dataset, symbol, session) rows; bucket keys
    expand to their member symbols, keys no universe defines any more are skipped."""
    symbols, sessions, columns = [], [], {name: [] for name in (extra or {})}
    for index, key in enumerate(keys):
        session, symbol_key = split_partition_key(key)
        try:
            members = config.symbol_partitions.symbols_for_key(symbol_key, session)
        except ValueError:
            continue
        for symbol in members:
            symbols.append(symbol)
            sessions.append(session)
            for name, values in (extra or {}).items():
                columns[name].append(values[index])
    return pl.DataFrame(
        {"dataset": [dataset] * len(symbols), "symbol": symbols, "session": sessions, **columns},
        schema={**KEY_SCHEMA, **{name: pl.String() for name in columns}},
    )


def collect_coverage(
    instance: DagsterInstance, config: AppConfig, lake: ParquetLake, datasets: Sequence[str]
) -> Coverage:
    """Coverage of `datasets` from Dagster's records and the lake's check results table."""
    thresholds = load_thresholds(config.config_dir)
    first_year = min(config.datasets[d].start.year for d in datasets) if datasets else 2000
    years = range(first_year, dt.date.today().year + 1)
    results = CheckResultsStore(lake).read(datasets, years)
    materialized, statuses = [], []
    for dataset in datasets:
        keys = sorted(instance.get_materialized_partitions(AssetKey(dataset)))
        materialized.append(_expand(config, dataset, keys))
        check_key = AssetCheckKey(AssetKey(dataset), CHECK_NAME)
        infos = instance.event_log_storage.get_asset_check_partition_info([check_key])
        infos = [info for info in infos if info.partition_key is not None]
        statuses.append(
            _expand(
                config,
                dataset,
                [info.partition_key for info in infos],
                {"status": [info.latest_execution_status.value for info in infos]},
            )
        )
    empty_status = pl.DataFrame(schema={**KEY_SCHEMA, "status": pl.String()})
    return build_coverage(
        results,
        pl.concat(materialized) if materialized else pl.DataFrame(schema=KEY_SCHEMA),
        pl.concat(statuses) if statuses else empty_status,
        get_calendar(config.exchange),
        thresholds.score.feed_alert_below,
        calendars={dataset: get_calendar(config.calendar_of(dataset)) for dataset in datasets},
    )


def write_report(
    lake: ParquetLake, coverage: Coverage, folder: str = REPORT_FOLDER
) -> WrittenReport:
    """Write the Markdown and the heatmap into `folder` under the lake root (local or S3)."""
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    heatmap_path = f"{prefix}{HEATMAP_FILE}"
    markdown_path = f"{prefix}{MARKDOWN_FILE}"
    markdown = render_markdown(coverage, heatmap_name=HEATMAP_FILE, heatmap_src=HEATMAP_FILE)
    heatmap = render_heatmap(coverage)
    lake.store.put(heatmap_path, heatmap)
    lake.store.put(markdown_path, markdown.encode())
    return WrittenReport(
        coverage=coverage,
        markdown=markdown,
        markdown_uri=lake.store.uri(markdown_path),
        heatmap_uri=lake.store.uri(heatmap_path),
        heatmap=heatmap,
    )


def report_metadata(
    instance: DagsterInstance, config: AppConfig, lake: ParquetLake, datasets: Sequence[str]
) -> dict[str, object]:
    """Build and write the report; the metadata a `coverage_report` materialization shows:
    the Markdown with its heatmap embedded, where the files went, and the headline counts."""
    started = time.perf_counter()
    written = write_report(lake, collect_coverage(instance, config, lake, datasets))
    summary = written.coverage.summary
    return {
        "report": MetadataValue.md(written.markdown_with_heatmap()),
        "seconds": round(time.perf_counter() - started, 4),
        "report_path": MetadataValue.path(written.markdown_uri),
        "heatmap_path": MetadataValue.path(written.heatmap_uri),
        "datasets": summary.height,
        "partitions_checked": int(summary["checked"].sum()) if summary.height else 0,
        "error_partitions": int(summary["error_partitions"].sum()) if summary.height else 0,
        "warn_partitions": int(summary["warn_partitions"].sum()) if summary.height else 0,
    }


def record_report(
    instance: DagsterInstance, config: AppConfig, lake: ParquetLake, datasets: Sequence[str]
) -> dict[str, object]:
    """Build the report and record it as a `coverage_report` materialization without a run
    (one event, where a run costs seconds of Dagster's bookkeeping): what the demo does at
    its end. Returns the metadata recorded."""
    metadata = report_metadata(instance, config, lake, datasets)
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=COVERAGE_ASSET, metadata=metadata)
    )
    return metadata


def build_coverage_asset(bar_assets: Sequence[AssetsDefinition]) -> AssetsDefinition:
    """The unpartitioned `coverage_report` asset over the bar datasets among `bar_assets`."""
    datasets = sorted(bar_datasets(bar_assets))

    @asset(
        name=COVERAGE_ASSET,
        group_name="quality",
        deps=[AssetKey(d) for d in datasets],
        kinds={"markdown", "png"},
        description="Coverage by dataset, symbol and month (expected sessions vs present), "
        "failures by rule, gaps as ranges, quality scores per partition and feed, quarantine "
        "counts; from Dagster's partition and check records and the check results table.",
        automation_condition=AutomationCondition.eager(),
    )
    def _coverage(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
        metadata = report_metadata(
            context.instance, platform.app_config(), platform.lake(), datasets
        )
        return MaterializeResult(metadata=metadata)

    return _coverage
