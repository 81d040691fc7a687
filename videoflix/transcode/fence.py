"""A running job's lease fence: the one file both processes of a job read or write.

The runner's lease keeper (server side) writes into media.lease_fence the monotonic
time by which the run must stop unless its lease is renewed again (0: the lease is
lost); the job in the pool child reads it at every progress report and stops its
ffmpeg once that time has passed, also when the server's loop is frozen or Redis is
unreachable. Both processes share the host's CLOCK_MONOTONIC (time.monotonic in the
child, the loop's time in the server). Blocking: the server calls `write_fence` in
its file executor.
"""

from __future__ import annotations

import time
from pathlib import Path


def write_fence(fence: Path, deadline: float) -> None:
    temporary = fence.with_name(fence.name + ".tmp")
    temporary.write_text(repr(deadline), encoding="ascii")
    temporary.replace(fence)  # the child never reads a half-written deadline


def fence_passed(fence: str) -> bool:
    """True once the keeper's deadline in `fence` is past (or the file is gone)."""
    try:
        with open(fence, encoding="ascii") as handle:
            deadline = float(handle.read() or 0)
    except (OSError, ValueError):
        return True
    return time.monotonic() > deadline
