"""Quality rules on reference and index-membership snapshots, one verdict per session.

Thresholds come from the `reference` section of configs/checks.yaml:

    reference:
      max_row_count_change: 0.05      # reference snapshot rows vs the previous snapshot
      max_churn: 0.02                 # (added + removed) / previous members, per index
      member_counts: {SP500: {min: 495, max: 510}}

Rules (severity): `empty_snapshot` (ERROR), `row_count_change` (WARN) on `reference`;
`member_count` (ERROR), `duplicate_members` (ERROR: one symbol twice in a day is two
overlapping intervals), `members_resolve` (WARN, with the list: a member that is not a
listed ticker that day, or has no ticker_history interval when no listing snapshot exists;
not judged before ticker_history is first built),
`churn` (WARN) on `index_constituents`; `overlapping_intervals` (ERROR) on index_membership.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_LISTED = 20  # symbols named in one verdict's details


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberCount(_Strict):
    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> MemberCount:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class ReferenceCheckSettings(_Strict):
    """The `reference` section of checks.yaml."""

    max_row_count_change: float = Field(default=0.05, gt=0)
    max_churn: float = Field(default=0.02, gt=0)
    member_counts: dict[str, MemberCount] = Field(
        default_factory=lambda: {"SP500": MemberCount(min=495, max=510)}
    )


@dataclass(frozen=True)
class Verdict:
    """One rule's result on one session (and index)."""

    rule: str
    passed: bool
    severity: str  # ERROR or WARN
    details: dict[str, Any] = field(default_factory=dict)


def _before(days: Sequence[dt.date], day: dt.date) -> dt.date | None:
    """The latest of the sorted `days` strictly before `day`."""
    position = bisect.bisect_left(days, day)
    return days[position - 1] if position else None


def reference_verdicts(
    rows: pl.DataFrame,
    sessions: Sequence[dt.date],
    previous: pl.DataFrame,
    settings: ReferenceCheckSettings,
) -> dict[dt.date, list[Verdict]]:
    """Verdicts per session of stored `reference` rows; `previous` is the stored snapshot
    before the first session (or empty)."""
    counts = dict(previous.group_by("session").len().iter_rows())
    counts.update(dict(rows.group_by("session").len().iter_rows()))
    stored = sorted(counts)
    verdicts: dict[dt.date, list[Verdict]] = {}
    for day in sorted(sessions):
        count = counts.get(day, 0)
        result = [Verdict("empty_snapshot", count > 0, "ERROR", {"rows": count})]
        previous_day = _before(stored, day)
        before = counts.get(previous_day) if previous_day else None
        if count and before:
            change = abs(count - before) / before
            result.append(
                Verdict(
                    "row_count_change",
                    change <= settings.max_row_count_change,
                    "WARN",
                    {"rows": count, "previous_rows": before, "change": round(change, 4)},
                )
            )
        verdicts[day] = result
    return verdicts


def constituent_verdicts(
    rows: pl.DataFrame,
    sessions: Sequence[dt.date],
    previous: pl.DataFrame,
    listings: pl.DataFrame,
    history: pl.DataFrame,
    settings: ReferenceCheckSettings,
) -> dict[dt.date, list[Verdict]]:
    """Verdicts per session (over every index) of stored `index_constituents` rows.

    `previous`: the stored snapshot before the first session; `listings`: reference rows of
    the same sessions (session, symbol); `history`: ticker_history.
    """
    members = pl.concat([previous, rows], how="diagonal_relaxed").select(
        "session", "index", "symbol"
    )
    by_day = {
        key: set(part["symbol"].to_list())
        for key, part in members.partition_by("session", "index", as_dict=True).items()
    }
    duplicated = rows.filter(pl.struct("session", "index", "symbol").is_duplicated())
    listed = {
        day: set(part["symbol"].to_list())
        for (day,), part in listings.partition_by("session", as_dict=True).items()
    }
    indexes = sorted(set(rows["index"].unique().to_list()) | set(settings.member_counts))
    days_by_index = {index: sorted(day for day, idx in by_day if idx == index) for index in indexes}
    verdicts: dict[dt.date, list[Verdict]] = {}
    for day in sorted(sessions):
        result: list[Verdict] = []
        for index in indexes:
            today = by_day.get((day, index), set())
            bounds = settings.member_counts.get(index)
            if bounds is not None:
                result.append(
                    Verdict(
                        "member_count",
                        bounds.min <= len(today) <= bounds.max,
                        "ERROR",
                        {
                            "index": index,
                            "members": len(today),
                            "min": bounds.min,
                            "max": bounds.max,
                        },
                    )
                )
            if not today:
                continue
            twice = duplicated.filter((pl.col("session") == day) & (pl.col("index") == index))
            result.append(
                Verdict(
                    "duplicate_members",
                    twice.is_empty(),
                    "ERROR",
                    {
                        "index": index,
                        "symbols": sorted(set(twice["symbol"].to_list()))[:MAX_LISTED],
                    },
                )
            )
            result.append(_resolve(index, day, today, listed.get(day), history))
            earlier = _before(days_by_index[index], day)
            if earlier is not None:
                before = by_day[(earlier, index)]
                added, removed = sorted(today - before), sorted(before - today)
                churn = (len(added) + len(removed)) / max(len(before), 1)
                result.append(
                    Verdict(
                        "churn",
                        churn <= settings.max_churn,
                        "WARN",
                        {
                            "index": index,
                            "previous_session": earlier.isoformat(),
                            "added": added[:MAX_LISTED],
                            "removed": removed[:MAX_LISTED],
                            "churn": round(churn, 4),
                        },
                    )
                )
        verdicts[day] = result
    return verdicts


def _resolve(
    index: str,
    day: dt.date,
    members: set[str],
    listed: set[str] | None,
    history: pl.DataFrame,
) -> Verdict:
    """Members must be listed that day (when a listing snapshot exists), else have a
    ticker_history interval covering the day."""
    if listed is not None:
        missing = sorted(members - listed)
        against = "listing snapshot"
    elif history.is_empty():
        return Verdict(
            "members_resolve",
            True,
            "WARN",
            {"index": index, "against": "ticker_history not built yet: not judged"},
        )
    else:
        valid = history.filter(
            (pl.col("valid_from") <= day)
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") > day))
        )
        missing = sorted(members - set(valid["symbol"].to_list()))
        against = "ticker_history"
    return Verdict(
        "members_resolve",
        not missing,
        "WARN",
        {
            "index": index,
            "against": against,
            "unresolved": len(missing),
            "symbols": missing[:MAX_LISTED],
        },
    )


def overlapping_intervals(membership: pl.DataFrame) -> pl.DataFrame:
    """Rows of index_membership whose interval overlaps the next one of the same index and
    symbol (none may)."""
    ordered = membership.sort("index", "symbol", "start").with_columns(
        pl.col("start").shift(-1).over("index", "symbol").alias("next_start")
    )
    return ordered.filter(
        pl.col("next_start").is_not_null()
        & (pl.col("end").is_null() | (pl.col("end") > pl.col("next_start")))
    )
