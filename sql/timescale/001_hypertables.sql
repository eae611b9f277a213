-- TimescaleDB layer over sql/001_bars.sql, applied only when the extension can be used.
--
-- Each bar table becomes a hypertable chunked on `ts` (7 days for 1m/5m, 30 days for 15m/1h,
-- 365 days for 1d), with compression segmented by symbol and ordered by ts. Written for
-- TimescaleDB 2.28 with the compression API (ALTER TABLE ... SET (timescaledb.compress ...)),
-- which 2.18+ still supports beside the newer columnstore names.
--
-- Policies are not set here: compression (compress_after), retention (drop_after, off by
-- default) and continuous aggregates come per dataset from configs/datasets.yaml (`timescale:`)
-- and are applied by TimescaleStore.ensure_schema (market_assets/core/stores/
-- timescale_policies.py); the aggregates' definitions are in sql/timescale/aggregates/.
--
-- Idempotent: create_hypertable takes if_not_exists, and the compression settings are only
-- set on tables that do not have compression enabled yet, because older releases refuse to
-- re-set them once a chunk is compressed.

CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('bars_1m', by_range('ts', INTERVAL '7 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('bars_5m', by_range('ts', INTERVAL '7 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('bars_15m', by_range('ts', INTERVAL '30 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('bars_1h', by_range('ts', INTERVAL '30 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('bars_1d', by_range('ts', INTERVAL '365 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);

DO $$
DECLARE
    bar_table text;
BEGIN
    FOREACH bar_table IN ARRAY ARRAY['bars_1m', 'bars_5m', 'bars_15m', 'bars_1h', 'bars_1d']
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM timescaledb_information.hypertables
            WHERE hypertable_schema = current_schema()
              AND hypertable_name = bar_table
              AND compression_enabled
        ) THEN
            EXECUTE format(
                'ALTER TABLE %I SET (timescaledb.compress, '
                'timescaledb.compress_segmentby = ''symbol'', '
                'timescaledb.compress_orderby = ''ts DESC'')',
                bar_table
            );
        END IF;
    END LOOP;
END
$$;
