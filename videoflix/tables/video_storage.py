"""Every SQL statement touching the video_storage table (sql/007). Cursor first."""

from __future__ import annotations

import json
from typing import Any

COLUMNS = (
    "video_id, version, original_bytes, rendition_bytes, renditions_total, trickplay_bytes, picture_bytes,"
    " subtitle_bytes, encode_cpu_seconds, copy_saved_cpu_seconds, copy_saved_bytes, updated_at"
)
# A video's bytes on disk, all kinds together.
TOTAL = "(original_bytes + renditions_total + trickplay_bytes + picture_bytes + subtitle_bytes)"


async def record(
    cur: Any,
    video_id: int,
    *,
    version: int,
    original_bytes: int,
    rendition_bytes: dict[str, int],
    trickplay_bytes: int,
    picture_bytes: int,
    subtitle_bytes: int,
    encode_cpu_seconds: float,
    copy_saved_cpu_seconds: float | None,
    copy_saved_bytes: int,
) -> None:
    """Insert or replace the ledger row of a video (only while the video exists)."""
    await cur.execute(
        "INSERT INTO video_storage (video_id, version, original_bytes, rendition_bytes, renditions_total,"
        " trickplay_bytes, picture_bytes, subtitle_bytes, encode_cpu_seconds, copy_saved_cpu_seconds,"
        " copy_saved_bytes) SELECT id, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM videos WHERE id = %s"
        " ON CONFLICT (video_id) DO UPDATE SET version = EXCLUDED.version, original_bytes = EXCLUDED.original_bytes,"
        " rendition_bytes = EXCLUDED.rendition_bytes, renditions_total = EXCLUDED.renditions_total,"
        " trickplay_bytes = EXCLUDED.trickplay_bytes, picture_bytes = EXCLUDED.picture_bytes,"
        " subtitle_bytes = EXCLUDED.subtitle_bytes, encode_cpu_seconds = EXCLUDED.encode_cpu_seconds,"
        " copy_saved_cpu_seconds = EXCLUDED.copy_saved_cpu_seconds, copy_saved_bytes = EXCLUDED.copy_saved_bytes,"
        " updated_at = now()",
        (
            version,
            original_bytes,
            json.dumps(rendition_bytes),
            sum(rendition_bytes.values()),
            trickplay_bytes,
            picture_bytes,
            subtitle_bytes,
            encode_cpu_seconds,
            copy_saved_cpu_seconds,
            copy_saved_bytes,
            video_id,
        ),
    )


async def get(cur: Any, video_id: int) -> dict[str, Any] | None:
    await cur.execute(f"SELECT {COLUMNS} FROM video_storage WHERE video_id = %s", (video_id,))
    row: dict[str, Any] | None = await cur.fetchone()
    return row


async def get_many(cur: Any, video_ids: list[int]) -> dict[int, dict[str, Any]]:
    await cur.execute(f"SELECT {COLUMNS} FROM video_storage WHERE video_id = ANY(%s)", (list(video_ids),))
    return {row["video_id"]: row for row in await cur.fetchall()}


_SUMS = (
    "count(*) AS videos, coalesce(sum(original_bytes), 0) AS original_bytes,"
    " coalesce(sum(renditions_total), 0) AS renditions_bytes, coalesce(sum(trickplay_bytes), 0) AS trickplay_bytes,"
    " coalesce(sum(picture_bytes), 0) AS picture_bytes, coalesce(sum(subtitle_bytes), 0) AS subtitle_bytes,"
    f" coalesce(sum({TOTAL}), 0) AS total_bytes, coalesce(sum(copy_saved_cpu_seconds), 0) AS copy_saved_cpu_seconds,"
    " coalesce(sum(copy_saved_bytes), 0) AS copy_saved_bytes"
)


async def totals(cur: Any, owner_id: int | None = None) -> dict[str, Any]:
    """Sums over every video (owner_id None) or one user's."""
    if owner_id is None:
        await cur.execute(f"SELECT {_SUMS} FROM video_storage")
    else:
        await cur.execute(
            f"SELECT {_SUMS} FROM video_storage s JOIN videos v ON v.id = s.video_id WHERE v.owner_id = %s",
            (owner_id,),
        )
    row: dict[str, Any] = await cur.fetchone()
    return row


async def totals_by_user(cur: Any) -> list[dict[str, Any]]:
    """Per owner: id, email and the sums, largest first."""
    await cur.execute(
        f"SELECT u.id AS user_id, u.email, {_SUMS} FROM video_storage s JOIN videos v ON v.id = s.video_id"
        " JOIN users u ON u.id = v.owner_id GROUP BY u.id, u.email ORDER BY total_bytes DESC, u.id"
    )
    rows: list[dict[str, Any]] = await cur.fetchall()
    return rows
