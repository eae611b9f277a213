"""Byte-level file access for the Parquet lake: a local folder or an S3 prefix.

Both stores offer the same small contract, so the lake's read-modify-write loop is written once:

- `get(path)` returns the bytes and a version token (None when the file does not exist);
- `put(path, data, expected_version=...)` replaces the file atomically, and only if it is still
  at `expected_version` (`ANY_VERSION` skips the check; None means "must not exist yet"),
  raising `VersionConflict` otherwise;
- `locked(path)` serialises writers of one file: on local disk an `fcntl` lock on one byte
  (picked by hashing the path) of the single lock file `.lake.lock` at the root, so nothing is
  left beside the data files; nothing on S3, where conditional writes (If-Match /
  If-None-Match) do the job.

Paths are relative to the store root and built from the lake layout; reads never list. Only
compaction lists the one folder of the span it compacts (`list_names`).

A local write goes through a temp file beside its target (`.{name}.{random}.tmp`). A process
killed mid-write leaves it behind; the next write into that folder removes temp files older
than STALE_TEMP_SECONDS (no live writer takes that long to write one file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from market_assets.core.errors import StoreError, cannot


class _AnyVersion:
    def __repr__(self) -> str:
        return "ANY_VERSION"


ANY_VERSION: Final = _AnyVersion()
"""Pass as `expected_version` to write whatever the current state of the file is."""

Version = str | None | _AnyVersion

S3_IO_THREADS = 16
LOCK_TIMEOUT_SECONDS = 120.0
LOCK_FILE = ".lake.lock"
LOCK_STRIPES = 1 << 16  # bytes of the lock file: two paths share a lock 1 time in 65,536
STALE_TEMP_SECONDS = 3600.0


class VersionConflict(StoreError):
    """The file changed between read and write; re-read it and try again."""


class ObjectStore(Protocol):
    """What the lake needs from a storage backend."""

    def uri(self, path: str) -> str:
        """Full local path or s3:// URI of `path`, for display and logs."""
        ...

    def get(self, path: str) -> tuple[bytes | None, str | None]:
        """Bytes and version of a file, or (None, None) when it does not exist."""
        ...

    def read_sources(self, paths: Sequence[str]) -> list[str | bytes]:
        """What polars should read for the files of `paths` that exist, in the given order."""
        ...

    def snapshot(self, paths: Sequence[str]) -> list[tuple[str | bytes | None, str | None]]:
        """(what polars should read, version) of each of `paths`; (None, None) if absent.

        On S3 the source is the object's bytes (a snapshot); on local disk it is the file's
        path, so a reader compares `versions` afterwards to know it read what it looked at.
        """
        ...

    def versions(self, paths: Sequence[str]) -> list[str | None]:
        """Current version of each of `paths` (None where absent)."""
        ...

    @property
    def snapshots(self) -> bool:
        """Whether `snapshot` returns the files' bytes (then nothing needs re-checking)."""
        ...

    def list_names(self, folder: str) -> list[str]:
        """Names of the files and folders directly inside `folder` ([] when it is absent)."""
        ...

    def prune_folder(self, folder: str) -> None:
        """Remove `folder` if it is empty (local disk; S3 has no folders)."""
        ...

    def holds_any(self, folder: str) -> bool:
        """Whether anything may be stored under `folder` (False only when nothing is)."""
        ...

    def put(self, path: str, data: bytes, expected_version: Version = ANY_VERSION) -> None:
        """Atomically replace `path` with `data` if it is still at `expected_version`."""
        ...

    def delete(self, path: str, expected_version: Version = ANY_VERSION) -> None:
        """Remove `path` (no error if absent) if it is still at `expected_version`."""
        ...

    def exists(self, path: str) -> bool:
        """Whether `path` exists."""
        ...

    def locked(self, path: str) -> contextlib.AbstractContextManager[object]:
        """Context that keeps other writers of `path` out, where the backend needs one."""
        ...


class _StripedLock:
    """Exclusive locks on the bytes of one lock file: one byte per stripe of paths.

    `fcntl` record locks belong to a process (threads share them) and all of a process's locks
    on a file vanish when any descriptor of that file is closed, so each process keeps one
    descriptor per lock file open for good (`_striped_lock`) and threads queue on a
    `threading.Lock` per stripe first.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: int | None = None
        self._guard = threading.Lock()
        self._threads: dict[int, threading.Lock] = {}

    def _open(self) -> int:
        with self._guard:
            if self._descriptor is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            return self._descriptor

    def _thread_lock(self, stripe: int) -> threading.Lock:
        with self._guard:
            return self._threads.setdefault(stripe, threading.Lock())

    @contextlib.contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[None]:
        stripe = zlib.crc32(key.encode()) % LOCK_STRIPES
        deadline = time.monotonic() + timeout
        thread_lock = self._thread_lock(stripe)
        if not thread_lock.acquire(timeout=timeout):
            raise TimeoutError(key)
        try:
            descriptor = self._open()
            delay = 0.001
            while True:
                try:
                    fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, stripe)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise TimeoutError(key) from exc
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                fcntl.lockf(descriptor, fcntl.LOCK_UN, 1, stripe)
        finally:
            thread_lock.release()

    def after_fork(self) -> None:
        """In a forked child: no thread holds anything (the descriptor stays valid)."""
        self._guard = threading.Lock()
        self._threads = {}


_LOCKS: dict[Path, _StripedLock] = {}
_LOCKS_GUARD = threading.Lock()


def _striped_lock(path: Path) -> _StripedLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, _StripedLock(path))


def _reset_locks_after_fork() -> None:
    global _LOCKS_GUARD
    _LOCKS_GUARD = threading.Lock()
    for lock in _LOCKS.values():
        lock.after_fork()


os.register_at_fork(after_in_child=_reset_locks_after_fork)


class LocalStore:
    """Files under a local folder; atomic writes by temp file + `os.replace`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self._swept: set[Path] = set()

    def _full(self, path: str) -> Path:
        return self.root / path

    def uri(self, path: str) -> str:
        return str(self._full(path))

    @staticmethod
    def _version_of(stat: os.stat_result) -> str:
        return f"{stat.st_mtime_ns}-{stat.st_size}-{stat.st_ino}"

    def _version(self, full: Path) -> str | None:
        try:
            return self._version_of(full.stat())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(cannot("look at", full, exc)) from exc

    def get(self, path: str) -> tuple[bytes | None, str | None]:
        full = self._full(path)
        try:
            with full.open("rb") as handle:
                version = self._version_of(os.fstat(handle.fileno()))
                return handle.read(), version
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StoreError(f"cannot read {full}: {exc}") from exc

    def read_sources(self, paths: Sequence[str]) -> list[str | bytes]:
        return [str(full) for full in map(self._full, paths) if _exists(full)]

    def snapshot(self, paths: Sequence[str]) -> list[tuple[str | bytes | None, str | None]]:
        found: list[tuple[str | bytes | None, str | None]] = []
        for full in map(self._full, paths):
            version = self._version(full)
            found.append((str(full), version) if version is not None else (None, None))
        return found

    def versions(self, paths: Sequence[str]) -> list[str | None]:
        return [self._version(full) for full in map(self._full, paths)]

    @property
    def snapshots(self) -> bool:
        return False

    def list_names(self, folder: str) -> list[str]:
        try:
            return sorted(os.listdir(self._full(folder)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StoreError(cannot("list folder", self._full(folder), exc)) from exc

    def holds_any(self, folder: str) -> bool:
        # Empty folders are pruned, so a folder that exists almost always holds files. Only
        # absence answers False: a folder that cannot be looked at is an error, not empty.
        full = self._full(folder)
        try:
            return stat.S_ISDIR(full.stat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise StoreError(cannot("look at", full, exc)) from exc

    def prune_folder(self, folder: str) -> None:
        full = self._full(folder)
        self._sweep(full, force=True)
        with contextlib.suppress(OSError):
            full.rmdir()

    def _sweep(self, folder: Path, force: bool = False) -> None:
        """Remove, in `folder` (once per folder), temp files and the empty `.{name}.lock` files
        that lakes written before the one lock file at the root left beside every data file,
        when older than STALE_TEMP_SECONDS."""
        if folder in self._swept and not force:
            return
        self._swept.add(folder)
        cutoff = time.time() - STALE_TEMP_SECONDS
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            name = entry.name
            temp = name.startswith(".") and name.endswith(".tmp")
            old_lock = name.startswith(".") and name.endswith(".lock") and name != LOCK_FILE
            if not (temp or old_lock):
                continue
            with contextlib.suppress(OSError):
                status = entry.stat(follow_symlinks=False)
                if status.st_mtime < cutoff and (temp or status.st_size == 0):
                    os.unlink(entry.path)

    def _ensure_folder(self, folder: Path) -> None:
        """Create `folder` if needed and sweep it once; a folder this call creates holds
        nothing to sweep (a bulk write creates thousands, so this saves a scan of each)."""
        if folder in self._swept:
            _make_folder(folder)  # it may have been pruned since
            return
        try:
            folder.mkdir()
        except FileExistsError:
            self._sweep(folder)
            return
        except FileNotFoundError:
            _make_folder(folder)
        except OSError as exc:
            raise StoreError(cannot("create folder", folder, exc)) from exc
        self._swept.add(folder)

    def _check_version(self, full: Path, expected_version: Version) -> None:
        if isinstance(expected_version, _AnyVersion):
            return
        current = self._version(full)
        if current != expected_version:
            raise VersionConflict(
                f"{full} changed since it was read (expected version {expected_version}, "
                f"found {current}); re-read it and retry"
            )

    def put(self, path: str, data: bytes, expected_version: Version = ANY_VERSION) -> None:
        full = self._full(path)
        self._ensure_folder(full.parent)
        self._check_version(full, expected_version)
        temp = full.with_name(f".{full.name}.{uuid.uuid4().hex}.tmp")
        try:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, full)
        except BaseException as exc:
            temp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(cannot("write", full, exc)) from exc
            raise

    def delete(self, path: str, expected_version: Version = ANY_VERSION) -> None:
        full = self._full(path)
        self._check_version(full, expected_version)
        try:
            full.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete {full}: {exc}") from exc

    def exists(self, path: str) -> bool:
        return _exists(self._full(path))

    @contextlib.contextmanager
    def locked(self, path: str) -> Iterator[object]:
        """Hold the write lock of `path` (a byte of `.lake.lock` at the root): excludes other
        threads and processes; leaves no file beside the data."""
        lock = _striped_lock(self.root / LOCK_FILE)
        entered = False
        try:
            with lock.hold(path, LOCK_TIMEOUT_SECONDS):
                entered = True
                yield lock
        except TimeoutError as exc:
            raise StoreError(
                f"timed out after {LOCK_TIMEOUT_SECONDS:.0f}s waiting for the write lock of "
                f"{self._full(path)}; another writer holds it (a lock of a killed process is "
                "released by the system, so a writer is still running)"
            ) from exc
        except OSError as exc:
            if entered:
                raise
            raise StoreError(cannot("open the write lock", self.root / LOCK_FILE, exc)) from exc


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(cannot("create folder", folder, exc)) from exc


def _exists(full: Path) -> bool:
    try:
        return full.exists()
    except OSError as exc:
        raise StoreError(cannot("look for", full, exc)) from exc


_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    """Objects under `s3://bucket/prefix`; one PUT per write, conditional on the ETag.

    Credentials come only from boto3's default chain (AWS_* environment variables, profiles,
    instance roles); nothing here accepts or logs them.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        io_threads: int = S3_IO_THREADS,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.io_threads = io_threads
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                max_pool_connections=max(io_threads, 10),
                retries={"mode": "standard", "max_attempts": 4},
            ),
        )

    @property
    def client(self) -> Any:
        """The boto3 S3 client (for tests and tools)."""
        return self._client

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def uri(self, path: str) -> str:
        return f"s3://{self.bucket}/{self._key(path)}"

    def get(self, path: str) -> tuple[bytes | None, str | None]:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(path))
            return response["Body"].read(), response["ETag"]
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None, None
            raise StoreError(f"cannot read {self.uri(path)}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot read {self.uri(path)}: {exc}") from exc

    def read_sources(self, paths: Sequence[str]) -> list[str | bytes]:
        """Fetch the candidates concurrently; missing objects (404) are skipped."""
        if len(paths) <= 1:
            blobs = [self.get(path)[0] for path in paths]
        else:
            with ThreadPoolExecutor(min(self.io_threads, len(paths))) as pool:
                blobs = [data for data, _ in pool.map(self.get, paths)]
        return [data for data in blobs if data is not None]

    def snapshot(self, paths: Sequence[str]) -> list[tuple[str | bytes | None, str | None]]:
        if len(paths) <= 1:
            return [self.get(path) for path in paths]
        with ThreadPoolExecutor(min(self.io_threads, len(paths))) as pool:
            return list(pool.map(self.get, paths))

    def versions(self, paths: Sequence[str]) -> list[str | None]:
        return [version for _, version in self.snapshot(paths)]

    @property
    def snapshots(self) -> bool:
        return True

    def list_names(self, folder: str) -> list[str]:
        prefix = f"{self._key(folder.rstrip('/'))}/"
        names: set[str] = set()
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    names.add(common["Prefix"].removeprefix(prefix).rstrip("/"))
                for item in page.get("Contents", []):
                    names.add(item["Key"].removeprefix(prefix))
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot list {self.uri(folder)}: {exc}") from exc
        return sorted(names)

    def holds_any(self, folder: str) -> bool:
        """One LIST of at most one key under the folder's prefix."""
        prefix = f"{self._key(folder.rstrip('/'))}/"
        try:
            page = self._client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot list {self.uri(folder)}: {exc}") from exc
        return bool(page.get("KeyCount", len(page.get("Contents", []))))

    def prune_folder(self, folder: str) -> None:
        """S3 has no folders: nothing to remove."""

    def _conditions(self, expected_version: Version) -> dict[str, str]:
        if isinstance(expected_version, _AnyVersion):
            return {}
        if expected_version is None:
            return {"IfNoneMatch": "*"}
        return {"IfMatch": expected_version}

    def _raise_for(self, action: str, path: str, exc: ClientError, expected: Version) -> NoReturn:
        code = _error_code(exc)
        if code in _CONFLICT_CODES or (code in _MISSING_CODES and expected is not ANY_VERSION):
            raise VersionConflict(
                f"{self.uri(path)} changed since it was read ({code}); re-read it and retry"
            ) from exc
        raise StoreError(f"cannot {action} {self.uri(path)}: {exc}") from exc

    def put(self, path: str, data: bytes, expected_version: Version = ANY_VERSION) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(path),
                Body=data,
                ContentType="application/vnd.apache.parquet",
                **self._conditions(expected_version),
            )
        except ClientError as exc:
            self._raise_for("write", path, exc, expected_version)
        except BotoCoreError as exc:
            raise StoreError(f"cannot write {self.uri(path)}: {exc}") from exc

    def delete(self, path: str, expected_version: Version = ANY_VERSION) -> None:
        conditions = self._conditions(expected_version)
        if conditions.get("IfNoneMatch"):
            return
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(path), **conditions)
        except ClientError as exc:
            self._raise_for("delete", path, exc, expected_version)
        except BotoCoreError as exc:
            raise StoreError(f"cannot delete {self.uri(path)}: {exc}") from exc

    def exists(self, path: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(path))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise StoreError(f"cannot check {self.uri(path)}: {exc}") from exc
        return True

    def locked(self, path: str) -> contextlib.AbstractContextManager[object]:
        """No lock: S3 writers rely on conditional PUTs (optimistic concurrency)."""
        return contextlib.nullcontext()


def open_store(
    root: str, *, s3_endpoint_url: str | None = None, s3_region: str | None = None
) -> ObjectStore:
    """LocalStore for a folder, S3Store for `s3://bucket[/prefix]`."""
    if root.startswith("s3://"):
        bucket, _, prefix = root.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"lake root {root!r} has no bucket; use s3://bucket/prefix")
        return S3Store(bucket, prefix, endpoint_url=s3_endpoint_url, region=s3_region)
    if "://" in root:
        raise ValueError(f"lake root {root!r}: only local folders and s3:// URIs are supported")
    return LocalStore(root)
