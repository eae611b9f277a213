"""The coverage report: frames in, Markdown and a heatmap PNG out (no Dagster, no I/O).

Inputs are the stored check results (one row per dataset, symbol, session and rule), the
partitions Dagster recorded as materialized and the check status it recorded per
partition, both already expanded to (dataset, symbol, session). From them:

- coverage by dataset, symbol and month: calendar sessions expected in the covered window,
  sessions materialized, sessions with bars, sessions checked;
- failures by rule, gaps as [start, end) ranges (consecutive missing sessions merged),
  quality scores per partition and per feed (dataset x source x month), quarantine counts.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl

from market_assets.core.calendar import TradingCalendar
from market_assets.core.rules.score import feed_scores

MAX_TABLE_ROWS = 400
MAX_GAP_ROWS = 100
KEYS = ("dataset", "symbol", "session")


@dataclass(frozen=True)
class Coverage:
    """Everything the report shows, as frames (also what `market-assets status` prints)."""

    generated_at: dt.datetime
    summary: pl.DataFrame  # per dataset
    by_month: pl.DataFrame  # per dataset x symbol x month
    failures: pl.DataFrame  # per dataset x rule x severity
    gaps: pl.DataFrame  # dataset, symbol, kind, start, end, missing
    feeds: pl.DataFrame  # per dataset x source x month
    quarantine: pl.DataFrame  # per dataset x symbol
    feed_alert_below: float


def _months(session: pl.Expr) -> pl.Expr:
    return session.dt.strftime("%Y-%m")


def build_coverage(
    results: pl.DataFrame,
    materialized: pl.DataFrame,
    check_status: pl.DataFrame,
    calendar: TradingCalendar,
    feed_alert_below: float,
    now: dt.datetime | None = None,
    calendars: Mapping[str, TradingCalendar] | None = None,
) -> Coverage:
    """Assemble the report's tables.

    `results`: check results table rows (CHECK_RESULT_SCHEMA). `materialized`: dataset,
    symbol, session of every partition Dagster recorded as materialized. `check_status`:
    dataset, symbol, session, status (Dagster's latest check execution status per partition).
    `calendars` gives datasets on another exchange their own calendar (default `calendar`).
    """

    def calendar_of(dataset: str) -> TradingCalendar:
        return (calendars or {}).get(dataset, calendar)

    partitions = (
        results.group_by(KEYS)
        .agg(
            pl.col("rows").first(),
            pl.col("source").first(),
            pl.col("partition_score").first().alias("score"),
            pl.col("quarantined_rows").first(),
            ((~pl.col("passed")) & (pl.col("severity") == "ERROR")).sum().alias("errors"),
            ((~pl.col("passed")) & (pl.col("severity") == "WARN")).sum().alias("warnings"),
        )
        .sort(KEYS)
    )
    stored = pl.concat(
        [partitions.select(KEYS), materialized.select(KEYS)], how="vertical"
    ).unique()
    expected = _expected(stored, calendar_of)
    by_month = _by_month(expected, materialized, partitions, check_status)
    return Coverage(
        generated_at=now or dt.datetime.now(dt.UTC),
        summary=_summary(by_month, check_status),
        by_month=by_month,
        failures=_failures(results),
        gaps=_gaps(results, calendar_of),
        feeds=feed_scores(partitions.filter(pl.col("score").is_not_null())),
        quarantine=partitions.group_by("dataset", "symbol")
        .agg(pl.col("quarantined_rows").sum())
        .filter(pl.col("quarantined_rows") > 0)
        .sort("dataset", "symbol"),
        feed_alert_below=feed_alert_below,
    )


def _expected(stored: pl.DataFrame, calendar_of: Callable[[str], TradingCalendar]) -> pl.DataFrame:
    """Every calendar session between each dataset's first and last stored session, for
    every symbol the dataset holds."""
    if stored.is_empty():
        return pl.DataFrame(
            schema={"dataset": pl.String(), "symbol": pl.String(), "session": pl.Date()}
        )
    frames = []
    for (dataset,), part in stored.partition_by("dataset", as_dict=True).items():
        sessions = calendar_of(dataset).sessions(part["session"].min(), part["session"].max())
        symbols = part.get_column("symbol").unique().sort()
        frames.append(
            pl.DataFrame({"session": sessions}, schema={"session": pl.Date()})
            .join(symbols.to_frame(), how="cross")
            .select(pl.lit(dataset).alias("dataset"), "symbol", "session")
        )
    return pl.concat(frames)


def _by_month(
    expected: pl.DataFrame,
    materialized: pl.DataFrame,
    partitions: pl.DataFrame,
    check_status: pl.DataFrame,
) -> pl.DataFrame:
    flags = (
        expected.join(
            materialized.select(*KEYS, pl.lit(True).alias("materialized")), on=KEYS, how="left"
        )
        .join(
            partitions.select(*KEYS, "rows", "score", "errors", "warnings", "quarantined_rows"),
            on=KEYS,
            how="left",
        )
        .join(check_status.select(*KEYS, "status"), on=KEYS, how="left")
    )
    return (
        flags.with_columns(_months(pl.col("session")).alias("month"))
        .group_by("dataset", "symbol", "month")
        .agg(
            pl.len().alias("expected"),
            pl.col("materialized").fill_null(False).sum().alias("materialized"),
            (pl.col("rows").fill_null(0) > 0).sum().alias("present"),
            pl.col("score").is_not_null().sum().alias("checked"),
            pl.col("score").mean().round(2).alias("score"),
            (pl.col("errors").fill_null(0) > 0).sum().alias("error_partitions"),
            (pl.col("warnings").fill_null(0) > 0).sum().alias("warn_partitions"),
            pl.col("quarantined_rows").fill_null(0).sum().alias("quarantined_rows"),
            (pl.col("materialized").fill_null(False) & pl.col("status").is_null())
            .sum()
            .alias("unchecked_in_dagster"),
        )
        .with_columns(
            (100.0 * pl.col("present") / pl.col("expected")).round(1).alias("coverage_pct")
        )
        .sort("dataset", "symbol", "month")
    )


def _summary(by_month: pl.DataFrame, check_status: pl.DataFrame) -> pl.DataFrame:
    statuses = check_status.group_by("dataset").agg(
        (pl.col("status") == "SUCCEEDED").sum().alias("dagster_passed"),
        (pl.col("status") == "FAILED").sum().alias("dagster_failed"),
    )
    return (
        by_month.group_by("dataset")
        .agg(
            pl.col("symbol").n_unique().alias("symbols"),
            pl.col("month").min().alias("first_month"),
            pl.col("month").max().alias("last_month"),
            pl.col("expected").sum(),
            pl.col("materialized").sum(),
            pl.col("present").sum(),
            pl.col("checked").sum(),
            ((pl.col("score") * pl.col("checked")).sum() / pl.col("checked").sum())
            .round(2)
            .alias("score"),
            pl.col("error_partitions").sum(),
            pl.col("warn_partitions").sum(),
            pl.col("quarantined_rows").sum(),
            pl.col("unchecked_in_dagster").sum(),
        )
        .with_columns(
            (100.0 * pl.col("present") / pl.col("expected")).round(2).alias("coverage_pct")
        )
        .join(statuses, on="dataset", how="left")
        .with_columns(pl.col("dagster_passed").fill_null(0), pl.col("dagster_failed").fill_null(0))
        .sort("dataset")
    )


def _failures(results: pl.DataFrame) -> pl.DataFrame:
    return (
        results.filter(~pl.col("passed"))
        .group_by("dataset", "rule", "severity")
        .agg(
            pl.len().alias("failed_partitions"),
            pl.col("offending_rows").sum(),
            pl.col("symbol").unique().sort().str.join(", ").alias("symbols"),
            pl.col("session").min().alias("first_session"),
            pl.col("session").max().alias("last_session"),
        )
        .sort("severity", "dataset", "rule")
    )


def _gaps(results: pl.DataFrame, calendar_of: Callable[[str], TradingCalendar]) -> pl.DataFrame:
    """Missing sessions merged into [start, end) ranges of consecutive sessions, then the
    intraday gaps recorded by `missing_bars`."""
    schema = {
        "dataset": pl.String(),
        "symbol": pl.String(),
        "kind": pl.String(),
        "start": pl.String(),
        "end": pl.String(),
        "missing": pl.Int64(),
    }
    rows: list[dict[str, object]] = []
    missing = results.filter((pl.col("rule") == "missing_sessions") & ~pl.col("passed"))
    if not missing.is_empty():
        numbered = []
        for (dataset,), part in missing.partition_by("dataset", as_dict=True).items():
            first, last = part["session"].min(), part["session"].max()
            sessions = calendar_of(dataset).sessions(first, last)
            index = {day: i for i, day in enumerate(sessions)}
            numbered.append(
                part.with_columns(
                    pl.col("session")
                    .replace_strict(index, default=None, return_dtype=pl.Int64)
                    .alias("__n")
                )
            )
        runs = (
            pl.concat(numbered)
            .select("dataset", "symbol", "session", "offending_rows", "__n")
            .sort("dataset", "symbol", "session")
            .with_columns(
                ((pl.col("__n") - pl.col("__n").shift(1)).fill_null(0) != 1)
                .or_(pl.col("symbol") != pl.col("symbol").shift(1))
                .or_(pl.col("dataset") != pl.col("dataset").shift(1))
                .fill_null(True)
                .cum_sum()
                .alias("__run")
            )
            .group_by("__run", maintain_order=True)
            .agg(
                pl.col("dataset").first(),
                pl.col("symbol").first(),
                pl.col("session").min().alias("start"),
                pl.col("session").max().alias("last"),
                pl.col("offending_rows").sum().alias("missing"),
            )
        )
        for run in runs.iter_rows(named=True):
            rows.append(
                {
                    "dataset": run["dataset"],
                    "symbol": run["symbol"],
                    "kind": "missing_sessions",
                    "start": run["start"].isoformat(),
                    "end": (run["last"] + dt.timedelta(days=1)).isoformat(),
                    "missing": run["missing"],
                }
            )
    intraday = results.filter((pl.col("rule") == "missing_bars") & ~pl.col("passed"))
    for dataset, symbol, details in intraday.select("dataset", "symbol", "details").iter_rows():
        for gap in json.loads(details).get("gaps", []):
            rows.append(
                {
                    "dataset": dataset,
                    "symbol": symbol,
                    "kind": "missing_bars",
                    "start": gap["start"],
                    "end": gap["end"],
                    "missing": gap["missing"],
                }
            )
    return pl.DataFrame(rows, schema=schema).sort("dataset", "symbol", "start")


def _markdown_table(frame: pl.DataFrame, limit: int = MAX_TABLE_ROWS) -> str:
    if frame.is_empty():
        return "_none_\n"
    shown = frame.head(limit)
    lines = [
        "| " + " | ".join(shown.columns) + " |",
        "|" + "|".join("---" for _ in shown.columns) + "|",
    ]
    for row in shown.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows not shown_")
    return "\n".join(lines) + "\n"


def render_markdown(
    coverage: Coverage, heatmap_name: str | None = None, heatmap_src: str | None = None
) -> str:
    """The report as Markdown (shown in the Dagster UI and written next to the heatmap).

    `heatmap_src` embeds the heatmap as an image (a relative file name, or a `data:` URI so
    the Dagster UI shows it inside the metadata); `heatmap_name` only names the file."""
    feeds = coverage.feeds.with_columns(
        pl.when(pl.col("score") < coverage.feed_alert_below)
        .then(pl.lit("BELOW THRESHOLD"))
        .otherwise(pl.lit(""))
        .alias("alert")
    )
    parts = [
        "# Data coverage and quality\n",
        f"Generated {coverage.generated_at:%Y-%m-%d %H:%M} UTC. Expected sessions are the "
        "exchange sessions between each dataset's first and last stored session; a session "
        "is present when its partition holds bars. Scores: 100 minus 40 per failed ERROR rule "
        "and 10 per failed WARN rule (configs/checks.yaml), averaged.\n",
    ]
    if heatmap_src:
        parts.append(f"![coverage heatmap: symbol x month, coloured by score]({heatmap_src})\n")
    elif heatmap_name:
        parts.append(f"Heatmap (symbol x month, coloured by score): `{heatmap_name}`\n")
    parts += [
        "## Summary by dataset\n",
        _markdown_table(coverage.summary),
        "## Failures by rule\n",
        _markdown_table(coverage.failures),
        "## Gaps\n",
        _markdown_table(coverage.gaps, MAX_GAP_ROWS),
        f"## Quality score per feed (alert below {coverage.feed_alert_below:g})\n",
        _markdown_table(feeds),
        "## Quarantined rows\n",
        _markdown_table(coverage.quarantine),
        "## Coverage by dataset, symbol and month\n",
        _markdown_table(coverage.by_month),
    ]
    return "\n".join(parts)


HEATMAP_CELL = (46, 16)  # pixels per (month, symbol) cell
HEATMAP_MARGIN = 6
HEATMAP_GREY = (204, 204, 204)


def score_colour(score: float | None) -> tuple[int, int, int]:
    """Red (0) through yellow (50) to green (100), the RdYlGn scale's ends and middle; grey
    where nothing was checked."""
    if score is None or math.isnan(score):
        return HEATMAP_GREY
    red, yellow, green = (215, 48, 39), (255, 255, 191), (26, 152, 80)
    share = min(max(score, 0.0), 100.0) / 50.0
    low, high = (red, yellow) if share <= 1 else (yellow, green)
    share = share if share <= 1 else share - 1
    return tuple(round(a + (b - a) * share) for a, b in zip(low, high, strict=True))


def render_heatmap(coverage: Coverage) -> bytes:
    """PNG: one panel per dataset, symbols x months, cells coloured by mean score (0-100,
    red to green) and labelled with coverage %; grey where nothing was checked.

    Drawn with Pillow: a few cells of text need no plotting library, and the PNG stays
    small enough (a few KB) to embed in the coverage_report's metadata."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    data = coverage.by_month
    datasets = data.get_column("dataset").unique().sort().to_list() or ["(no data)"]
    months = data.get_column("month").unique().sort().to_list()
    panels = []
    for dataset in datasets:
        part = data.filter(pl.col("dataset") == dataset)
        symbols = part.get_column("symbol").unique().sort().to_list()
        cells = {
            (symbol, month): (score, pct)
            for symbol, month, score, pct in part.select(
                "symbol", "month", "score", "coverage_pct"
            ).iter_rows()
        }
        panels.append((dataset, symbols, cells))
    label_width = max([60, *(7 * len(s) for _, symbols, _ in panels for s in symbols)])
    cell_w, cell_h = HEATMAP_CELL
    line = cell_h + 2
    width = HEATMAP_MARGIN * 2 + label_width + cell_w * max(len(months), 1)
    width = max(width, 330)
    height = HEATMAP_MARGIN + line * 2  # legend
    height += sum(line * (len(symbols) + 2) for _, symbols, _ in panels)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    y = HEATMAP_MARGIN
    draw.text(
        (HEATMAP_MARGIN, y),
        "quality score: 0 red .. 50 yellow .. 100 green; label: coverage %",
        fill="black",
        font=font,
    )
    y += line
    for step in range(11):
        x = HEATMAP_MARGIN + step * 20
        draw.rectangle((x, y, x + 19, y + cell_h - 4), fill=score_colour(step * 10.0))
    y += line
    for dataset, symbols, cells in panels:
        draw.text((HEATMAP_MARGIN, y), dataset, fill="black", font=font)
        y += line
        left = HEATMAP_MARGIN + label_width
        for column, month in enumerate(months):
            draw.text((left + column * cell_w + 2, y), month, fill="black", font=font)
        y += line
        for symbol in symbols:
            draw.text((HEATMAP_MARGIN, y + 2), symbol, fill="black", font=font)
            for column, month in enumerate(months):
                score, pct = cells.get((symbol, month), (None, None))
                x = left + column * cell_w
                draw.rectangle((x, y, x + cell_w - 2, y + cell_h - 2), fill=score_colour(score))
                if pct is not None:
                    draw.text((x + 4, y + 2), f"{pct:.0f}%", fill="black", font=font)
            y += line
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
