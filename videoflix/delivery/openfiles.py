"""Open segment files kept a few seconds, as nginx's open_file_cache does (loop side).

A player fetches each segment once, but many players fetch the same segments, and
a segment GET that finds its file already open skips the executor hop of opening
it (mediafiles.open_inside: a thread wake-up and three loop callbacks, about a
fifth of a segment GET's cost in bench/serve.py). Only files that never change
once written are kept: segments (a re-transcode writes a new version folder, and
ffmpeg renames each finished segment into place), never playlists or images.

The descriptors were opened by open_inside (no symlink followed below the video's
folder); access is decided before the cache is asked, so a cached descriptor of a
deleted or private video serves no one. Unlike nginx's cache, a hit is never stale:
`acquire` fstats the descriptor (one syscall on a local file, no path walk) and
lets the entry go when its file was removed (the sweeper after the grace period),
renamed over, or changed in size or mtime since it was opened; the caller then
opens the path anew. `valid_seconds` only bounds how long a descriptor is held.

Ownership: `acquire` lends an entry to one request, `release` gives it back; an
entry that expires, is evicted or meets `close` while lent is closed by its last
release. Single-threaded: the loop's only (descriptors are closed on the loop, as
the handlers close theirs).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Hashable
from dataclasses import replace

from videoflix.delivery.mediafiles import OpenFile

VALID_SECONDS = 10.0
# Descriptors held at most: a quarter of the common 1024 limit, beside the connections'.
MAX_ENTRIES = 256


class Entry:
    __slots__ = ("expires", "file", "key", "retired", "users")

    def __init__(self, key: Hashable, file: OpenFile, expires: float) -> None:
        self.key = key
        self.file = file
        self.expires = expires
        self.users = 0
        self.retired = False


class OpenFileCache:
    def __init__(self, valid_seconds: float = VALID_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.valid_seconds = valid_seconds
        self.max_entries = max_entries
        self._entries: dict[Hashable, Entry] = {}  # insertion order = expiry order
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def lent(self) -> int:
        """Entries lent to requests right now (tests: every request gave its back)."""
        return sum(entry.users for entry in self._entries.values())

    def acquire(self, key: Hashable) -> Entry | None:
        """The open file under `key`, lent to the caller, or None (open it and `add`)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() >= entry.expires or self._changed(entry):
            self._retire(entry)
            return None
        entry.users += 1
        return entry

    def add(self, key: Hashable, file: OpenFile) -> Entry:
        """Keep `file` (the cache owns its descriptor from now on) and lend it to the caller."""
        self._purge(time.monotonic())
        old = self._entries.get(key)
        if old is not None:  # two requests opened it at once: the newer replaces it
            self._retire(old)
        while len(self._entries) >= self.max_entries:
            self._retire(next(iter(self._entries.values())))
        entry = Entry(key, replace(file, first=b""), time.monotonic() + self.valid_seconds)
        entry.users = 1
        self._entries[key] = entry
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.valid_seconds, self._tick)
        return entry

    def release(self, entry: Entry) -> None:
        entry.users -= 1
        if entry.retired and entry.users == 0:
            os.close(entry.file.fd)

    def close(self) -> None:
        """Close every descriptor (those lent out: at their release). Shutdown."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for entry in list(self._entries.values()):
            self._retire(entry)

    @staticmethod
    def _changed(entry: Entry) -> bool:
        now, then = os.fstat(entry.file.fd), entry.file.stat
        return now.st_nlink == 0 or now.st_size != then.st_size or now.st_mtime_ns != then.st_mtime_ns

    def _retire(self, entry: Entry) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        entry.retired = True
        if entry.users == 0:
            os.close(entry.file.fd)

    def _purge(self, now: float) -> None:
        for entry in list(self._entries.values()):
            if entry.expires > now:
                break
            self._retire(entry)

    def _tick(self) -> None:
        """Expired descriptors are closed even when no request comes."""
        self._timer = None
        self._purge(time.monotonic())
        if self._entries:
            delay = max(0.0, next(iter(self._entries.values())).expires - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)
