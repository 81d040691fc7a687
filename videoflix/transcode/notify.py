"""The one owner of the video-events channel: who publishes what, in which shape (pure).

A Redis pub/sub channel carries one small JSON message per change of a video:
- the transcode child publishes `{"id": <video>, "progress": <0-100>}` with every
  progress write (transcode/progress.record, at most every PROGRESS_INTERVAL_SECONDS);
- the transcode child publishes `{"id": <video>}` when the version it builds becomes
  playable (progress.record_playable);
- the loop publishes `{"id": <video>, "owner": <user>}` after every state change
  (ready, failed, re-queued, edited, deleted: videos.video_changed).
Subscribers (videoflix/events.py, one per server process) read the row themselves:
a message says *that* something changed, the database says *what* it is now, so a
late or reordered message can never show a stale state for long.
Pub/sub is fire-and-forget: a process that is not listening misses messages, which
is why every event stream starts with a snapshot (events.snapshot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from videoflix.platform import rediskeys

CHANNEL = rediskeys.VIDEO_EVENTS_CHANNEL


@dataclass(frozen=True)
class VideoMessage:
    video_id: int
    owner_id: int | None = None
    progress: float | None = None


def progress_message(video_id: int, percent: float) -> str:
    return json.dumps({"id": int(video_id), "progress": round(float(percent), 1)})


def playable_message(video_id: int) -> str:
    return json.dumps({"id": int(video_id)})


def changed_message(video_id: int, owner_id: int) -> str:
    return json.dumps({"id": int(video_id), "owner": int(owner_id)})


def parse_message(raw: str | bytes) -> VideoMessage:
    """ValueError for anything that is not one of the shapes above."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    video_id, owner_id, progress = data.get("id"), data.get("owner"), data.get("progress")
    if type(video_id) is not int or video_id <= 0:
        raise ValueError("bad id")
    if owner_id is not None and type(owner_id) is not int:
        raise ValueError("bad owner")
    if progress is not None and (isinstance(progress, bool) or not isinstance(progress, (int, float))):
        raise ValueError("bad progress")
    return VideoMessage(video_id, owner_id, float(progress) if progress is not None else None)
