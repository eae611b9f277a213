"""market-assets: market data as Dagster software-defined assets."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from market_assets.query import MarketData

__all__ = ["MarketData"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported lazily so `import market_assets.core...` stays light.
    if name == "MarketData":
        from market_assets.query import MarketData

        return MarketData
    raise AttributeError(name)
