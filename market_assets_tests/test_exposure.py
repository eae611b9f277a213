"""Secrets and ports the deployment exposes: the DSN password never reaches what Dagster
shows or stores, and docker-compose publishes its ports on this machine only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import DagsterInstance
from dagster._core.remote_representation.external_data import (
    RepositorySnap,
    ResourceConfigEnvVarSnap,
)
from dagster._serdes import serialize_value
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.config import AppConfig
from market_assets.definitions import build_definitions
from market_assets_tests.fixtures.postgres import create_scratch_database, drop_scratch_database

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "only-in-the-environment-7Q"
DSN_ENV = "MARKET_ASSETS_TIMESCALE_DSN"


def test_resource_config_dagster_shows_names_the_dsn_variable_not_the_password(monkeypatch):
    monkeypatch.setenv(DSN_ENV, f"postgresql://market:{PASSWORD}@db.internal:5432/market")
    defs = build_definitions(AppConfig.load(REPO / "configs"))

    # What the webserver serves (resourceDetails, the launchpad's config, job snapshots).
    snap = RepositorySnap.from_def(defs.get_repository_def())

    assert serialize_value(snap).count(PASSWORD) == 0
    (platform,) = [resource for resource in snap.resources if resource.name == "platform"]
    assert platform.configured_values["timescale_dsn"] == ResourceConfigEnvVarSnap(name=DSN_ENV)


@pytest.fixture
def scratch_dsn() -> Iterator[str]:
    dsn = create_scratch_database()
    try:
        yield dsn
    finally:
        drop_scratch_database(dsn)


def test_ingest_with_a_dsn_stores_rows_and_no_password_in_the_instance(
    tmp_path, monkeypatch, scratch_dsn
):
    # The test server trusts local connections: nobody checks the password, the DSN only
    # carries it. Rows go to the database; the instance's files are searched for it.
    dsn = make_conninfo(scratch_dsn, password=PASSWORD)
    assert conninfo_to_dict(dsn)["password"] == PASSWORD
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO / "configs"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARKET_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(DSN_ENV, dsn)

    result = CliRunner().invoke(
        app,
        ["ingest", "--dataset", "bars_1d", "--symbols", "AAPL", "--start", "2024-03-04",
         "--end", "2024-03-09"],
        env={"COLUMNS": "200"},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    with psycopg.connect(scratch_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM bars_1d").fetchone() == (5,)
    with DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        # What the UI shows of the run: its config, tags and (stored compressed) snapshots.
        shown = serialize_value(
            [
                run,
                instance.get_job_snapshot(run.job_snapshot_id),
                instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id),
            ]
        )
    assert shown.count(PASSWORD) == 0
    stored = [path for path in (tmp_path / "home").rglob("*") if path.is_file()]
    assert stored
    assert [path.name for path in stored if PASSWORD.encode() in path.read_bytes()] == []
    assert result.output.count(PASSWORD) == 0


def test_compose_publishes_every_port_on_localhost_only():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())

    published = {
        name: service["ports"]
        for name, service in compose["services"].items()
        if "ports" in service
    }

    assert "webserver" in published
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
