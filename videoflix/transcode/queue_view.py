"""The admin console's view of the transcode queue (console/job_admin.py): every live
job with its state and lease, and the dead letters (list, read one, discard). Reads the
keys queue.py owns, through its scans; never moves a job (retrying is queue.enqueue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError

from videoflix.transcode import queue

# Dead letters one listing reads, newest first.
DEAD_LETTER_PAGE = 100


@dataclass(frozen=True)
class QueuedJob:
    """One live job as the console lists it."""

    video_id: int
    owner: str  # str of the owner's id, "" when enqueued without one
    # waiting: in its owner's backlog for its turn; queued: in STREAM, not delivered;
    # running: delivered to `consumer` and not acknowledged (its lease)
    state: str
    entry_id: str = ""  # STREAM's entry id ("" while waiting)
    consumer: str = ""  # "<host>-<pid>" of the process holding it (runner.TranscodeRunner.consumer)
    idle_ms: int = 0  # since the lease was last renewed (or the job delivered)
    deliveries: int = 0


async def list_jobs(r: redis.asyncio.Redis) -> list[QueuedJob]:
    """Every live job: STREAM's, oldest first (running and queued), then the backlogs'."""
    try:
        holders = await queue.lease_holders(r)
    except ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        holders = {}  # no consumer has started yet
    jobs = []
    async for entry_id, fields in queue.scan_entries(r):
        try:
            video_id = int(fields["video_id"])
        except (KeyError, ValueError):
            continue
        holder = holders.get(entry_id)
        if holder is None:
            jobs.append(QueuedJob(video_id, fields.get("owner", ""), "queued", entry_id))
        else:
            consumer, idle_ms, deliveries = holder
            jobs.append(
                QueuedJob(video_id, fields.get("owner", ""), "running", entry_id, consumer, idle_ms, deliveries)
            )
    for owner, _item, video_id in await queue.backlog_items(r):
        jobs.append(QueuedJob(video_id, owner, "waiting"))
    return jobs


@dataclass(frozen=True)
class DeadLetter:
    """One entry of queue.DEAD_LETTER (written by queue.dead_letter, and by a claim of a malformed job)."""

    dead_id: str
    video_id: int | None  # None: the entry was malformed
    reason: str
    deliveries: int
    entry_id: str  # the job's STREAM entry id


def _dead_letter(dead_id: object, fields: dict[Any, Any] | None) -> DeadLetter:
    values = {queue.as_text(name): queue.as_text(value) for name, value in (fields or {}).items()}
    raw_id = values.get("video_id", "")
    raw_deliveries = values.get("deliveries", "0")
    return DeadLetter(
        queue.as_text(dead_id),
        int(raw_id) if raw_id.isdigit() else None,
        values.get("reason", ""),
        int(raw_deliveries) if raw_deliveries.isdigit() else 0,
        values.get("entry_id", ""),
    )


async def dead_letters(r: redis.asyncio.Redis, count: int = DEAD_LETTER_PAGE) -> list[DeadLetter]:
    """The newest `count` dead letters, newest first."""
    return [
        _dead_letter(dead_id, fields) for dead_id, fields in await r.xrevrange(queue.DEAD_LETTER, count=count) or []
    ]


async def get_dead_letter(r: redis.asyncio.Redis, dead_id: str) -> DeadLetter | None:
    found = await r.xrange(queue.DEAD_LETTER, min=dead_id, max=dead_id, count=1)
    return _dead_letter(*found[0]) if found else None


async def discard_dead_letters(r: redis.asyncio.Redis, dead_ids: list[str]) -> int:
    """Delete these dead letters (an admin retried or discarded them); how many were there."""
    return int(await r.xdel(queue.DEAD_LETTER, *dead_ids)) if dead_ids else 0


async def dead_letter_ids_of(r: redis.asyncio.Redis, video_id: int) -> list[str]:
    """The dead letters of one video (a scan of queue.DEAD_LETTER: at most queue.DEAD_LETTER_MAXLEN)."""
    wanted = str(video_id)
    return [
        dead_id
        async for dead_id, fields in queue.scan_entries(r, queue.DEAD_LETTER)
        if fields.get("video_id") == wanted
    ]
