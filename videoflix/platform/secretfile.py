"""Secret files (keys, passwords, configs and mails holding them): mode 0600 from the first byte.

Writing a file and restricting it afterwards leaves a window in which any local user
can open it (and keep the descriptor); under a permissive umask the window is wide
open (CWE-732, CWE-377). Here the file is created by the open call itself with mode
0600 (O_CREAT|O_EXCL: never an existing file, never through a planted symlink), under a
temporary name beside the target, and renamed into place: readers see the old file or
the complete new one.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SECRET_MODE = 0o600
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_secret(path: Path, text: str | bytes, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` with `text`; the file is 0600 (and `owner`'s) before it holds a byte."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, _CREATE_FLAGS, SECRET_MODE)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            fd = -1  # the file object owns it now
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temp.unlink(missing_ok=True)
        raise


def read_or_create_secret(path: Path, make: Callable[[], str]) -> tuple[str, bool]:
    """The secret kept in `path`, or a new one from `make()` written there; (value, created).

    A symbolic link is refused (OSError ELOOP), never followed: neither read as the key
    nor chmod-ed. A file left group- or world-readable by an older version is
    restricted to 0600 (through its descriptor).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        value = make()
        write_secret(path, value + "\n")
        return value, True
    with os.fdopen(fd, encoding="utf-8") as handle:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); restricting it to 0600", path, mode)
            os.fchmod(fd, SECRET_MODE)
        return handle.read().strip(), False
