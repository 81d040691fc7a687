"""Every SQL statement touching the watch_progress table. Functions take the cursor first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from videoflix.tables.videos import COLUMNS as VIDEO_COLUMNS
from videoflix.tables.videos import Video, from_row


async def save_position(cur: Any, user_id: int, video_id: int, position: float) -> None:
    """Insert or overwrite the user's position in the video (and mark it just watched)."""
    await cur.execute(
        "INSERT INTO watch_progress (user_id, video_id, position) VALUES (%s, %s, %s)"
        " ON CONFLICT (user_id, video_id) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        (user_id, video_id, position),
    )


async def get_position(cur: Any, user_id: int, video_id: int) -> float | None:
    await cur.execute("SELECT position FROM watch_progress WHERE user_id = %s AND video_id = %s", (user_id, video_id))
    row = await cur.fetchone()
    return row["position"] if row is not None else None


@dataclass(frozen=True, slots=True)
class WatchedVideo:
    """A video the user watched, and where they stopped."""

    video: Video
    position: float
    watched_at: datetime


async def list_recent(cur: Any, user_id: int, limit: int) -> list[WatchedVideo]:
    """The user's watched videos, most recent first."""
    columns = ", ".join(f"v.{name.strip()}" for name in VIDEO_COLUMNS.split(","))
    await cur.execute(
        f"SELECT {columns}, p.position, p.updated_at AS watched_at"
        " FROM watch_progress p JOIN videos v ON v.id = p.video_id"
        " WHERE p.user_id = %s ORDER BY p.updated_at DESC, p.video_id DESC LIMIT %s",
        (user_id, limit),
    )
    return [WatchedVideo(from_row(row), row["position"], row["watched_at"]) for row in await cur.fetchall()]
