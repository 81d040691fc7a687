"""A job's progress, whether the version it builds is playable yet, and its cancel flag in Redis.

The transcode child writes the progress and polls the cancel flag with a plain
(blocking) client; the API side reads the progress and raises the flag with the
asyncio client. Key names come from videoflix/rediskeys.py.
"""

from __future__ import annotations

import redis
import redis.asyncio

from videoflix.platform import rediskeys
from videoflix.transcode import notify

# Progress and cancel keys outlive any plausible job, then vanish.
PROGRESS_TTL_SECONDS = 24 * 3600
# A deleted video's job sees the flag at its next progress report (every
# PROGRESS_INTERVAL_SECONDS in job.py); an hour covers a job still queued.
CANCEL_TTL_SECONDS = 3600


# --- child side (blocking client) ----------------------------------------------


def record(client: redis.Redis, video_id: int, percent: float) -> None:
    """Store the percentage and tell the event streams (transcode/notify.py)."""
    client.set(rediskeys.progress(video_id), f"{percent:.1f}", ex=PROGRESS_TTL_SECONDS)
    client.publish(notify.CHANNEL, notify.progress_message(video_id, percent))


def record_playable(client: redis.Redis, video_id: int, version: int) -> None:
    """Version `version` (being built) lists a segment in every rendition: it can be
    watched; tell the event streams (the detail's `playable` changed)."""
    client.set(rediskeys.playable(video_id), int(version), ex=PROGRESS_TTL_SECONDS)
    client.publish(notify.CHANNEL, notify.playable_message(video_id))


def cancel_requested(client: redis.Redis, video_id: int) -> bool:
    return bool(client.exists(rediskeys.cancel(video_id)))


# --- loop side (asyncio client) ------------------------------------------------


async def read(r: redis.asyncio.Redis, video_id: int) -> float | None:
    value = await r.get(rediskeys.progress(video_id))
    return float(value) if value is not None else None


async def read_playable(r: redis.asyncio.Redis, video_id: int) -> int | None:
    """The building version known to be playable, if any (compare with the row's building_version)."""
    value = await r.get(rediskeys.playable(video_id))
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def request_cancel(r: redis.asyncio.Redis, video_id: int) -> None:
    """Tell a running job of this video to stop (the video was deleted)."""
    await r.set(rediskeys.cancel(video_id), 1, ex=CANCEL_TTL_SECONDS)


async def clear_progress(r: redis.asyncio.Redis, video_id: int) -> None:
    await r.delete(rediskeys.progress(video_id), rediskeys.playable(video_id))


async def reset(r: redis.asyncio.Redis, video_id: int) -> None:
    """No progress, no playable version and no cancel flag: before a video is queued again."""
    await r.delete(rediskeys.progress(video_id), rediskeys.cancel(video_id), rediskeys.playable(video_id))
