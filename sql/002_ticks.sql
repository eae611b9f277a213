-- Tick tables (Databento trades, tbbo, statistics) and their quarantine tables.
--
-- Idempotent like 001_bars.sql. Columns match market_assets.core.schemas TRADE_SCHEMA,
-- TBBO_SCHEMA and STATISTICS_SCHEMA, except that the nanosecond timestamps (ts_event, ts_recv,
-- ts_ref) are bigint nanoseconds since the Unix epoch: timestamptz holds microseconds and would
-- drop the vendor's last three digits. Convert with to_timestamp(ts_event / 1e9) when needed.
-- A partition is (symbol, session) by ts_event. There is no unique key: one nanosecond can
-- hold several events of one symbol (and sequence numbers are per venue channel), so a
-- partition rewrite deletes by (symbol, ts_event range) and COPYs the new rows.

CREATE TABLE IF NOT EXISTS trades (
    ts_event      bigint           NOT NULL,
    ts_recv       bigint,
    symbol        text             NOT NULL,
    instrument_id bigint,
    publisher_id  bigint,
    price         double precision NOT NULL,
    size          bigint           NOT NULL,
    side          text,
    flags         bigint,
    sequence      bigint,
    source        text             NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_symbol_ts_event_idx ON trades (symbol, ts_event);

CREATE TABLE IF NOT EXISTS tbbo (
    ts_event      bigint           NOT NULL,
    ts_recv       bigint,
    symbol        text             NOT NULL,
    instrument_id bigint,
    publisher_id  bigint,
    price         double precision NOT NULL,
    size          bigint           NOT NULL,
    side          text,
    flags         bigint,
    sequence      bigint,
    bid_price     double precision,
    ask_price     double precision,
    bid_size      bigint,
    ask_size      bigint,
    bid_count     bigint,
    ask_count     bigint,
    source        text             NOT NULL
);
CREATE INDEX IF NOT EXISTS tbbo_symbol_ts_event_idx ON tbbo (symbol, ts_event);

CREATE TABLE IF NOT EXISTS statistics (
    ts_event      bigint           NOT NULL,
    ts_recv       bigint,
    ts_ref        bigint,
    symbol        text             NOT NULL,
    instrument_id bigint,
    publisher_id  bigint,
    stat_type     text             NOT NULL,
    price         double precision,
    quantity      bigint,
    sequence      bigint,
    update_action text,
    stat_flags    bigint,
    source        text             NOT NULL
);
CREATE INDEX IF NOT EXISTS statistics_symbol_ts_event_idx ON statistics (symbol, ts_event);

CREATE TABLE IF NOT EXISTS quarantine_trades (
    ts_event       bigint,
    ts_recv        bigint,
    symbol         text,
    instrument_id  bigint,
    publisher_id   bigint,
    price          double precision,
    size           bigint,
    side           text,
    flags          bigint,
    sequence       bigint,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_trades_symbol_session_idx
    ON quarantine_trades (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_trades_symbol_ts_event_idx
    ON quarantine_trades (symbol, ts_event);

CREATE TABLE IF NOT EXISTS quarantine_tbbo (
    ts_event       bigint,
    ts_recv        bigint,
    symbol         text,
    instrument_id  bigint,
    publisher_id   bigint,
    price          double precision,
    size           bigint,
    side           text,
    flags          bigint,
    sequence       bigint,
    bid_price      double precision,
    ask_price      double precision,
    bid_size       bigint,
    ask_size       bigint,
    bid_count      bigint,
    ask_count      bigint,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_tbbo_symbol_session_idx ON quarantine_tbbo (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_tbbo_symbol_ts_event_idx
    ON quarantine_tbbo (symbol, ts_event);

CREATE TABLE IF NOT EXISTS quarantine_statistics (
    ts_event       bigint,
    ts_recv        bigint,
    ts_ref         bigint,
    symbol         text,
    instrument_id  bigint,
    publisher_id   bigint,
    stat_type      text,
    price          double precision,
    quantity       bigint,
    sequence       bigint,
    update_action  text,
    stat_flags     bigint,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_statistics_symbol_session_idx
    ON quarantine_statistics (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_statistics_symbol_ts_event_idx
    ON quarantine_statistics (symbol, ts_event);
