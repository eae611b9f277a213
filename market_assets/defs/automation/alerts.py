"""Quality alerts: a sensor that logs, and optionally POSTs to a webhook, when a bar
partition fails an ERROR rule or a feed's score (dataset x source x month) falls below
`score.feed_alert_below` in configs/checks.yaml.

Each tick reads the `quality` check executions Dagster recorded since the last tick (an
indexed query, no event payloads), looks up the failing rules per symbol in the check
results table, and sends every alert of the tick in one JSON POST:

    {"source": "market-assets", "sent_at": "...", "alerts": [
      {"kind": "check_failed", "dataset": "bars_1m", "partition": "2026-11-20|AAPL",
       "symbol": "AAPL", "session": "2026-11-20", "score": 60.0,
       "rules": [{"rule": "unit_errors", "offending_rows": 42}]},
      {"kind": "feed_score_low", "dataset": "bars_1m", "source": "synthetic",
       "month": "2026-11", "score": 84.5, "threshold": 90.0, "partitions": 25}]}

The webhook URL comes from the environment variable named by the resource
(MARKET_ASSETS_ALERT_WEBHOOK_URL by default); it is never logged (it often embeds a token).
A failed POST leaves the cursor where it was, so the next tick sends the alerts again.
"""

import datetime as dt
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import polars as pl
from dagster import (
    AssetCheckKey,
    AssetKey,
    ConfigurableResource,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from market_assets.core.config import AppConfig
from market_assets.core.rules.score import feed_scores
from market_assets.core.rules.thresholds import load_thresholds
from market_assets.core.stores.check_results import CheckResultsStore
from market_assets.defs.checks.bars import CHECK_NAME
from market_assets.defs.partitions import split_partition_key
from market_assets.defs.resources import PlatformResource

WEBHOOK_ENV = "MARKET_ASSETS_ALERT_WEBHOOK_URL"
ALERTS_SENSOR = "quality_alerts"
ALERT_RESOURCE_KEY = "alert_webhook"


class AlertWebhookResource(ConfigurableResource):
    """Posts alert batches as JSON to the URL held by the environment variable `url_env`.

    Unset or empty variable: alerts are only logged.
    """

    url_env: str = WEBHOOK_ENV
    timeout_seconds: float = 5.0

    def configured(self) -> bool:
        return bool(os.environ.get(self.url_env))

    def post(self, payload: dict[str, Any]) -> int:
        """POST `payload`; returns the HTTP status. Raises OSError (the URL is not named)."""
        url = os.environ.get(self.url_env, "")
        if not url.startswith(("http://", "https://")):
            raise OSError(f"${self.url_env} is not an http(s) URL; alerts were only logged")
        request = urllib.request.Request(
            url,
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "market-assets-alerts"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            raise OSError(f"alert webhook (${self.url_env}) answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OSError(f"alert webhook (${self.url_env}) unreachable: {reason}") from None


def check_failed_alerts(
    results: pl.DataFrame, failed: dict[tuple[str, str, dt.date], str]
) -> list[dict[str, Any]]:
    """One alert per (dataset, symbol, session) with a failed ERROR rule among `failed`
    ((dataset, symbol, session) -> partition key)."""
    keys = pl.DataFrame(
        {
            "dataset": [k[0] for k in failed],
            "symbol": [k[1] for k in failed],
            "session": [k[2] for k in failed],
            "partition": list(failed.values()),
        },
        schema={
            "dataset": pl.String(),
            "symbol": pl.String(),
            "session": pl.Date(),
            "partition": pl.String(),
        },
    )
    errors = results.filter(~pl.col("passed") & (pl.col("severity") == "ERROR")).join(
        keys, on=["dataset", "symbol", "session"], how="inner"
    )
    grouped = errors.group_by("dataset", "partition", "symbol", "session", maintain_order=True).agg(
        pl.col("partition_score").first().alias("score"),
        pl.struct("rule", "offending_rows").alias("rules"),
    )
    return [
        {"kind": "check_failed", **row, "session": row["session"].isoformat()}
        for row in grouped.sort("dataset", "session", "symbol").iter_rows(named=True)
    ]


def feed_alerts(
    results: pl.DataFrame, touched: set[tuple[str, str]], threshold: float
) -> list[dict[str, Any]]:
    """Feeds (dataset x source x month) among the `touched` (dataset, month) pairs whose
    mean partition score is below `threshold`."""
    partitions = results.group_by("dataset", "symbol", "session").agg(
        pl.col("source").first(),
        pl.col("partition_score").first().alias("score"),
        ((~pl.col("passed")) & (pl.col("severity") == "ERROR")).sum().alias("errors"),
    )
    feeds = feed_scores(partitions)
    low = feeds.filter(
        (pl.col("score") < threshold)
        & pl.struct("dataset", "month").is_in(
            pl.DataFrame(
                {"dataset": [d for d, _ in touched], "month": [m for _, m in touched]},
                schema={"dataset": pl.String(), "month": pl.String()},
            )
            .to_struct()
            .implode()
        )
    )
    return [
        {"kind": "feed_score_low", **row, "threshold": threshold}
        for row in low.iter_rows(named=True)
    ]


def build_alert_sensor(datasets: Sequence[str]) -> SensorDefinition:
    """The `quality_alerts` sensor over the `quality` checks of `datasets`."""
    check_keys = [AssetCheckKey(AssetKey(d), CHECK_NAME) for d in datasets]

    @sensor(
        name=ALERTS_SENSOR,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description="Logs (and POSTs to $MARKET_ASSETS_ALERT_WEBHOOK_URL when set) ERROR check "
        "failures and feeds whose quality score falls below configs/checks.yaml's threshold.",
    )
    def _alerts(
        context: SensorEvaluationContext,
        platform: PlatformResource,
        alert_webhook: AlertWebhookResource,
    ):
        after = json.loads(context.cursor)["after"] if context.cursor else None
        infos = [
            info
            for info in context.instance.event_log_storage.get_asset_check_partition_info(
                check_keys, after_storage_id=after
            )
            if info.partition_key is not None
            and info.latest_check_event_storage_id is not None
            and (after is None or info.latest_check_event_storage_id > after)
        ]
        if not infos:
            return SkipReason("no new quality check results")
        config = AppConfig.load(platform.config_dir)
        newest = max(info.latest_check_event_storage_id for info in infos)
        failed: dict[tuple[str, str, dt.date], str] = {}
        touched: set[tuple[str, str]] = set()
        for info in infos:
            session, symbol_key = split_partition_key(info.partition_key)
            dataset = info.check_key.asset_key.path[-1]
            touched.add((dataset, f"{session:%Y-%m}"))
            if info.latest_execution_status is AssetCheckExecutionRecordStatus.FAILED:
                for symbol in config.symbol_partitions.symbols_for_key(symbol_key, session):
                    failed[(dataset, symbol, session)] = info.partition_key
        years = sorted({int(month[:4]) for _, month in touched})
        results = CheckResultsStore(platform.lake()).read(sorted({d for d, _ in touched}), years)
        threshold = load_thresholds(config.config_dir).score.feed_alert_below
        alerts = check_failed_alerts(results, failed) + feed_alerts(results, touched, threshold)
        for alert in alerts:
            context.log.warning(f"quality alert: {json.dumps(alert, default=str)}")
        if alerts and alert_webhook.configured():
            payload = {
                "source": "market-assets",
                "sent_at": dt.datetime.now(dt.UTC).isoformat(),
                "alerts": alerts,
            }
            try:
                status = alert_webhook.post(payload)
            except OSError as exc:
                context.log.error(f"{exc}; will retry on the next tick")
                return SkipReason(f"{len(alerts)} alert(s) not delivered: {exc}")
            context.log.info(f"posted {len(alerts)} alert(s) to the webhook (HTTP {status})")
        context.update_cursor(json.dumps({"after": newest}))
        return SkipReason(f"{len(alerts)} alert(s) from {len(infos)} new check result(s)")

    return _alerts
