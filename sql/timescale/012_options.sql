-- TimescaleDB layer over sql/012_options.sql, applied only when the extension is available.
--
-- options_chains becomes a hypertable chunked on the snapshot time `ts` (7-day chunks; its
-- unique key (contract, ts) includes the time column, as a hypertable requires), compressed
-- segmented by the underlying `symbol` and ordered by contract and ts, with chunks compressed
-- after 30 days. Idempotent in the same way as 001_hypertables.sql. No retention: chains are
-- the system of record (add add_retention_policy if you want one).

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

SELECT add_compression_policy('options_chains', compress_after => INTERVAL '30 days',
                              if_not_exists => TRUE);
