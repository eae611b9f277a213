-- Dagster's run, event and schedule storage lives beside the market data, in its own database.
CREATE DATABASE dagster;
