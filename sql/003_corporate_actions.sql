-- Corporate actions: splits, cash dividends and symbol changes, one row per
-- (symbol, ex_date, action_type). Columns match market_assets.core.schemas.STORED_ACTION_SCHEMA.
-- A partition is (symbol, ex_date): re-writing it deletes that symbol's actions with that
-- ex-date and COPYs the new ones in one transaction. A plain table (no hypertable): a few rows
-- per symbol per year. `known_at` is when the action was first known (point in time; see
-- docs/data_dictionary.md). Idempotent like every file in sql/.

CREATE TABLE IF NOT EXISTS corporate_actions (
    symbol          text             NOT NULL,
    ex_date         date             NOT NULL,
    action_type     text             NOT NULL,
    ratio           double precision,
    amount          double precision,
    currency        text,
    source          text             NOT NULL,
    new_symbol      text,
    announced       date,
    record_date     date,
    pay_date        date,
    reference_close double precision,
    known_at        timestamptz,
    CONSTRAINT corporate_actions_pkey PRIMARY KEY (symbol, ex_date, action_type),
    CONSTRAINT corporate_actions_type_check
        CHECK (action_type IN ('split', 'dividend', 'symbol_change'))
);
CREATE INDEX IF NOT EXISTS corporate_actions_ex_date_idx ON corporate_actions (ex_date);
