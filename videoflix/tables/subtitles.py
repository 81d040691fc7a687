"""Every SQL statement touching the subtitles table. Functions take the cursor first."""

from __future__ import annotations

from typing import Any

from videoflix.tables.videos import COLUMNS as VIDEO_COLUMNS
from videoflix.tables.videos import Video, from_row

COLUMNS = "video_id, language, label, origin, cue_count, created_at, updated_at"
ORIGINS = ("upload", "track")


async def list_for_video(cur: Any, video_id: int) -> list[dict[str, Any]]:
    """A video's subtitles, by label (the menu's order)."""
    await cur.execute(f"SELECT {COLUMNS} FROM subtitles WHERE video_id = %s ORDER BY label, language", (video_id,))
    rows: list[dict[str, Any]] = await cur.fetchall()
    return rows


async def list_for_videos(cur: Any, video_ids: list[int]) -> list[dict[str, Any]]:
    await cur.execute(
        f"SELECT {COLUMNS} FROM subtitles WHERE video_id = ANY(%s) ORDER BY video_id, label, language",
        (list(video_ids),),
    )
    rows: list[dict[str, Any]] = await cur.fetchall()
    return rows


async def get(cur: Any, video_id: int, language: str) -> dict[str, Any] | None:
    await cur.execute(f"SELECT {COLUMNS} FROM subtitles WHERE video_id = %s AND language = %s", (video_id, language))
    row: dict[str, Any] | None = await cur.fetchone()
    return row


async def upsert(cur: Any, video_id: int, language: str, label: str, origin: str, cue_count: int) -> dict[str, Any]:
    """Insert, or replace the row of that language (label, origin and count)."""
    await cur.execute(
        "INSERT INTO subtitles (video_id, language, label, origin, cue_count) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (video_id, language) DO UPDATE SET label = EXCLUDED.label, origin = EXCLUDED.origin,"
        f" cue_count = EXCLUDED.cue_count, updated_at = now() RETURNING {COLUMNS}",
        (video_id, language, label, origin, cue_count),
    )
    row: dict[str, Any] = await cur.fetchone()
    return row


async def delete(cur: Any, video_id: int, language: str) -> bool:
    await cur.execute(
        "DELETE FROM subtitles WHERE video_id = %s AND language = %s RETURNING language", (video_id, language)
    )
    return await cur.fetchone() is not None


async def lock_video(cur: Any, video_id: int) -> Video | None:
    """Lock the video's row (inside a transaction): one subtitle change per video at a
    time, so the label check and the write cannot interleave with another's."""
    await cur.execute(f"SELECT {VIDEO_COLUMNS} FROM videos WHERE id = %s FOR UPDATE", (video_id,))
    row = await cur.fetchone()
    return None if row is None else from_row(row)
