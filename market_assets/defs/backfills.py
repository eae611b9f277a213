"""Backfills of session x symbol key assets launched from the Dagster UI or GraphQL.

Two things Dagster 1.13 does with such backfills are replaced here, in the processes that do
them (the webserver and the backfill daemon), by setting the names Dagster calls (module
functions and methods of Dagster internals, each checked against dagster 1.13.x and its
signature). Those processes import no user code: they load this module with the instance
(`MarketAssetsInstance`, defs/instance.py, named in dagster.yaml).

1. Runs as rectangles. The daemon turns the partitions it is about to request into runs with
   `build_run_requests_with_backfill_policies`
   (dagster/_core/definitions/automation_tick_evaluation_context.py). For a
   MultiPartitionsDefinition it first splits the keys into ranges along ONE dimension
   (`DefaultPartitionsSubset.get_partition_key_ranges` groups the keys by the dimension with
   fewer selected keys and makes ranges of the other), then cuts each range into runs of
   `max_partitions_per_run`. So 5 sessions x 3 symbols became 3 runs (one per symbol), and
   250 sessions x 500 symbols 250 runs (one per session); no partitions definition, key order
   or BackfillPolicy changes that. `rectangle_backfill_run_requests` replaces it (the name
   imported into `dagster._core.execution.asset_backfill`): the partitions of assets
   partitioned by session x symbol key with a backfill policy become rectangles, a contiguous
   block of symbol keys (registered order, the order of Dagster's ranges) x a contiguous range
   of at most `max_partitions_per_run` sessions (our policies count sessions), covering exactly
   the requested keys; each is a run request like Dagster's own ranged ones (range tags
   `dagster/asset_partition_range_start/end`, the assets and their checks) plus the
   deferred-events tag, so its steps record their events in batches (defs/events.py) like the
   CLI's runs. Every other asset partition goes to Dagster's own function, unchanged. The
   daemon then does the rest as usual: it records the requested subset from the range tags (a
   2-D range is the rectangle: `get_entity_subset_in_range`), counts the materializations of
   runs tagged with the backfill id, marks the ranges of failed or canceled runs failed,
   retries, cancels and shows it all in the UI.

2. Checking partitions without listing every one. Launching a backfill
   (`assert_valid_asset_partition_backfill` in the webserver, through
   `AssetGraphView.get_subset_not_in_graph`) and every daemon iteration
   (`_check_target_partitions_subset_is_valid`) check that the targeted keys exist by
   subtracting `partitions_def.subset_with_all_partitions()`; and `IdentityPartitionMapping`
   maps keys between two different definitions (bars_1d -> options_chains, which starts
   later) by intersecting with `get_partition_keys()`. For ~4,500 sessions x 500 symbol keys
   each lists 2.2 million MultiPartitionKey objects: a one-symbol history took 22 s and 2 GB
   in the webserver, before any run. For MultiPartitionsDefinitions the replacements give the
   same answers (and raise the same errors) from `valid_partition_keys`, which checks each
   dimension against only the keys named: a dynamic dimension with one query, a time window
   against its key list (its `has_partition_key` costs ~10 ms a key here).

Where Dagster is not 1.13.x or a replaced function's signature changed, nothing is replaced
(a warning says so) and Dagster behaves as shipped: correct, with more runs and more memory.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster
from dagster import (
    AssetKey,
    BackfillPolicy,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    PartitionsDefinition,
    RunRequest,
    TimeWindowPartitionsDefinition,
)

# Dagster internals (dagster pinned to 1.13.* in pyproject.toml): what the replaced functions
# take, return and raise.
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.asset_graph_view.entity_subset import EntitySubset, _ValidatedEntitySubsetValue
from dagster._core.definitions.backfill_policy import BackfillPolicyType
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.definitions.partitions.context import (
    partition_loading_context,
    use_partition_loading_context,
)
from dagster._core.definitions.partitions.mapping import IdentityPartitionMapping
from dagster._core.definitions.partitions.mapping.partition_mapping import UpstreamPartitionsResult
from dagster._core.definitions.partitions.subset import DefaultPartitionsSubset
from dagster._core.definitions.partitions.utils.multi import MULTIPARTITION_KEY_DELIMITER
from dagster._core.errors import DagsterDefinitionChangedDeserializationError
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from market_assets.defs.events import DEFERRED_TAGS

log = logging.getLogger(__name__)

DAGSTER_SERIES = "1.13."
"""The Dagster minor whose internals this module replaces."""

DAGSTER_ORIGINAL = "_market_assets_replaces"
"""Attribute of each replacement holding the Dagster function it replaced."""

DagsterPlanner = Callable[[Iterable[AssetKeyPartitionKey], Any, Any], Sequence[RunRequest]]


@dataclass(frozen=True, order=True)
class Rectangle:
    """Sessions [first_session, last_session] x symbol keys [first_key, last_key], inclusive,
    in partition order."""

    first_session: str
    last_session: str
    first_key: str
    last_key: str

    def range_tags(self) -> dict[str, str]:
        """Dagster's range tags selecting this rectangle (a 2-D partition key range; key
        strings are `<session>|<symbol key>`, Dagster's dimension order by name)."""
        return {
            ASSET_PARTITION_RANGE_START_TAG: f"{self.first_session}|{self.first_key}",
            ASSET_PARTITION_RANGE_END_TAG: f"{self.last_session}|{self.last_key}",
        }


def _index_runs(indexes: Iterable[int], size: float) -> list[tuple[int, int]]:
    """Indexes as sorted (first, last) runs of consecutive values, each at most `size` long."""
    runs: list[tuple[int, int]] = []
    for index in sorted(set(indexes)):
        if runs and index == runs[-1][1] + 1 and index - runs[-1][0] < size:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def _cover(
    pairs: Iterable[tuple[int, int]], along_size: float, across_size: float
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Exact cover of (along, across) index pairs by ((along run), (across run)) rectangles:
    the `across` values requested for the same set of `along` values are cut into runs of at
    most `across_size` consecutive values, and that set into runs of at most `along_size`."""
    along_by_across: dict[int, set[int]] = defaultdict(set)
    for along, across in pairs:
        along_by_across[across].add(along)
    across_by_alongs: dict[frozenset[int], list[int]] = defaultdict(list)
    for across, alongs in along_by_across.items():
        across_by_alongs[frozenset(alongs)].append(across)
    return [
        (along_run, across_run)
        for alongs, acrosses in across_by_alongs.items()
        for across_run in _index_runs(acrosses, across_size)
        for along_run in _index_runs(alongs, along_size)
    ]


def cover_with_rectangles(
    keys: Iterable[tuple[str, str]],
    session_order: Sequence[str],
    symbol_key_order: Sequence[str],
    sessions_per_run: float,
) -> list[Rectangle]:
    """Rectangles that cover exactly these (session, symbol key) partitions, each key once,
    each at most `sessions_per_run` sessions long.

    Contiguity follows `session_order` (the asset's session keys: a weekend or a holiday does
    not split a range) and `symbol_key_order` (the registered order of the `symbols`
    partitions). Symbol keys requested for the same sessions share rectangles, so sessions x
    a contiguous block of keys takes ceil(sessions / sessions_per_run) rectangles. For a
    ragged selection the other grouping (sessions requested for the same keys) is tried too,
    and the one with fewer rectangles wins. Raises KeyError for a key not in either order.
    """
    session_index = {session: i for i, session in enumerate(session_order)}
    key_index = {key: i for i, key in enumerate(symbol_key_order)}
    pairs = [(session_index[session], key_index[key]) for session, key in keys]
    key_blocks = _cover(pairs, sessions_per_run, math.inf)
    session_blocks = [
        (sessions, symbol_keys)
        for symbol_keys, sessions in _cover([(k, s) for s, k in pairs], math.inf, sessions_per_run)
    ]
    return sorted(
        Rectangle(
            session_order[sessions[0]],
            session_order[sessions[1]],
            symbol_key_order[symbol_keys[0]],
            symbol_key_order[symbol_keys[1]],
        )
        for sessions, symbol_keys in min(key_blocks, session_blocks, key=len)
    )


def session_dimension(
    partitions_def: PartitionsDefinition | None,
) -> TimeWindowPartitionsDefinition | None:
    """The sessions dimension of a session x symbol key partitions definition
    (defs/partitions.py `session_symbol_partitions`); None for any other definition."""
    # Imported here: defs/partitions.py loads the exchange calendars, and the webserver, which
    # imports this module at start, never plans a backfill.
    from market_assets.defs.partitions import (
        DATE_DIMENSION,
        SYMBOL_DIMENSION,
        SYMBOLS_PARTITION_NAME,
    )

    if not isinstance(partitions_def, MultiPartitionsDefinition):
        return None
    dims = {d.name: d.partitions_def for d in partitions_def.partitions_defs}
    sessions, symbols = dims.get(DATE_DIMENSION), dims.get(SYMBOL_DIMENSION)
    if (
        isinstance(sessions, TimeWindowPartitionsDefinition)
        and isinstance(symbols, DynamicPartitionsDefinition)
        and symbols.name == SYMBOLS_PARTITION_NAME
    ):
        return sessions
    return None


def _sessions_per_run(policy: BackfillPolicy) -> float:
    if policy.policy_type == BackfillPolicyType.SINGLE_RUN:
        return math.inf
    return policy.max_partitions_per_run or math.inf


def rectangle_backfill_run_requests(
    asset_partitions: Iterable[AssetKeyPartitionKey],
    asset_graph: Any,
    dynamic_partitions_store: Any,
    dagster_planner: DagsterPlanner,
) -> list[RunRequest]:
    """Run requests for the asset partitions a backfill iteration requests: rectangles for
    session x symbol key assets with a backfill policy, `dagster_planner` (Dagster's
    `build_run_requests_with_backfill_policies`, same arguments) for the rest.

    Assets are grouped as Dagster groups them (same partitions definition, same requested
    keys, same policy), so an asset and the derived assets it feeds share runs. Called by the
    daemon inside its partition loading context (the backfill's evaluation time).
    """
    from market_assets.defs.partitions import SYMBOLS_PARTITION_NAME

    rectangular: dict[AssetKey, bool] = {}
    ours: dict[AssetKey, set[str]] = defaultdict(set)
    others: list[AssetKeyPartitionKey] = []
    for asset_partition in asset_partitions:
        asset_key = asset_partition.asset_key
        if asset_key not in rectangular:
            node = asset_graph.get(asset_key)
            rectangular[asset_key] = (
                node.backfill_policy is not None
                and session_dimension(node.partitions_def) is not None
            )
        if rectangular[asset_key] and asset_partition.partition_key is not None:
            ours[asset_key].add(asset_partition.partition_key)
        else:
            others.append(asset_partition)

    groups: dict[tuple[Any, frozenset[str], BackfillPolicy], list[AssetKey]] = defaultdict(list)
    for asset_key, keys in ours.items():
        node = asset_graph.get(asset_key)
        groups[(node.partitions_def, frozenset(keys), node.backfill_policy)].append(asset_key)

    requests: list[RunRequest] = []
    for (partitions_def, keys, policy), asset_keys in groups.items():
        session_order = session_dimension(partitions_def).get_partition_keys()
        symbol_key_order = dynamic_partitions_store.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
        pairs = [(session, key) for session, _, key in (k.partition("|") for k in keys)]
        try:
            rectangles = cover_with_rectangles(
                pairs, session_order, symbol_key_order, _sessions_per_run(policy)
            )
        except KeyError:
            # A key the backfill holds that the definitions no longer have: Dagster decides.
            others.extend(AssetKeyPartitionKey(a, k) for a in asset_keys for k in keys)
            continue
        check_keys = list(asset_graph.get_check_keys_for_assets(set(asset_keys)))
        requests.extend(
            RunRequest(
                asset_selection=list(asset_keys),
                asset_check_keys=check_keys,
                tags={**DEFERRED_TAGS, **rectangle.range_tags()},
            )
            for rectangle in rectangles
        )
    if others:
        requests.extend(dagster_planner(others, asset_graph, dynamic_partitions_store))
    return requests


KEY_LIST_ABOVE = 32
"""From this many keys of a time window dimension, check them against its key list."""


def _valid_in_dimension(dimension: PartitionsDefinition, keys: set[str]) -> set[str]:
    # TimeWindowPartitionsDefinition.has_partition_key (what Dagster's own
    # filter_valid_partition_keys does per key) costs ~10 ms a key for our sessions (its
    # hash is its repr, with every holiday); listing its ~4,500 keys costs ~0.5 s once.
    if isinstance(dimension, TimeWindowPartitionsDefinition) and len(keys) > KEY_LIST_ABOVE:
        return keys & set(dimension.get_partition_keys())
    return {str(key) for key in dimension.filter_valid_partition_keys(keys)}


def valid_partition_keys(
    partitions_def: MultiPartitionsDefinition, keys: Iterable[str]
) -> set[str]:
    """The `keys` that are partitions of `partitions_def` now, in the current partition
    loading context: the same answer as `key in partitions_def.get_partition_keys()`, found
    by checking each dimension against the keys named (a dynamic dimension: one query)
    instead of listing every combination of both dimensions."""
    # Key strings join the dimensions' keys in name order with "|"
    # (MultiPartitionsDefinition sorts its dimensions by name).
    split = {str(key): str(key).split(MULTIPARTITION_KEY_DELIMITER) for key in keys}
    dimensions = [d.partitions_def for d in partitions_def.partitions_defs]
    split = {key: parts for key, parts in split.items() if len(parts) == len(dimensions)}
    valid = [
        _valid_in_dimension(dimension, {parts[i] for parts in split.values()})
        for i, dimension in enumerate(dimensions)
    ]
    return {
        key
        for key, parts in split.items()
        if all(p in v for p, v in zip(parts, valid, strict=True))
    }


def _replace(owner: Any, name: str, build: Callable[[Any], Any], parameters: list[str]) -> bool:
    """Replace `owner.name` with `build(current)` once, if Dagster is 1.13.x and the current
    function still takes `parameters`; True when replaced (now or before)."""
    current = getattr(owner, name)
    if hasattr(current, DAGSTER_ORIGINAL):
        return True
    if not dagster.__version__.startswith(DAGSTER_SERIES) or (
        list(inspect.signature(current).parameters) != parameters
    ):
        log.warning(
            "market_assets: Dagster %s is not the %sx this project replaces %s for; "
            "session x symbol backfills are planned and validated as Dagster ships them",
            dagster.__version__,
            DAGSTER_SERIES,
            name,
        )
        return False
    replacement = build(current)
    setattr(replacement, DAGSTER_ORIGINAL, current)
    setattr(owner, name, replacement)
    return True


def _rectangle_planner(dagster_planner: DagsterPlanner) -> DagsterPlanner:
    def build_run_requests_with_backfill_policies(
        asset_partitions: Iterable[AssetKeyPartitionKey],
        asset_graph: Any,
        dynamic_partitions_store: Any,
    ) -> Sequence[RunRequest]:
        return rectangle_backfill_run_requests(
            asset_partitions, asset_graph, dynamic_partitions_store, dagster_planner
        )

    return build_run_requests_with_backfill_policies


def _launch_validation(dagster_method: Callable[..., EntitySubset]) -> Callable[..., EntitySubset]:
    @use_partition_loading_context
    def get_subset_not_in_graph(
        self: AssetGraphView, *, key: Any, candidate_subset: EntitySubset
    ) -> EntitySubset:
        partitions_def = self._get_partitions_def(key)
        value = candidate_subset.get_internal_subset_value()
        if not (
            isinstance(partitions_def, MultiPartitionsDefinition)
            and isinstance(value, DefaultPartitionsSubset)
        ):
            return dagster_method(self, key=key, candidate_subset=candidate_subset)
        keys = {str(k) for k in value.get_partition_keys()}
        missing = keys - valid_partition_keys(partitions_def, keys)
        return EntitySubset(
            self, key=key, value=_ValidatedEntitySubsetValue(DefaultPartitionsSubset(missing))
        )

    return get_subset_not_in_graph


def _iteration_validation(dagster_check: Callable[..., None]) -> Callable[..., None]:
    def _check_target_partitions_subset_is_valid(
        asset_key: AssetKey,
        asset_graph: Any,
        target_partitions_subset: Any,
        instance_queryer: Any,
    ) -> None:
        partitions_def = (
            asset_graph.get(asset_key).partitions_def if asset_graph.has(asset_key) else None
        )
        if not (
            isinstance(partitions_def, MultiPartitionsDefinition)
            and isinstance(target_partitions_subset, DefaultPartitionsSubset)
        ):
            dagster_check(asset_key, asset_graph, target_partitions_subset, instance_queryer)
            return
        with partition_loading_context(dynamic_partitions_store=instance_queryer):
            keys = {str(k) for k in target_partitions_subset.get_partition_keys()}
            removed = keys - valid_partition_keys(partitions_def, keys)
        if removed:
            raise DagsterDefinitionChangedDeserializationError(
                f"Targeted partitions for asset {asset_key} have been removed since this "
                f"backfill was stored. The following partitions were removed: {sorted(removed)}"
            )

    return _check_target_partitions_subset_is_valid


def _identity_downstream(dagster_method: Callable[..., Any]) -> Callable[..., Any]:
    def get_downstream_partitions_for_partitions(
        self: IdentityPartitionMapping,
        upstream_partitions_subset: Any,
        upstream_partitions_def: Any,
        downstream_partitions_def: Any,
        current_time: Any = None,
        dynamic_partitions_store: Any = None,
    ) -> Any:
        if not (
            isinstance(upstream_partitions_def, MultiPartitionsDefinition)
            and isinstance(downstream_partitions_def, MultiPartitionsDefinition)
            and upstream_partitions_def != downstream_partitions_def
            and upstream_partitions_subset is not None
        ):
            return dagster_method(
                self,
                upstream_partitions_subset,
                upstream_partitions_def,
                downstream_partitions_def,
                current_time,
                dynamic_partitions_store,
            )
        # Dagster: the upstream keys that are also downstream keys.
        with partition_loading_context(current_time, dynamic_partitions_store):
            keys = valid_partition_keys(
                downstream_partitions_def, upstream_partitions_subset.get_partition_keys()
            )
            return downstream_partitions_def.empty_subset().with_partition_keys(list(keys))

    return get_downstream_partitions_for_partitions


def _identity_upstream(dagster_method: Callable[..., Any]) -> Callable[..., Any]:
    def get_upstream_mapped_partitions_result_for_partitions(
        self: IdentityPartitionMapping,
        downstream_partitions_subset: Any,
        downstream_partitions_def: Any,
        upstream_partitions_def: Any,
        current_time: Any = None,
        dynamic_partitions_store: Any = None,
    ) -> UpstreamPartitionsResult:
        if not (
            isinstance(upstream_partitions_def, MultiPartitionsDefinition)
            and isinstance(downstream_partitions_def, MultiPartitionsDefinition)
            and upstream_partitions_def != downstream_partitions_def
            and downstream_partitions_subset is not None
        ):
            return dagster_method(
                self,
                downstream_partitions_subset,
                downstream_partitions_def,
                upstream_partitions_def,
                current_time,
                dynamic_partitions_store,
            )
        # Dagster: the downstream keys that are upstream keys, and those that are not.
        with partition_loading_context(current_time, dynamic_partitions_store):
            keys = {str(k) for k in downstream_partitions_subset.get_partition_keys()}
            upstream = valid_partition_keys(upstream_partitions_def, keys)
            return UpstreamPartitionsResult(
                partitions_subset=upstream_partitions_def.subset_with_partition_keys(
                    list(upstream)
                ),
                required_but_nonexistent_subset=DefaultPartitionsSubset(keys - upstream),
            )

    return get_upstream_mapped_partitions_result_for_partitions


def install_backfill_replacements() -> bool:
    """Install both replacements (module docstring) in this process, once; True when all are
    in place, False when this Dagster is not 1.13.x or changed (a warning says which)."""
    from dagster._core.execution import asset_backfill

    return all(
        [
            _replace(
                asset_backfill,
                "build_run_requests_with_backfill_policies",
                _rectangle_planner,
                ["asset_partitions", "asset_graph", "dynamic_partitions_store"],
            ),
            _replace(
                AssetGraphView,
                "get_subset_not_in_graph",
                _launch_validation,
                ["self", "key", "candidate_subset"],
            ),
            _replace(
                asset_backfill,
                "_check_target_partitions_subset_is_valid",
                _iteration_validation,
                ["asset_key", "asset_graph", "target_partitions_subset", "instance_queryer"],
            ),
            _replace(
                IdentityPartitionMapping,
                "get_downstream_partitions_for_partitions",
                _identity_downstream,
                [
                    "self",
                    "upstream_partitions_subset",
                    "upstream_partitions_def",
                    "downstream_partitions_def",
                    "current_time",
                    "dynamic_partitions_store",
                ],
            ),
            _replace(
                IdentityPartitionMapping,
                "get_upstream_mapped_partitions_result_for_partitions",
                _identity_upstream,
                [
                    "self",
                    "downstream_partitions_subset",
                    "downstream_partitions_def",
                    "upstream_partitions_def",
                    "current_time",
                    "dynamic_partitions_store",
                ],
            ),
        ]
    )
