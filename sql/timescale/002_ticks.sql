-- TimescaleDB layer over sql/002_ticks.sql, applied only when the extension is available.
--
-- The tick tables are hypertables on their integer time column ts_event (bigint nanoseconds
-- since the Unix epoch), in one-day chunks (86,400,000,000,000 ns), compressed segmented by
-- symbol and ordered by ts_event. Policies (compression after N days, optional retention) come
-- from configs/datasets.yaml like the bars'; on an integer time column they need an "integer
-- now" function telling TimescaleDB the current time in the column's unit:
-- market_assets_unix_now_ns() below.
--
-- Idempotent in the same way as 001_hypertables.sql: if_not_exists everywhere, compression
-- settings only set on tables that do not have compression enabled yet.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE OR REPLACE FUNCTION market_assets_unix_now_ns() RETURNS bigint
    LANGUAGE SQL STABLE AS $$ SELECT (extract(epoch FROM now()) * 1000000000)::bigint $$;

SELECT create_hypertable('trades', by_range('ts_event', 86400000000000::bigint),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('tbbo', by_range('ts_event', 86400000000000::bigint),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('statistics', by_range('ts_event', 86400000000000::bigint),
                         if_not_exists => TRUE, migrate_data => TRUE);

SELECT set_integer_now_func('trades', 'market_assets_unix_now_ns', replace_if_exists => TRUE);
SELECT set_integer_now_func('tbbo', 'market_assets_unix_now_ns', replace_if_exists => TRUE);
SELECT set_integer_now_func('statistics', 'market_assets_unix_now_ns',
                            replace_if_exists => TRUE);

DO $$
DECLARE
    tick_table text;
BEGIN
    FOREACH tick_table IN ARRAY ARRAY['trades', 'tbbo', 'statistics']
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM timescaledb_information.hypertables
            WHERE hypertable_schema = current_schema()
              AND hypertable_name = tick_table
              AND compression_enabled
        ) THEN
            EXECUTE format(
                'ALTER TABLE %I SET (timescaledb.compress, '
                'timescaledb.compress_segmentby = ''symbol'', '
                'timescaledb.compress_orderby = ''ts_event DESC'')',
                tick_table
            );
        END IF;
    END LOOP;
END
$$;
