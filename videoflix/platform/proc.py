"""Child-process hygiene shared by the embedded servers and the transcoder."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

# prctl(2) option: signal to deliver to this process when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel send `sig` to the child when its parent
    dies, even by SIGKILL; None where prctl is unavailable (not Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return preexec
