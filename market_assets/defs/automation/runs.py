"""Ranged run requests: one run per rectangle of sessions x contiguous symbol keys.

Every request carries the deferred-events tag: its steps record their partitions' events in
batches (defs/events.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from dagster import AssetKey, RunRequest

from market_assets.defs.events import DEFERRED_TAGS
from market_assets.defs.partitions import contiguous_blocks, multi_key

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: dt.date, last: dt.date, first_key: str, last_key: str) -> dict[str, str]:
    """Run tags selecting the rectangle [first, last] x [first_key, last_key]."""
    return {
        RANGE_START_TAG: multi_key(first, first_key),
        RANGE_END_TAG: multi_key(last, last_key),
    }


def session_chunks(sessions: Sequence[dt.date], size: int) -> list[tuple[dt.date, dt.date]]:
    """Split sorted sessions into (first, last) chunks of at most `size` sessions."""
    ordered = sorted(sessions)
    return [
        (ordered[i], ordered[min(i + size, len(ordered)) - 1]) for i in range(0, len(ordered), size)
    ]


def rectangle_run_requests(
    assets: Sequence[AssetKey],
    sessions: Sequence[dt.date],
    symbol_keys: Sequence[str],
    registered_keys: Sequence[str],
    sessions_per_run: int,
    tags: dict[str, str] | None = None,
) -> list[RunRequest]:
    """Run requests covering sessions x symbol_keys, a chunk of sessions per run."""
    requests: list[RunRequest] = []
    names = ",".join(a.to_user_string() for a in assets)
    for first_key, last_key in contiguous_blocks(symbol_keys, registered_keys):
        for first, last in session_chunks(sessions, sessions_per_run):
            run_tags = {
                **DEFERRED_TAGS,
                **(tags or {}),
                **range_tags(first, last, first_key, last_key),
            }
            requests.append(
                RunRequest(
                    run_key=f"{first}:{last}:{first_key}:{last_key}:{names}",
                    asset_selection=list(assets),
                    tags=run_tags,
                )
            )
    return requests
