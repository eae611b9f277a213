"""Resources: the platform's configuration, provider registry and stores, built once per run."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from market_assets.core.config import AppConfig
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.timescale import TimescaleStore


class PlatformResource(ConfigurableResource):
    """Where configs live and where data goes. Secrets never pass through here.

    `data_dir` is a local folder or `s3://bucket/prefix`; `timescale_dsn` (optional) turns on
    the TimescaleDB/PostgreSQL store for datasets that list it in configs/datasets.yaml.
    """

    config_dir: str = "configs"
    data_dir: str = "data"
    timescale_dsn: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    _config: AppConfig | None = PrivateAttr(default=None)
    _registry: ProviderRegistry | None = PrivateAttr(default=None)
    _lake: ParquetLake | None = PrivateAttr(default=None)
    _timescale: TimescaleStore | None = PrivateAttr(default=None)

    def app_config(self) -> AppConfig:
        if self._config is None:
            self._config = AppConfig.load(self.config_dir)
        return self._config

    def registry(self) -> ProviderRegistry:
        if self._registry is None:
            config = self.app_config()
            self._registry = ProviderRegistry.from_app_config(config)
        return self._registry

    def lake(self) -> ParquetLake:
        if self._lake is None:
            self._lake = ParquetLake(
                self.data_dir, s3_endpoint_url=self.s3_endpoint_url, s3_region=self.s3_region
            )
        return self._lake

    def timescale(self) -> TimescaleStore | None:
        """The PostgreSQL store, or None when no DSN is configured."""
        if not self.timescale_dsn:
            return None
        if self._timescale is None:
            store = TimescaleStore(self.timescale_dsn)
            store.ensure_schema(self.app_config().timescale_policies)
            self._timescale = store
        return self._timescale

    def teardown_after_execution(self, context) -> None:  # noqa: ANN001 - Dagster signature
        if self._timescale is not None:
            self._timescale.close()
            self._timescale = None
