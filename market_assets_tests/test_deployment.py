"""The full-stack files work: dagster.yaml on a real PostgreSQL, workspace and compose wiring."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from psycopg.conninfo import conninfo_to_dict

from market_assets_tests.fixtures.postgres import create_scratch_database, drop_scratch_database

REPO = Path(__file__).resolve().parents[1]


def test_dagster_yaml_gives_a_postgresql_backed_instance(tmp_path):
    dsn = create_scratch_database(prefix="market_assets_dagster")
    try:
        shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
        params = conninfo_to_dict(dsn)
        env = {
            "PATH": "/usr/bin:/bin",
            "DAGSTER_HOME": str(tmp_path),
            "DAGSTER_PG_HOST": params.get("host", "127.0.0.1"),
            "DAGSTER_PG_USER": params.get("user", "postgres"),
            "DAGSTER_PG_PASSWORD": params.get("password", ""),
            "DAGSTER_PG_DB": params["dbname"],
            # the code under test, when it is not the installed checkout
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }
        probe = (
            "from dagster import DagsterInstance\n"
            "i = DagsterInstance.get()\n"
            "i.add_dynamic_partitions('symbols', ['AAPL'])\n"
            "print(type(i).__name__, type(i.run_storage).__name__,"
            " type(i.event_log_storage).__name__, type(i.run_coordinator).__name__,"
            " i.get_dynamic_partitions('symbols'))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        drop_scratch_database(dsn)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [
        "MarketAssetsInstance",
        "PostgresRunStorage",
        "PostgresEventLogStorage",
        "QueuedRunCoordinator",
        "['AAPL']",
    ]


def test_workspace_yaml_names_the_definitions_module():
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())

    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert module == "market_assets.definitions"
    __import__(module)


def test_compose_services_use_pinned_images_and_files_that_exist():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())

    services = compose["services"]
    assert {"timescaledb", "s3", "code", "webserver", "daemon"} <= set(services)
    for name, service in services.items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name} image not pinned"
    for volume in services["timescaledb"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).exists(), source
    assert (REPO / "Dockerfile").exists()
    assert (REPO / "docker/workspace.yaml").exists()
