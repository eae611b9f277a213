"""A folder of downloaded Databento DBN files (`.dbn`, `.dbn.zst`) read like the API.

Batch downloads and `get_range(..., path=...)` leave DBN files whose header (the DBN
`Metadata`) says which dataset, schema, symbols and time range they hold. The folder is
searched recursively (batch jobs unpack into one sub-folder per job); only headers are read
to choose the files that can hold a request, and the chosen files are decoded whole and
filtered to the request's symbols and [start, end) by the caller. No API key is needed.

Files that are not DBN (`.dbz`, `.frag`, a half-finished download) are never read silently
as something else: they are listed as skipped. When no file fits a request, `explain` says
why in the user's terms: the files are of another Databento dataset, another schema, or do
not cover the symbols or dates. Records keyed by an instrument_id that a file's own
symbology does not map (a whole-venue statistics download) resolve through the `definition`
files of the same dataset in the folder (`definitions`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from databento import DBNStore

from market_assets.core.folders import files_under
from market_assets.core.providers.databento.decode import dbn_schema

DBN_SUFFIXES = (".dbn", ".dbn.zst")
DEFINITION_SCHEMA = "definition"
SHOWN = 5  # file names shown in a message before "and N more"
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
        self.skipped: list[Path] = []  # files under the folder that are not DBN files

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
        every = files_under(self.folder, "*", ValueError)
        paths = [path for path in every if path.name.endswith(DBN_SUFFIXES)]
        self.skipped = [path for path in every if not path.name.endswith(DBN_SUFFIXES)]
        return [_header(path) for path in paths]

    def skipped_note(self) -> str:
        """The skipped files' names (relative to the folder), for notes and messages."""
        names = [str(path.relative_to(self.folder)) for path in self.skipped]
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        return ", ".join(names[:SHOWN]) + more

    def explain(
        self,
        schema: str,
        symbols: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        dataset: str | None,
    ) -> tuple[str, bool]:
        """Why no file fits the request, and whether the cause is the configured dataset
        (the files are of another one) rather than missing data."""
        files = self.files()
        skipped = f"; skipped (not DBN): {self.skipped_note()}" if self.skipped else ""
        of_schema = [f for f in files if f.schema == schema]
        if dataset is not None and of_schema and all(f.dataset != dataset for f in of_schema):
            found = ", ".join(sorted({f.dataset for f in of_schema}))
            return (
                f"the {schema} files in {self.folder} are {found}; the databento provider is "
                f"configured for {dataset} (settings.dataset): configure a provider with "
                f"dataset {found} for them, or point --files at {dataset} files{skipped}",
                True,
            )
        if not of_schema:
            present = sorted({f"{f.dataset} {f.schema or 'mixed'}" for f in files})
            held = f"it holds {', '.join(present)}" if present else "it holds no DBN file"
            return f"no {schema} file in {self.folder} ({held}{skipped})", False
        spans = sorted(
            {
                f"{', '.join(sorted(f.symbols)) or '?'} {_day(f.start_ns)}..{_day(f.end_ns)}"
                for f in of_schema
                if dataset is None or f.dataset == dataset
            }
        )
        return (
            f"no {schema} file in {self.folder} covers {', '.join(symbols)} in "
            f"[{start.isoformat()}, {end.isoformat()}) (files cover: {'; '.join(spans)}"
            f"{skipped})",
            False,
        )

    def definitions(self, dataset: str | None) -> dict[int, str]:
        """instrument_id -> raw_symbol from the folder's definition files (of `dataset`)."""
        symbols: dict[int, str] = {}
        for found in self.files():
            if found.schema != DEFINITION_SCHEMA or (dataset and found.dataset != dataset):
                continue
            records = DBNStore.from_file(found.path).to_ndarray().reshape(-1)
            order = np.argsort(records["ts_recv"], kind="stable")
            for ident, raw in zip(
                records["instrument_id"][order], records["raw_symbol"][order], strict=True
            ):
                symbols[int(ident)] = raw.decode() if isinstance(raw, bytes) else str(raw)
        return symbols

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


def _day(epoch_ns: int) -> str:
    if epoch_ns == NO_END:
        return "open end"
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=epoch_ns // 1000)
    return moment.date().isoformat()


def _epoch_ns(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
