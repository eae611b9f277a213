"""A folder of downloaded Databento DBN files (`.dbn`, `.dbn.zst`) read like the API.

Batch downloads and `get_range(..., path=...)` leave DBN files whose header (the DBN
`Metadata`) says which dataset, schema, symbols and time range they hold. The folder is
searched recursively (batch jobs unpack into one sub-folder per job); only headers are read
to choose the files that can hold a request, and the chosen files are decoded whole and
filtered to the request's symbols and [start, end) by the caller. No API key is needed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from databento import DBNStore

from market_assets.core.providers.databento.decode import dbn_schema

DBN_SUFFIXES = (".dbn", ".dbn.zst")
ALL_SYMBOLS = "ALL_SYMBOLS"
NO_END = 2**64 - 1  # DBN metadata `end` of an open-ended file


@dataclass(frozen=True)
class DbnFile:
    """One DBN file and what its header says it holds."""

    path: Path
    dataset: str
    schema: str | None
    start_ns: int
    end_ns: int
    symbols: frozenset[str]  # requested symbols (ALL_SYMBOLS for a whole-venue file)

    def covers(self, symbols: Iterable[str]) -> bool:
        return ALL_SYMBOLS in self.symbols or not self.symbols.isdisjoint(symbols)


class DbnFolder:
    """The DBN files under one folder; headers are read on every `find`, so new files count."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    def __repr__(self) -> str:
        return f"DbnFolder({str(self.folder)!r})"

    def files(self) -> list[DbnFile]:
        """Every DBN file under the folder, in path order.

        Raises FileNotFoundError naming the folder when it does not exist, and ValueError
        naming the file when a header cannot be read.
        """
        if not self.folder.is_dir():
            raise FileNotFoundError(
                f"DBN folder {self.folder} does not exist; pass the folder holding your "
                "downloaded .dbn / .dbn.zst files"
            )
        paths = sorted(
            path
            for path in self.folder.rglob("*")
            if path.is_file() and path.name.endswith(DBN_SUFFIXES)
        )
        return [_header(path) for path in paths]

    def find(
        self,
        schema: str,
        symbols: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        dataset: str | None = None,
    ) -> list[DbnFile]:
        """Files of `schema` (and `dataset` when given) that may hold `symbols` in [start, end)."""
        lower, upper = _epoch_ns(start), _epoch_ns(end)
        return [
            found
            for found in self.files()
            if found.schema == schema
            and (dataset is None or found.dataset == dataset)
            and found.start_ns < upper
            and (found.end_ns == NO_END or found.end_ns > lower)
            and found.covers(symbols)
        ]


def _header(path: Path) -> DbnFile:
    try:
        store = DBNStore.from_file(path)
    except Exception as exc:  # the client raises BentoError, DBNError or ValueError here
        raise ValueError(f"{path}: not a readable DBN file ({type(exc).__name__}: {exc})") from exc
    metadata = store.metadata
    end = metadata.end if metadata.end is not None else NO_END
    return DbnFile(
        path=path,
        dataset=metadata.dataset,
        schema=dbn_schema(store),
        start_ns=int(metadata.start),
        end_ns=int(end),
        symbols=frozenset(metadata.symbols) | frozenset(metadata.mappings),
    )


def _epoch_ns(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
