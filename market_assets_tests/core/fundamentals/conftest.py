"""Real SEC companyfacts (SNOW: us-gaap; LPA: IFRS-only) placed into every session."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.fundamentals.companyfacts import parse_companyfacts
from market_assets.core.fundamentals.config import FundamentalsConfig, load_fundamentals_config
from market_assets.core.fundamentals.ingest import place_facts
from market_assets_tests.realdata import require

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.fixture(scope="session")
def fields() -> FundamentalsConfig:
    return load_fundamentals_config(REPO_CONFIGS)


def real_facts(symbol: str, fields: FundamentalsConfig) -> pl.DataFrame:
    """Every fact of the real file, placed as the ingest places them (all sessions)."""
    path = require(f"sec/{symbol.lower()}_companyfacts.json")
    raw = parse_companyfacts(json.loads(path.read_bytes()), symbol, "sec_edgar", str(path))
    sessions = get_calendar().sessions("2009-01-02", "2026-12-31")
    placed, _ = place_facts(raw, [(symbol, day) for day in sessions], fields)
    return placed


@pytest.fixture(scope="session")
def snow(fields) -> pl.DataFrame:
    return real_facts("SNOW", fields)


@pytest.fixture(scope="session")
def lpa(fields) -> pl.DataFrame:
    return real_facts("LPA", fields)
