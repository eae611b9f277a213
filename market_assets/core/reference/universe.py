"""Load an index universe's fetch windows from the lake (index_membership + ticker_history)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_assets.core.reference.pit import MemberWindows, fetch_windows
from market_assets.core.reference.store import ReferenceStore
from market_assets.core.stores.objectstore import open_store

if TYPE_CHECKING:
    from market_assets.core.config import AppConfig


def reference_store(config: AppConfig) -> ReferenceStore:
    """The reference tables of the configured lake."""
    return ReferenceStore(
        open_store(
            config.data_dir, s3_endpoint_url=config.s3_endpoint_url, s3_region=config.s3_region
        )
    )


def load_member_windows(config: AppConfig, index: str, lookback_sessions: int) -> MemberWindows:
    """Fetch windows of `index`'s members (empty until index_membership is built)."""
    store = reference_store(config)
    membership = store.read_derived("index_membership")
    if membership.is_empty():
        return MemberWindows([])
    history = store.read_derived("ticker_history")
    return MemberWindows(
        fetch_windows(membership, index, lookback_sessions, history, config.exchange)
    )
