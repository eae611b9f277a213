"""Reference data and index membership, point in time.

Two stored snapshot tables (one partition per session) and two interval tables derived from
them:

- `reference`: the day's ticker metadata (nasdaq_trader listings + SEC CIKs), `schemas.py`.
- `index_constituents`: the day's members of each index (sp500 sources).
- `ticker_history`: every ticker of every security with dates (`securities.py`).
- `index_membership`: membership intervals per index, symbol and security (`intervals.py`).

Point-in-time universes (`pit.py`) turn membership intervals into the (symbol, sessions) a
backfill fetches. Nothing here imports Dagster.
"""
