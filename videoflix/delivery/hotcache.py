"""Hot objects of the bucket kept on this host's disk (VIDEOFLIX_STORAGE=s3://...).

With object storage MEDIA_DIR is this host's scratch; a serving process keeps copies of
the immutable objects it sends most (segments and sprite sheets of finished versions,
whose bytes never change: a re-transcode writes a new version) in
`media/.hot/<process>/<key>`, least recently used out, bounded in bytes
(VIDEOFLIX_S3_CACHE_MB). A copy is made while a miss is streamed to its client (the
chunks go to a file beside the key, renamed into place when whole), and a hit is served
exactly as a local file (mediafiles.open_inside, sendfile), with the store's ETag and
Last-Modified kept beside it in memory, so the answer never depends on which server or
which copy sent it. Playlists, ladder.json, tracks and images are never kept here: they
can change under the same key.

A copy outlives its object when a sweeper (on any host) removes an old version from the
bucket: this process's sweeper drops the copies below what it removed at once
(forget_below), and every copy is checked against the bucket (one HEAD) when it is served
more than REVALIDATE_SECONDS after its last check, so another host's removal is seen
within that time.

Each process has its own folder, locked (flock) while it runs; a process starting
removes the folders no running process holds (a crash's leftovers). The index lives in
memory: a restart starts cold. Blocking work runs in the file executor.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from videoflix.delivery.answer import ObjectFacts

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# One object takes at most this share of the cache (a larger one is streamed, not kept).
MAX_OBJECT_SHARE = 8
# A copy served longer than this after its last check is checked against the bucket (HEAD).
REVALIDATE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Cached:
    facts: ObjectFacts
    parts: tuple[str, ...]  # the key's parts below the process's folder


class HotCache:
    """See the module docstring. Loop side: the index; files in the executor."""

    def __init__(self, base: Path, limit_bytes: int, executor: concurrent.futures.Executor) -> None:
        self.base = base
        self.limit_bytes = limit_bytes
        self.root = base / secrets.token_hex(8)
        self._executor = executor
        self._index: collections.OrderedDict[str, Cached] = collections.OrderedDict()
        self._bytes = 0
        self._checked: dict[str, float] = {}  # key -> monotonic time of its last check
        self._lock_fd = -1
        self._ready: asyncio.Future[None] | None = None
        self.hits = 0
        self.fills = 0

    @property
    def enabled(self) -> bool:
        return self.limit_bytes > 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, key: str) -> Cached | None:
        """The copy of `key`, now the most recently used; None when there is none."""
        found = self._index.get(key)
        if found is not None:
            self._index.move_to_end(key)
            self.hits += 1
        return found

    def forget(self, key: str) -> None:
        """Drop a copy that could not be opened (removed under us) or whose object is
        gone or changed: the next GET fills it again."""
        found = self._index.pop(key, None)
        self._checked.pop(key, None)
        if found is not None:
            self._bytes -= found.facts.size

    def needs_check(self, key: str) -> bool:
        """Whether the copy of `key` is due a check against the bucket (see the docstring)."""
        return time.monotonic() - self._checked.get(key, 0.0) > REVALIDATE_SECONDS

    def mark_checked(self, key: str) -> None:
        if key in self._index:
            self._checked[key] = time.monotonic()

    async def forget_below(self, prefix: str) -> int:
        """Drop every copy whose key starts with `prefix` ("12/v1/"), files included (an
        open file of one then reads nlink 0: openfiles.py drops it too); how many."""
        keys = [key for key in self._index if key.startswith(prefix)]
        paths = [self.root.joinpath(*self._index[key].parts) for key in keys]
        for key in keys:
            self.forget(key)
        if paths:
            await asyncio.get_running_loop().run_in_executor(self._executor, _unlink_all, paths)
        return len(keys)

    def keeps(self, size: int) -> bool:
        return self.enabled and 0 < size <= self.limit_bytes // MAX_OBJECT_SHARE

    async def start_fill(self, key: str, facts: ObjectFacts) -> Fill | None:
        """A Fill to write the object's bytes into as they are streamed, or None (too
        large, cache off, scratch unusable)."""
        if not self.keeps(facts.size):
            return None
        loop = asyncio.get_running_loop()
        try:
            await self._start()
            parts = tuple(key.split("/"))
            target = self.root.joinpath(*parts)
            partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
            handle = await loop.run_in_executor(self._executor, _open_partial, partial)
        except OSError as exc:
            log.warning("hot cache: cannot write below %s: %s", self.root, exc)
            return None
        return Fill(self, key, facts, parts, target, partial, handle)

    def _commit(self, key: str, cached: Cached) -> list[Path]:
        """Index the copy; the files of the copies it pushed out, to remove."""
        old = self._index.pop(key, None)
        if old is not None:
            self._bytes -= old.facts.size
        self._index[key] = cached
        self._checked[key] = time.monotonic()
        self._bytes += cached.facts.size
        self.fills += 1
        evicted = []
        while self._bytes > self.limit_bytes and len(self._index) > 1:
            old_key, old = self._index.popitem(last=False)
            self._checked.pop(old_key, None)
            self._bytes -= old.facts.size
            evicted.append(self.root.joinpath(*old.parts))
        return evicted

    async def _start(self) -> None:
        if self._ready is None:
            self._ready = asyncio.ensure_future(
                asyncio.get_running_loop().run_in_executor(self._executor, self._claim_folder)
            )
        await asyncio.shield(self._ready)

    def _claim_folder(self) -> None:
        """Make and lock this process's folder; remove those no process holds (blocking)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd
        for other in self.base.iterdir():
            if other == self.root or not other.is_dir() or other.is_symlink():
                continue
            try:
                probe = os.open(other / LOCK_NAME, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                probe = -1
            except OSError:
                continue
            try:
                if probe >= 0:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: held
                shutil.rmtree(other, ignore_errors=True)
                log.info("hot cache: removed %s (no process holds it)", other)
            except BlockingIOError:
                pass
            finally:
                if probe >= 0:
                    os.close(probe)

    def close(self) -> None:
        """Remove this process's folder (blocking; at shutdown)."""
        self._index.clear()
        self._bytes = 0
        if self._lock_fd >= 0:
            shutil.rmtree(self.root, ignore_errors=True)
            os.close(self._lock_fd)
            self._lock_fd = -1


class Fill:
    """One object being copied into the cache while it is streamed: `write` each chunk,
    then `commit` (only when every byte arrived) or `abort`."""

    def __init__(
        self,
        cache: HotCache,
        key: str,
        facts: ObjectFacts,
        parts: tuple[str, ...],
        target: Path,
        partial: Path,
        handle: IO[bytes],
    ) -> None:
        self.cache = cache
        self.key = key
        self.facts = facts
        self.parts = parts
        self.target = target
        self.partial = partial
        self.handle = handle
        self.written = 0
        self._pending: asyncio.Future[int] | None = None

    async def write(self, chunk: bytes) -> None:
        """Queue `chunk` (one write in flight at a time: the previous is awaited first)."""
        if self._pending is not None:
            await self._pending
        self.written += len(chunk)
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(self.cache._executor, self.handle.write, chunk)

    async def commit(self) -> None:
        if self._pending is not None:
            await self._pending
            self._pending = None
        loop = asyncio.get_running_loop()
        if self.written != self.facts.size:
            await self.abort()
            return
        await loop.run_in_executor(self.cache._executor, _close_and_rename, self.handle, self.partial, self.target)
        evicted = self.cache._commit(self.key, Cached(self.facts, self.parts))
        if evicted:  # an open descriptor keeps serving; openfiles.py sees st_nlink == 0
            await loop.run_in_executor(self.cache._executor, _unlink_all, evicted)

    async def abort(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            with contextlib.suppress(Exception):
                await pending
        await asyncio.get_running_loop().run_in_executor(
            self.cache._executor, _close_and_unlink, self.handle, self.partial
        )


def _open_partial(partial: Path) -> IO[bytes]:
    partial.parent.mkdir(parents=True, exist_ok=True)
    return open(partial, "xb")


def _close_and_rename(handle: IO[bytes], partial: Path, target: Path) -> None:
    handle.close()
    os.replace(partial, target)


def _close_and_unlink(handle: IO[bytes], partial: Path) -> None:
    handle.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
