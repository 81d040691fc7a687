"""Opening and reading files inside a video's folder (blocking: executor only).

Every function here blocks on the disk; web/media_handlers.py calls them through
`services.file_executor`, never on the loop. Names come validated from
playback.py / media.py; this module decides nothing about access.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from videoflix.delivery import answer
from videoflix.delivery.answer import GZIP_LEVEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenFile:
    fd: int
    path: str  # for messages: root/parts
    stat: os.stat_result
    first: bytes = b""  # the first bytes, when asked for (saves a thread hop)
    # A hot copy of an object of the store (delivery/hotcache.py): its validators are
    # the store's, not this file's.
    facts: answer.ObjectFacts | None = None


def answer_open_file(request: answer.RequestFacts, policy: answer.Policy, opened: OpenFile) -> answer.Answer:
    """answer.py's answer with an open file: its own fstat's validators, or those of the
    object it is a copy of (a FileRange body either way: the bytes are this file's)."""
    if opened.facts is None:
        return answer.answer_file(request, policy, opened.stat)
    return answer.answer_copy(request, policy, opened.facts)


# Below the video's directory every component is opened relative to its parent
# with O_NOFOLLOW: no symlink is followed there at all, wherever it points, so a
# planted link (to /etc/passwd, to another video) fails with ELOOP, and nothing
# can change between a check and the open (CWE-22, CWE-59, CWE-367). O_NONBLOCK:
# opening a FIFO planted there returns at once (fstat then rejects it) instead of
# hanging a thread.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def open_inside(root: Path, parts: tuple[str, ...], prefetch: int = 0, read_ahead: bool = False) -> OpenFile | None:
    """Open root/parts[0]/.../parts[-1] for reading if it is a regular file reached
    without following any symlink below `root` (`root` itself, media/<id>, may be
    one: it is the video's real directory wherever it lives); None otherwise.
    `parts` are validated single names (no "/", no ".."). Reads up to `prefetch`
    bytes from the start too. `read_ahead`: ask the kernel to start reading the
    whole file into the page cache now (POSIX_FADV_WILLNEED, asynchronous), for a
    body that os.sendfile will send from the loop (zerocopy.py)."""
    try:
        dir_fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return None
    fd = -1
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileNotFoundError(parts[-1])
        first = os.pread(fd, min(prefetch, info.st_size), 0) if prefetch else b""
        if read_ahead and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            log.warning("refused a symlink below %s: %s", root, "/".join(parts))
        if fd >= 0:
            os.close(fd)
        return None
    finally:
        os.close(dir_fd)
    return OpenFile(fd=fd, path=os.path.join(root, *parts), stat=info, first=first)


def is_dir_inside(root: Path, parts: tuple[str, ...]) -> bool:
    """root/parts... is a directory reached without following any symlink below `root`."""
    try:
        dir_fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return False
    try:
        for part in parts:
            next_fd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return True
    except OSError:
        return False
    finally:
        os.close(dir_fd)


def close_file(opened: OpenFile) -> None:
    os.close(opened.fd)


def read_chunk(fd: int, offset: int, size: int) -> bytes:
    """Up to `size` bytes at `offset` (pread: no shared file position)."""
    return os.pread(fd, size, offset)


def read_gzipped(fd: int, size: int) -> bytes:
    """The whole (small) file, gzip-compressed; mtime=0 so the same file always
    gives the same bytes (stable Content-Length for HEAD and GET)."""
    data = bytearray()
    while len(data) < size:
        chunk = os.pread(fd, size - len(data), len(data))
        if not chunk:
            break
        data += chunk
    return gzip.compress(bytes(data), compresslevel=GZIP_LEVEL, mtime=0)
