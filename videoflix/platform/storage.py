"""Where media objects are kept: a local directory (the default) or an S3-compatible bucket.

Every media name is made by platform/media.py as a path under MEDIA_DIR; the store keeps
that path's relative part as the object's key (`media/12/v3/720p/seg_00001.ts` is key
`12/v3/720p/seg_00001.ts`, under the bucket's prefix), so the names have one owner whichever
backend holds the bytes. MEDIA_DIR stays each host's own folder: with the local backend it
is the library; with S3 it is scratch (uploads being received, a worker's run, the hot-segment
cache), never shared between hosts.

    VIDEOFLIX_STORAGE=                       local: MEDIA_DIR is the library (today's behaviour)
    VIDEOFLIX_STORAGE=s3://<bucket>/<prefix> any S3-compatible store (platform/s3store.py)
    VIDEOFLIX_STORAGE=embedded-s3            `videoflix dev` only: a SeaweedFS under ./var/

The async interface below is the whole contract both backends keep (tests/test_storage.py runs
one table of cases against each). Code on a hot path of the local backend (segments by
sendfile, the transcoder writing in place) keeps using paths directly when `storage.is_local`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

# Objects at most this large are read whole (playlists, ladder.json, subtitle files, tracks).
SMALL_OBJECT_BYTES = 8 * 1024 * 1024
STREAM_CHUNK_BYTES = 256 * 1024

EMBEDDED_S3 = "embedded-s3"
T = TypeVar("T")

# The Content-Type each kind of object is stored with (what nginx or a CDN passes on).
_CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt; charset=utf-8",
    ".json": "application/json",
}


def content_type(key: str) -> str:
    return _CONTENT_TYPES.get(PurePosixPath(key).suffix, "application/octet-stream")


class StorageError(Exception):
    """The store could not be reached or refused the operation (not "no such object")."""


@dataclass(frozen=True)
class StorageLocation:
    """What VIDEOFLIX_STORAGE names: the local directory, or a bucket and a key prefix."""

    kind: str  # "local" | "s3" | EMBEDDED_S3
    bucket: str = ""
    prefix: str = ""  # "" or "some/where/" (always ends with "/")

    @classmethod
    def parse(cls, raw: str) -> StorageLocation:
        raw = raw.strip()
        if raw in ("", "local"):
            return cls("local")
        if raw == EMBEDDED_S3:
            return cls(EMBEDDED_S3, bucket="videoflix")
        parts = urlsplit(raw)
        if parts.scheme != "s3" or parts.query or parts.fragment:
            raise ValueError("expected local, embedded-s3 or s3://<bucket>/<prefix>")
        bucket = parts.netloc
        # S3 bucket naming rules (lowercase letters, digits, dots, hyphens; 3-63).
        if not (3 <= len(bucket) <= 63) or not all(
            c.isascii() and (c.islower() or c.isdigit() or c in ".-") for c in bucket
        ):
            raise ValueError(f"not an S3 bucket name: {bucket!r}")
        if bucket[0] in ".-" or bucket[-1] in ".-" or ".." in bucket:
            raise ValueError(f"not an S3 bucket name: {bucket!r}")
        prefix = parts.path.strip("/")
        if prefix:
            segments = prefix.split("/")
            if any(s in ("", ".", "..") or not s.isprintable() for s in segments):
                raise ValueError(f"not a clean key prefix: {parts.path!r}")
            prefix += "/"
        return cls("s3", bucket=bucket, prefix=prefix)

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to MEDIA_DIR (the store's prefix taken off)
    size: int
    etag: str  # quoted, as HTTP writes it
    mtime: float  # seconds since the epoch


def media_key(media_dir: str, path: Path | str) -> str:
    """The key of a path platform/media.py made under `media_dir` ("12/v3/poster.jpg").
    ValueError for anything not strictly below it (no "..", no absolute escape)."""
    relative = PurePosixPath(os.path.relpath(os.fspath(path), media_dir))
    if relative.is_absolute() or not relative.parts or any(p in ("..", ".", "") for p in relative.parts):
        raise ValueError(f"not a media path: {path}")
    return relative.as_posix()


class Storage(Protocol):
    """A media store. Paths are platform/media.py's, under config.media_dir; `prefix`
    paths name a folder (every key below it). Reads of a missing object return None;
    an unreachable store raises StorageError."""

    @property
    def is_local(self) -> bool: ...

    @property
    def location(self) -> StorageLocation: ...

    async def head(self, path: Path) -> ObjectInfo | None: ...

    async def read_bytes(self, path: Path, limit: int = SMALL_OBJECT_BYTES) -> bytes | None:
        """The whole object, or None when missing; StorageError when larger than `limit`."""
        ...

    async def read_object(self, path: Path, limit: int = SMALL_OBJECT_BYTES) -> tuple[ObjectInfo, bytes] | None:
        """read_bytes with the object's facts from the same read (its size, ETag and
        mtime describe exactly these bytes: what an HTTP answer's validators need)."""
        ...

    def stream(self, path: Path, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes start..end (inclusive; None = to the end), in chunks, never the whole
        object in memory. FileNotFoundError when missing."""
        ...

    async def write_bytes(self, path: Path, data: bytes) -> None:
        """Store `data` whole (readers see the old object or the new one, never a part)."""
        ...

    async def put_file(self, path: Path, local_file: Path, *, move: bool = False) -> None:
        """Store a local file's bytes as `path` (S3: multipart, parts in parallel, retried,
        aborted on failure). `move`: the local file may be consumed (renamed into place)."""
        ...

    async def get_file(self, path: Path, local_file: Path) -> bool:
        """Copy the object into `local_file` (written beside it, renamed when whole);
        False when missing."""
        ...

    async def copy(self, src: Path, dst: Path) -> bool: ...

    async def list_tree(self, prefix: Path) -> list[ObjectInfo]:
        """Every object below the folder `prefix`, recursively, by key."""
        ...

    async def delete(self, path: Path) -> None: ...

    async def delete_tree(self, prefix: Path) -> int:
        """Remove every object below the folder `prefix`; how many there were."""
        ...

    async def close(self) -> None: ...


def _etag_of(info: os.stat_result) -> str:
    return f'"{info.st_mtime_ns:x}-{info.st_size:x}"'


class LocalStorage:
    """MEDIA_DIR as the store: blocking calls in the file executor, whole objects written
    beside their name and renamed (the reader sees all or nothing)."""

    def __init__(self, media_dir: str, executor: concurrent.futures.Executor) -> None:
        self.media_dir = media_dir
        self._executor = executor

    @property
    def is_local(self) -> bool:
        return True

    @property
    def location(self) -> StorageLocation:
        return StorageLocation("local")

    def _path(self, path: Path) -> Path:
        return Path(self.media_dir) / media_key(self.media_dir, path)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def head(self, path: Path) -> ObjectInfo | None:
        target = self._path(path)

        def stat() -> ObjectInfo | None:
            try:
                info = os.stat(target)
            except FileNotFoundError:
                return None
            if not os.path.isfile(target):
                return None
            return ObjectInfo(media_key(self.media_dir, target), info.st_size, _etag_of(info), info.st_mtime)

        result: ObjectInfo | None = await self._run(stat)
        return result

    async def read_bytes(self, path: Path, limit: int = SMALL_OBJECT_BYTES) -> bytes | None:
        found = await self.read_object(path, limit)
        return None if found is None else found[1]

    async def read_object(self, path: Path, limit: int = SMALL_OBJECT_BYTES) -> tuple[ObjectInfo, bytes] | None:
        target = self._path(path)

        def read() -> tuple[ObjectInfo, bytes] | None:
            try:
                with open(target, "rb") as handle:
                    info = os.fstat(handle.fileno())
                    data = handle.read(limit + 1)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
            if len(data) > limit:
                raise StorageError(f"{target}: larger than {limit} bytes")
            return ObjectInfo(media_key(self.media_dir, target), len(data), _etag_of(info), info.st_mtime), data

        result: tuple[ObjectInfo, bytes] | None = await self._run(read)
        return result

    async def stream(self, path: Path, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        target = self._path(path)
        try:
            fd = await self._run(os.open, target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (NotADirectoryError, IsADirectoryError):
            raise FileNotFoundError(target) from None
        try:
            size = os.fstat(fd).st_size
            last = size - 1 if end is None else min(end, size - 1)
            offset = start
            while offset <= last:
                chunk: bytes = await self._run(os.pread, fd, min(STREAM_CHUNK_BYTES, last + 1 - offset), offset)
                if not chunk:
                    break
                offset += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def write_bytes(self, path: Path, data: bytes) -> None:
        target = self._path(path)

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, target)

        await self._run(write)

    async def put_file(self, path: Path, local_file: Path, *, move: bool = False) -> None:
        target = self._path(path)

        def put() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            if move:
                try:
                    os.replace(local_file, target)
                    return
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
            partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            shutil.copyfile(local_file, partial)
            os.replace(partial, target)

        await self._run(put)

    async def get_file(self, path: Path, local_file: Path) -> bool:
        source = self._path(path)

        def get() -> bool:
            if not source.is_file():
                return False
            local_file.parent.mkdir(parents=True, exist_ok=True)
            partial = local_file.with_name(f".{local_file.name}.{os.getpid()}.part")
            shutil.copyfile(source, partial)
            os.replace(partial, local_file)
            return True

        result: bool = await self._run(get)
        return result

    async def copy(self, src: Path, dst: Path) -> bool:
        return await self.get_file(src, self._path(dst))

    async def list_tree(self, prefix: Path) -> list[ObjectInfo]:
        root = self._path(prefix)

        def walk() -> list[ObjectInfo]:
            found = []
            for folder, _dirs, files in os.walk(root):
                for name in files:
                    full = Path(folder) / name
                    try:
                        info = full.lstat()
                    except FileNotFoundError:
                        continue
                    if full.is_symlink() or not full.is_file():
                        continue
                    found.append(
                        ObjectInfo(media_key(self.media_dir, full), info.st_size, _etag_of(info), info.st_mtime)
                    )
            return sorted(found, key=lambda item: item.key)

        result: list[ObjectInfo] = await self._run(walk)
        return result

    async def delete(self, path: Path) -> None:
        target = self._path(path)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)

        await self._run(remove)

    async def delete_tree(self, prefix: Path) -> int:
        root = self._path(prefix)

        def remove() -> int:
            count = sum(len(files) for _f, _d, files in os.walk(root))
            shutil.rmtree(root, ignore_errors=True)
            return count

        result: int = await self._run(remove)
        return result

    async def close(self) -> None:
        return None


def file_md5(path: Path, chunk: int = 1024 * 1024) -> str:
    """The hex MD5 of a file (S3's ETag of a single-part object; checks, not security)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
