"""Files under a folder, found without losing any silently.

`Path.rglob` skips a sub-folder it may not read and says nothing (Python 3.11), so a vendor
folder with one unreadable sub-folder would look like a folder without those files. Providers
that read a folder of files list it here instead: a folder that cannot be read is an error
naming it.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from market_assets.core.errors import cannot


def files_under(
    folder: Path, patterns: str | Iterable[str], fail: Callable[[str], Exception]
) -> list[Path]:
    """Files under `folder` (any depth) matching one of `patterns` as `Path.rglob` would
    (fnmatch, case sensitive; a pattern with a `/` matches the end of the relative path),
    sorted by path. A folder that cannot be read raises `fail(message)`, the message naming
    that folder and what to do."""
    wanted = [patterns] if isinstance(patterns, str) else list(patterns)
    found: list[Path] = []

    def refuse(exc: OSError) -> None:
        raise fail(cannot("read folder", exc.filename or folder, exc))

    def matches(relative: str, name: str) -> bool:
        return any(
            fnmatch.fnmatchcase(relative, pattern) or fnmatch.fnmatchcase(relative, f"*/{pattern}")
            if "/" in pattern
            else fnmatch.fnmatchcase(name, pattern)
            for pattern in wanted
        )

    for root, folders, names in os.walk(folder, onerror=refuse, followlinks=True):
        folders.sort()
        for name in names:
            path = Path(root, name)
            if matches(path.relative_to(folder).as_posix(), name):
                found.append(path)
    return sorted(found)


def read_text(path: Path, fail: Callable[[str], Exception], **options: str) -> str:
    """`path.read_text(**options)`; a file that cannot be read raises `fail(message)`, the
    message naming it."""
    try:
        return path.read_text(**options)
    except OSError as exc:
        raise fail(cannot("read file", path, exc)) from exc
