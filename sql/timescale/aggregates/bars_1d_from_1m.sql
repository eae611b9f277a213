-- Daily bars served from bars_1m by a continuous aggregate (configs/datasets.yaml:
-- bars_1m.timescale.continuous_aggregates: [1d]). Applied by TimescaleStore.ensure_schema,
-- refreshed by every bars_1m write over the written window (see bars_1h_from_1m.sql).
--
-- One bucket per New York calendar day, so a bucket is exactly one session partition of
-- bars_1m (extended-hours minutes included when stored). `ts` is the bucket, New York
-- midnight in UTC; TimescaleStore.read_aggregate returns it as bars_1d does, at the session
-- date 00:00 UTC. Column semantics as in bars_1h_from_1m.sql.

CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1d_from_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT symbol,
       time_bucket(INTERVAL '1 day', ts, 'America/New_York') AS ts,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume)::bigint AS volume,
       sum(trade_count)::bigint AS trade_count,
       CASE WHEN sum(volume) > 0 AND NOT bool_or(volume > 0 AND vwap IS NULL)
            THEN sum(vwap * volume) / sum(volume) END AS vwap,
       min(source) AS first_source,
       max(source) AS last_source
FROM bars_1m
GROUP BY symbol, 2
WITH NO DATA;
