-- TimescaleDB layer over sql/012_options.sql, applied only when the extension is available.
--
-- options_chains becomes a hypertable chunked on the snapshot time `ts` (7-day chunks; its
-- unique key (contract, ts) includes the time column, as a hypertable requires), compressed
-- segmented by the underlying `symbol` and ordered by contract and ts. Idempotent in the same
-- way as 001_hypertables.sql. Policies (compression after 30 days; retention off) come from
-- configs/datasets.yaml (`options_chains.timescale`) like every dataset's.

CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('options_chains', by_range('ts', INTERVAL '7 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM timescaledb_information.hypertables
        WHERE hypertable_schema = current_schema()
          AND hypertable_name = 'options_chains'
          AND compression_enabled
    ) THEN
        ALTER TABLE options_chains SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'symbol',
            timescaledb.compress_orderby = 'contract, ts DESC'
        );
    END IF;
END
$$;
