"""The request id: taken from X-Request-ID or made, carried in a context variable.

The HTTP layer sets `current` for the handler's task; log records pick it up
(log.py), and a transcode job enqueued under it stores it with its queue entry,
so the runner sets it again while that job runs. No HTTP here: transcode/ may use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

HEADER = "X-Request-ID"
# Accepted from clients as is: short, and nothing that could split a log line or a
# header (no spaces, quotes, control characters).
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

current: contextvars.ContextVar[str | None] = contextvars.ContextVar("videoflix_request_id", default=None)


def make() -> str:
    return os.urandom(8).hex()


def from_header(value: str | None) -> str:
    """The client's id when it is acceptable, else a new one."""
    if value and _VALID.fullmatch(value):
        return value
    return make()


@contextlib.contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """`current` is `request_id` inside the block (a job run by the transcode runner)."""
    token = current.set(request_id or None)
    try:
        yield
    finally:
        current.reset(token)
