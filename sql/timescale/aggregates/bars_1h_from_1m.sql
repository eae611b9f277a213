-- Hourly bars served from bars_1m by a continuous aggregate (configs/datasets.yaml:
-- bars_1m.timescale.continuous_aggregates: [1h]). Applied by TimescaleStore.ensure_schema,
-- refreshed by every bars_1m write over the written window (never left to the background
-- scheduler alone: see docs/operations.md on PostgreSQL 15.20).
--
-- Buckets are one hour on the New York clock offset by 30 minutes, so a regular session
-- gives 9:30-10:30 ... 15:30-16:00, the same bars as bars_1h (core/transforms/resample.py)
-- for regular-hours minutes. They differ where bars_1h re-anchors: minutes after an early
-- close or after 16:00 share a :30 bucket here. `ts` is the bucket's UTC open; open/close are
-- the first/last by ts; vwap is volume-weighted and null when the bucket traded nothing or a
-- minute that traded has no vwap; first_source/last_source are the smallest and largest
-- source names in the bucket (equal when one source fed it).

CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h_from_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT symbol,
       time_bucket(INTERVAL '1 hour', ts, 'America/New_York', "offset" => INTERVAL '30 minutes')
           AS ts,
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
