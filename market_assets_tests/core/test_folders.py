"""files_under: what Path.rglob finds, sorted, and an error for a folder it may not read."""

from __future__ import annotations

from pathlib import Path

import pytest

from market_assets.core.folders import files_under


@pytest.mark.parametrize(
    "patterns",
    [["*.txt"], ["nasdaqlisted*.txt", "otherlisted*.txt"], ["b/*.csv"], ["*"], ["nothing*"]],
)
def test_finds_what_rglob_finds_in_path_order(tmp_path: Path, patterns: list[str]) -> None:
    for relative in [
        "nasdaqlisted_2024-03-04.txt",
        "a/otherlisted.txt",
        "a/b/prices.csv",
        "b/top.csv",
        "a/b/c/deep.TXT",
        "z/nasdaqlisted.txt",
    ]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")

    found = files_under(tmp_path, patterns, ValueError)

    expected = sorted({p for pattern in patterns for p in tmp_path.rglob(pattern) if p.is_file()})
    assert found == expected
