"""The stored JSON of a step's asset events, built from one template per batch.

Why: a step of a 1,000-session x 16-bucket run records 16,000 planned events, 16,000
materializations and 16,000 check evaluations. Dagster's `serialize_value` packs each event
recursively in Python (about 0.1-0.3 ms each: the event, its step handle, logging tags, asset
key, metadata entries), and in the S&P 500 history backfill that was about a tenth of the
run's wall time. The events of one batch differ only in their partition key, their metadata
and (check evaluations) the materialization they judged.

How: each batch serializes one template event whose varying fields hold sentinel values, cuts
the template's JSON at those values, and builds every event's JSON by putting the serialized
values of that event (`json.dumps` of the partition key; the metadata serialized once per
distinct metadata; the target materialization) between the cuts. Serialized JSON has sorted
keys, so the text around a field is the same in every event of the batch.

Safety: `serialize_batch` compares its first and last result with `serialize_value` of the same
events and falls back to serializing every event when they differ (a Dagster upgrade that
changes the format costs speed, never correctness). test_event_json.py compares every event
of varied batches with `serialize_value` against the pinned Dagster version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from dagster import AssetCheckEvaluation, AssetKey, AssetMaterialization
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._serdes import serialize_value

log = logging.getLogger(__name__)

PARTITION = "\x00partition\x00"
PARTITION_MARK = json.dumps(PARTITION)  # the sentinel partition as it appears in JSON
SENTINEL_METADATA: Mapping[str, Any] = {"\x00metadata\x00": "\x00"}
SENTINEL_TARGET = AssetCheckEvaluationTargetMaterializationData(
    storage_id=-1, run_id="\x00target\x00", timestamp=-1.0
)
TARGET_MARK = serialize_value(SENTINEL_TARGET)  # the sentinel target in JSON
_METADATA_CACHE_LIMIT = 4096


class TemplateMismatch(ValueError):
    """The template's JSON does not hold a sentinel exactly once."""


class Template:
    """The JSON of one template event, cut at its sentinel values."""

    def __init__(self, text: str, marks: Sequence[str]) -> None:
        found = []
        for index, mark in enumerate(marks):
            if text.count(mark) != 1:
                raise TemplateMismatch(f"sentinel {mark[:40]!r} occurs {text.count(mark)} times")
            found.append((text.index(mark), index, mark))
        found.sort()
        self._order = [index for _, index, _ in found]
        self._pieces: list[str] = []
        position = 0
        for start, _, mark in found:
            self._pieces.append(text[position:start])
            position = start + len(mark)
        self._pieces.append(text[position:])

    def fill(self, values: Sequence[str]) -> str:
        """The template's text with `values[i]` in place of `marks[i]`."""
        parts = [self._pieces[0]]
        for piece, index in zip(self._pieces[1:], self._order, strict=True):
            parts.append(values[index])
            parts.append(piece)
        return "".join(parts)


class MetadataJson:
    """The serialized form of metadata as it appears inside a materialization (a list of
    entries) or a check evaluation (a mapping), cached per distinct metadata."""

    def __init__(self, kind: str) -> None:
        self._field = {"materialization": "metadata_entries", "evaluation": "metadata"}[kind]
        self._cache: dict[Hashable, str] = {}

    def _carrier(self, metadata: Mapping[str, Any]) -> Any:
        if self._field == "metadata_entries":
            return AssetMaterialization(
                asset_key=AssetKey("_"), metadata=metadata, partition=PARTITION
            )
        return AssetCheckEvaluation(
            asset_key=AssetKey("_"),
            check_name="_",
            passed=True,
            metadata=metadata,
            partition=PARTITION,
        )

    def text(self, metadata: Mapping[str, Any]) -> str:
        """`"<field>": <metadata>, "partition": ` as it appears before the partition key."""
        # repr, not the value: equal values may serialize differently (0.0 and -0.0).
        key = tuple((name, type(value), repr(value)) for name, value in metadata.items())
        if key in self._cache:
            return self._cache[key]
        serialized = serialize_value(self._carrier(metadata))
        head = f'"{self._field}": '
        start = serialized.index(head)
        end = serialized.rindex(f', "partition": {PARTITION_MARK}')
        text = f'{serialized[start:end]}, "partition": '
        if len(self._cache) < _METADATA_CACHE_LIMIT:
            self._cache[key] = text
        return text


def serialize_batch(
    entries: Sequence[EventLogEntry],
    template: Callable[[], EventLogEntry],
    values: Callable[[int], Sequence[str]],
    marks: Sequence[str],
) -> list[str]:
    """`serialize_value(entry)` of every entry, built from `template()` (the batch's event with
    sentinels) cut at `marks`, filled with `values(i)` for entry i.

    Falls back to `serialize_value` per entry when the template does not hold each mark once
    or the first or last result differs from `serialize_value` of its entry.
    """
    if not entries:
        return []
    try:
        cut = Template(serialize_value(template()), marks)
        built = [cut.fill(values(i)) for i in range(len(entries))]
    except TemplateMismatch as exc:
        log.warning("event JSON template unusable (%s); serializing each event", exc)
        return [serialize_value(entry) for entry in entries]
    for i in {0, len(entries) - 1}:
        if built[i] != serialize_value(entries[i]):
            log.warning("event JSON template differs from Dagster's; serializing each event")
            return [serialize_value(entry) for entry in entries]
    return built


def partition_json(key: str | None) -> str:
    """A partition key (or None) as it appears in serialized JSON."""
    return json.dumps(key)


def target_json(target: AssetCheckEvaluationTargetMaterializationData | None) -> str:
    """A check evaluation's target materialization as it appears in serialized JSON."""
    return "null" if target is None else serialize_value(target)
