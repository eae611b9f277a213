"""Byte-level file access for the Parquet lake: a local folder or an S3 prefix.

Both stores offer the same small contract, so the lake's read-modify-write loop is written once:

- `get(path)` returns the bytes and a version token (None when the file does not exist);
- `put(path, data, expected_version=...)` replaces the file atomically, and only if it is still
  at `expected_version` (`ANY_VERSION` skips the check; None means "must not exist yet"),
  raising `VersionConflict` otherwise;
- `locked(path)` serialises writers of one file: a file lock beside the data file on local disk,
  nothing on S3, where conditional writes (If-Match / If-None-Match) do the job.

Paths are relative to the store root and always built from the lake layout, never listed.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from filelock import FileLock, Timeout

from market_assets.core.errors import StoreError


class _AnyVersion:
    def __repr__(self) -> str:
        return "ANY_VERSION"


ANY_VERSION: Final = _AnyVersion()
"""Pass as `expected_version` to write whatever the current state of the file is."""

Version = str | None | _AnyVersion

S3_IO_THREADS = 16
LOCK_TIMEOUT_SECONDS = 120.0


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


class LocalStore:
    """Files under a local folder; atomic writes by temp file + `os.replace`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

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
        return [str(full) for full in map(self._full, paths) if full.exists()]

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
        full.parent.mkdir(parents=True, exist_ok=True)
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
                raise StoreError(f"cannot write {full}: {exc}") from exc
            raise

    def delete(self, path: str, expected_version: Version = ANY_VERSION) -> None:
        full = self._full(path)
        self._check_version(full, expected_version)
        try:
            full.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete {full}: {exc}") from exc

    def exists(self, path: str) -> bool:
        return self._full(path).exists()

    @contextlib.contextmanager
    def locked(self, path: str) -> Iterator[object]:
        """Hold `.{name}.lock` beside the file: excludes other threads and processes."""
        full = self._full(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(full.parent / f".{full.name}.lock", timeout=LOCK_TIMEOUT_SECONDS)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreError(
                f"timed out after {LOCK_TIMEOUT_SECONDS:.0f}s waiting for the write lock of "
                f"{full}; another writer holds it (remove the .lock file if no writer is running)"
            ) from exc
        try:
            yield lock
        finally:
            lock.release()


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
        """The boto3 S3 client (for tests and tools; the lake never lists objects)."""
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
