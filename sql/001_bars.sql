-- Canonical bar tables, one per dataset, and their quarantine tables.
--
-- Idempotent: every statement is CREATE ... IF NOT EXISTS, so the store applies this file on
-- every start. Columns match market_assets.core.schemas.BAR_SCHEMA; `ts` is the bar open in
-- UTC and (symbol, ts) is the unique key. Quarantine tables keep rows that broke a hard rule
-- as they arrived (any bar column may be null) plus the dataset, rule and detail, filed under
-- the (symbol, session) partition they were quarantined from: `session` is that partition's
-- session, not derived from `ts`, which may be null or outside every partition. They have no
-- unique key; (symbol, session) serves partition rewrites, (symbol, ts) lookups by time.

CREATE TABLE IF NOT EXISTS bars_1m (
    ts          timestamptz      NOT NULL,
    symbol      text             NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    trade_count bigint,
    vwap        double precision,
    granularity text             NOT NULL,
    source      text             NOT NULL,
    CONSTRAINT bars_1m_pkey PRIMARY KEY (symbol, ts)
);

CREATE TABLE IF NOT EXISTS bars_5m (
    ts          timestamptz      NOT NULL,
    symbol      text             NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    trade_count bigint,
    vwap        double precision,
    granularity text             NOT NULL,
    source      text             NOT NULL,
    CONSTRAINT bars_5m_pkey PRIMARY KEY (symbol, ts)
);

CREATE TABLE IF NOT EXISTS bars_15m (
    ts          timestamptz      NOT NULL,
    symbol      text             NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    trade_count bigint,
    vwap        double precision,
    granularity text             NOT NULL,
    source      text             NOT NULL,
    CONSTRAINT bars_15m_pkey PRIMARY KEY (symbol, ts)
);

CREATE TABLE IF NOT EXISTS bars_1h (
    ts          timestamptz      NOT NULL,
    symbol      text             NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    trade_count bigint,
    vwap        double precision,
    granularity text             NOT NULL,
    source      text             NOT NULL,
    CONSTRAINT bars_1h_pkey PRIMARY KEY (symbol, ts)
);

CREATE TABLE IF NOT EXISTS bars_1d (
    ts          timestamptz      NOT NULL,
    symbol      text             NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    trade_count bigint,
    vwap        double precision,
    granularity text             NOT NULL,
    source      text             NOT NULL,
    CONSTRAINT bars_1d_pkey PRIMARY KEY (symbol, ts)
);

CREATE TABLE IF NOT EXISTS quarantine_bars_1m (
    ts             timestamptz,
    symbol         text,
    open           double precision,
    high           double precision,
    low            double precision,
    close          double precision,
    volume         bigint,
    trade_count    bigint,
    vwap           double precision,
    granularity    text,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_bars_1m_symbol_session_idx
    ON quarantine_bars_1m (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_bars_1m_symbol_ts_idx ON quarantine_bars_1m (symbol, ts);

CREATE TABLE IF NOT EXISTS quarantine_bars_5m (
    ts             timestamptz,
    symbol         text,
    open           double precision,
    high           double precision,
    low            double precision,
    close          double precision,
    volume         bigint,
    trade_count    bigint,
    vwap           double precision,
    granularity    text,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_bars_5m_symbol_session_idx
    ON quarantine_bars_5m (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_bars_5m_symbol_ts_idx ON quarantine_bars_5m (symbol, ts);

CREATE TABLE IF NOT EXISTS quarantine_bars_15m (
    ts             timestamptz,
    symbol         text,
    open           double precision,
    high           double precision,
    low            double precision,
    close          double precision,
    volume         bigint,
    trade_count    bigint,
    vwap           double precision,
    granularity    text,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_bars_15m_symbol_session_idx
    ON quarantine_bars_15m (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_bars_15m_symbol_ts_idx ON quarantine_bars_15m (symbol, ts);

CREATE TABLE IF NOT EXISTS quarantine_bars_1h (
    ts             timestamptz,
    symbol         text,
    open           double precision,
    high           double precision,
    low            double precision,
    close          double precision,
    volume         bigint,
    trade_count    bigint,
    vwap           double precision,
    granularity    text,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_bars_1h_symbol_session_idx
    ON quarantine_bars_1h (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_bars_1h_symbol_ts_idx ON quarantine_bars_1h (symbol, ts);

CREATE TABLE IF NOT EXISTS quarantine_bars_1d (
    ts             timestamptz,
    symbol         text,
    open           double precision,
    high           double precision,
    low            double precision,
    close          double precision,
    volume         bigint,
    trade_count    bigint,
    vwap           double precision,
    granularity    text,
    source         text             NOT NULL,
    session        date             NOT NULL,
    dataset        text             NOT NULL,
    rule           text             NOT NULL,
    detail         text,
    quarantined_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_bars_1d_symbol_session_idx
    ON quarantine_bars_1d (symbol, session);
CREATE INDEX IF NOT EXISTS quarantine_bars_1d_symbol_ts_idx ON quarantine_bars_1d (symbol, ts);
