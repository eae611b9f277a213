"""Shared fixtures: real PostgreSQL, a real S3 endpoint (moto server) on loopback."""

import pytest
from dagster._core.storage.defs_state.base import set_defs_state_storage

pytest_plugins = [
    "market_assets_tests.fixtures.postgres",
    "market_assets_tests.fixtures.s3",
]


@pytest.fixture(autouse=True)
def _isolated_dagster_defs_state():
    """Start every test with no Dagster defs-state storage in context.

    Dagster keeps the current instance's defs-state storage in a context variable; a test
    that entered (and closed) an instance could otherwise leave it behind for the next test.
    """
    with set_defs_state_storage(None):
        yield
