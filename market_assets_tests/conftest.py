"""Shared fixtures: real PostgreSQL, a real S3 endpoint (moto server) on loopback."""

pytest_plugins = [
    "market_assets_tests.fixtures.postgres",
    "market_assets_tests.fixtures.s3",
]
