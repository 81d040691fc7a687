"""Every SQL statement touching the videos table. Functions take the cursor first.

A row travels as a `Video` (every column, typed); the two queries that read less,
or more than one table, have their own small shapes (`VersionState`, `StreamPlayback`).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

# The values sql/002's CHECK constraints allow.
Status = Literal["uploading", "queued", "processing", "ready", "failed"]
Visibility = Literal["public", "private"]


@dataclass(frozen=True, slots=True)
class Video:
    """One row of the videos table. Frozen (resolutions a tuple): the playback row
    cache hands the same object to every request of a session."""

    id: int
    owner_id: int
    title: str
    description: str
    category: str
    visibility: Visibility
    status: Status
    error: str | None
    source_name: str
    source_size: int
    duration: float | None
    width: int | None
    height: int | None
    fps: float | None
    has_audio: bool | None
    resolutions: tuple[str, ...]
    attempts: int
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    live_version: int | None  # None until a run publishes (sql/004); 0: the wave-1 layout
    building_version: int | None  # the version a run is writing, None when none is
    version_seq: int
    live_since: datetime | None


# Every column, in Video's order: the select list of a whole row.
COLUMNS = ", ".join(column.name for column in fields(Video))
# Positional, not Video(**row): a row may carry other columns (a join's), and this is
# the faster of the two on lists (the catalog).
_VIDEO_VALUES = operator.itemgetter(*(column.name for column in fields(Video)))
_RESOLUTIONS_AT = [column.name for column in fields(Video)].index("resolutions")


def from_row(row: Mapping[str, Any]) -> Video:
    """The Video of a dict row holding every column (other keys are ignored); text[]
    arrives as a list."""
    values = list(_VIDEO_VALUES(row))
    values[_RESOLUTIONS_AT] = tuple(values[_RESOLUTIONS_AT])
    return Video(*values)


def _video_or_none(row: Mapping[str, Any] | None) -> Video | None:
    return None if row is None else from_row(row)


async def insert_video(
    cur: Any,
    *,
    owner_id: int,
    title: str,
    description: str,
    category: str,
    visibility: str,
    status: str = "queued",
    source_name: str = "",
    source_size: int = 0,
    duration: float | None = None,
    width: int | None = None,
    height: int | None = None,
    video_id: int | None = None,
) -> int:
    """The new row's id: the next of the sequence, or `video_id` taken before with
    next_video_id (an upload to a bucket stores its source under the id first)."""
    values = (
        owner_id,
        title,
        description,
        category,
        visibility,
        status,
        source_name,
        source_size,
        duration,
        width,
        height,
    )
    if video_id is not None:
        await cur.execute(
            "INSERT INTO videos (id, owner_id, title, description, category, visibility, status,"
            " source_name, source_size, duration, width, height) OVERRIDING SYSTEM VALUE"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (video_id, *values),
        )
        return int((await cur.fetchone())["id"])
    await cur.execute(
        "INSERT INTO videos (owner_id, title, description, category, visibility, status,"
        " source_name, source_size, duration, width, height)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        values,
    )
    return int((await cur.fetchone())["id"])


async def next_video_id(cur: Any) -> int:
    """An id no row has or will get from the sequence (for insert_video(video_id=...))."""
    await cur.execute("SELECT nextval(pg_get_serial_sequence('videos', 'id')) AS id")
    return int((await cur.fetchone())["id"])


async def get_video(cur: Any, video_id: int) -> Video | None:
    await cur.execute(f"SELECT {COLUMNS} FROM videos WHERE id = %s", (video_id,))
    return _video_or_none(await cur.fetchone())


# "Listed" means a live version exists (sql/004): a video being re-transcoded stays listed.
async def list_ready_all(cur: Any) -> list[Video]:
    """Every video with a live version (what admins see), newest first."""
    await cur.execute(f"SELECT {COLUMNS} FROM videos WHERE live_version IS NOT NULL ORDER BY created_at DESC, id DESC")
    return [from_row(row) for row in await cur.fetchall()]


async def list_ready_public(cur: Any) -> list[Video]:
    await cur.execute(
        f"SELECT {COLUMNS} FROM videos WHERE live_version IS NOT NULL AND visibility = 'public'"
        " ORDER BY created_at DESC, id DESC"
    )
    return [from_row(row) for row in await cur.fetchall()]


async def list_ready_private_of(cur: Any, owner_id: int) -> list[Video]:
    await cur.execute(
        f"SELECT {COLUMNS} FROM videos WHERE live_version IS NOT NULL AND visibility = 'private'"
        " AND owner_id = %s ORDER BY created_at DESC, id DESC",
        (owner_id,),
    )
    return [from_row(row) for row in await cur.fetchall()]


# Columns a PATCH may change (API.md §6); the only names update_fields interpolates.
EDITABLE_COLUMNS = ("title", "description", "category", "visibility")


async def update_fields(cur: Any, video_id: int, changes: dict[str, str]) -> Video | None:
    """Set the given editable columns; the updated row, or None if it is gone."""
    names = [name for name in EDITABLE_COLUMNS if name in changes]
    if not names:
        return await get_video(cur, video_id)
    assignments = ", ".join(f"{name} = %s" for name in names)
    await cur.execute(
        f"UPDATE videos SET {assignments}, updated_at = now() WHERE id = %s RETURNING {COLUMNS}",
        (*[changes[name] for name in names], video_id),
    )
    return _video_or_none(await cur.fetchone())


async def list_managed(cur: Any, owner_id: int | None, limit: int) -> list[Video]:
    """Videos in every state, newest first: one owner's, or everyone's (owner_id None)."""
    if owner_id is None:
        await cur.execute(f"SELECT {COLUMNS} FROM videos ORDER BY created_at DESC, id DESC LIMIT %s", (limit,))
    else:
        await cur.execute(
            f"SELECT {COLUMNS} FROM videos WHERE owner_id = %s ORDER BY created_at DESC, id DESC LIMIT %s",
            (owner_id, limit),
        )
    return [from_row(row) for row in await cur.fetchall()]


async def mark_processing(cur: Any, video_id: int) -> Video | None:
    """queued/processing -> processing, counting the attempt and allocating the run's
    version (`building_version`, a new one per delivery: a crashed run's partial
    folder is never written again); None if the row is gone or settled."""
    await cur.execute(
        "UPDATE videos SET status = 'processing', attempts = attempts + 1, error = NULL, updated_at = now(),"
        " version_seq = version_seq + 1, building_version = version_seq + 1"
        f" WHERE id = %s AND status IN ('queued', 'processing') RETURNING {COLUMNS}",
        (video_id,),
    )
    return _video_or_none(await cur.fetchone())


async def mark_ready(
    cur: Any,
    video_id: int,
    *,
    version: int,
    duration: float,
    width: int,
    height: int,
    fps: float,
    has_audio: bool,
    resolutions: list[str],
) -> bool:
    """Publish: version `version` becomes the live one, in this one UPDATE (players of
    the old version switch at their next master request). Only the run that holds
    the row's building_version may."""
    await cur.execute(
        "UPDATE videos SET status = 'ready', error = NULL, duration = %s, width = %s, height = %s,"
        " fps = %s, has_audio = %s, resolutions = %s, updated_at = now(), ready_at = now(),"
        " live_version = %s, live_since = now(), building_version = NULL"
        " WHERE id = %s AND status = 'processing' AND building_version = %s RETURNING id",
        (duration, width, height, fps, has_audio, resolutions, version, video_id, version),
    )
    return await cur.fetchone() is not None


async def mark_failed(cur: Any, video_id: int, error: str) -> bool:
    """The job failed; a live version (if any) stays live."""
    await cur.execute(
        "UPDATE videos SET status = 'failed', error = %s, updated_at = now(), building_version = NULL"
        " WHERE id = %s AND status IN ('queued', 'processing') RETURNING id",
        (error, video_id),
    )
    return await cur.fetchone() is not None


async def mark_queued(cur: Any, video_id: int) -> bool:
    """Back to queued for a re-run (retranscode); not while a job holds it."""
    await cur.execute(
        "UPDATE videos SET status = 'queued', error = NULL, attempts = 0, updated_at = now()"
        " WHERE id = %s AND status IN ('ready', 'failed') RETURNING id",
        (video_id,),
    )
    return await cur.fetchone() is not None


async def unfinished_videos(cur: Any, unchanged_for_seconds: float = 0.0) -> list[tuple[int, int]]:
    """(id, owner id) of queued or processing rows, optionally only those unchanged for
    a while (a row just inserted may not have its queue entry yet)."""
    await cur.execute(
        "SELECT id, owner_id FROM videos WHERE status IN ('queued', 'processing')"
        " AND updated_at <= now() - make_interval(secs => %s) ORDER BY id",
        (float(unchanged_for_seconds),),
    )
    return [(row["id"], row["owner_id"]) for row in await cur.fetchall()]


async def usage(cur: Any, owner_id: int) -> tuple[int, int]:
    """(videos queued or being transcoded, bytes of sources stored) of one owner."""
    await cur.execute(
        "SELECT count(*) FILTER (WHERE status IN ('queued', 'processing')) AS unfinished,"
        " COALESCE(sum(source_size), 0) AS stored FROM videos WHERE owner_id = %s",
        (owner_id,),
    )
    row = await cur.fetchone()
    return int(row["unfinished"]), int(row["stored"])


async def delete_video(cur: Any, video_id: int) -> bool:
    await cur.execute("DELETE FROM videos WHERE id = %s RETURNING id", (video_id,))
    return await cur.fetchone() is not None


# --- HLS delivery (web/media_handlers.py via delivery/playback.py) -----------
# Only what the watch rule and the rendition choice need: one primary-key lookup
# per uncached request. Selecting the whole row instead (a 5,000-character
# description with it) made that lookup about a third slower.
PLAYBACK_COLUMNS = "id, owner_id, visibility, status, resolutions, live_version, building_version"


@dataclass(frozen=True, slots=True)
class PlaybackVideo:
    """The PLAYBACK_COLUMNS of a video row; the access rules (platform/media.py) take
    it as they take a Video. Frozen: the playback row cache shares it."""

    id: int
    owner_id: int
    visibility: Visibility
    status: Status
    resolutions: tuple[str, ...]
    live_version: int | None
    building_version: int | None


def _playback_video(row: Mapping[str, Any]) -> PlaybackVideo:
    return PlaybackVideo(
        row["id"],
        row["owner_id"],
        row["visibility"],
        row["status"],
        tuple(row["resolutions"]),
        row["live_version"],
        row["building_version"],
    )


async def get_playback_video(cur: Any, video_id: int) -> PlaybackVideo | None:
    await cur.execute(f"SELECT {PLAYBACK_COLUMNS} FROM videos WHERE id = %s", (video_id,))
    row = await cur.fetchone()
    return None if row is None else _playback_video(row)


@dataclass(frozen=True, slots=True)
class StreamPlayback:
    """A video's playback columns and its viewer's token state, read together (a
    signed stream URL checks both rows)."""

    video: PlaybackVideo
    viewer_token_version: int
    viewer_is_admin: bool
    viewer_is_active: bool


async def get_stream_playback(cur: Any, video_id: int, viewer_id: int) -> StreamPlayback | None:
    """The playback columns plus the viewer's token_version, is_admin and is_active,
    in one query; None if either row is missing."""
    await cur.execute(
        "SELECT v.id, v.owner_id, v.visibility, v.status, v.resolutions, v.live_version, v.building_version,"
        " u.token_version AS viewer_token_version, u.is_admin AS viewer_is_admin,"
        " u.is_active AS viewer_is_active"
        " FROM videos v JOIN users u ON u.id = %s WHERE v.id = %s",
        (viewer_id, video_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return StreamPlayback(
        _playback_video(row), row["viewer_token_version"], row["viewer_is_admin"], row["viewer_is_active"]
    )


@dataclass(frozen=True, slots=True)
class VersionState:
    """Which of a video's version folders are in use (the sweeper, version_zero.py)."""

    live_version: int | None
    building_version: int | None
    live_since: datetime | None


async def version_states(cur: Any, video_ids: list[int]) -> dict[int, VersionState]:
    """{id: its VersionState} of those rows that exist."""
    await cur.execute(
        "SELECT id, live_version, building_version, live_since FROM videos WHERE id = ANY(%s)", (list(video_ids),)
    )
    return {
        row["id"]: VersionState(row["live_version"], row["building_version"], row["live_since"])
        for row in await cur.fetchall()
    }


# --- the wave-1 layout (library/version_zero.py) ------------------------------
# Rows made ready before versions existed have live_version 0 (sql/004).


async def wave1_video_ids(cur: Any) -> list[int]:
    await cur.execute("SELECT id FROM videos WHERE live_version = 0 ORDER BY id")
    return [row["id"] for row in await cur.fetchall()]


async def allocate_wave1_version(cur: Any, video_id: int) -> int | None:
    """The next version number of a row still at version 0, taken as a transcode run
    takes one (no run can be given it); None once the row is gone or moved."""
    await cur.execute(
        "UPDATE videos SET version_seq = version_seq + 1 WHERE id = %s AND live_version = 0 RETURNING version_seq",
        (video_id,),
    )
    row = await cur.fetchone()
    return None if row is None else row["version_seq"]


async def publish_wave1_version(cur: Any, video_id: int, version: int) -> int | None:
    """Version `version` (the moved wave-1 files) becomes the live one where the row
    still says 0: the video's owner_id, or None when it no longer does."""
    await cur.execute(
        "UPDATE videos SET live_version = %s, live_since = now() WHERE id = %s AND live_version = 0 RETURNING owner_id",
        (version, video_id),
    )
    row = await cur.fetchone()
    return None if row is None else row["owner_id"]


# --- the admin console (console/user_admin.py, console/video_admin.py) ---------


async def owned_videos(cur: Any, owner_id: int) -> list[tuple[int, str, int]]:
    """(id, title, source bytes) of every video of one owner, oldest first."""
    await cur.execute("SELECT id, title, source_size FROM videos WHERE owner_id = %s ORDER BY id", (owner_id,))
    return [(row["id"], row["title"], int(row["source_size"])) for row in await cur.fetchall()]


# A video as the console lists it: its row's facts and its owner's email.
ADMIN_COLUMNS = (
    "v.id, v.owner_id, u.email AS owner_email, v.title, v.status, v.visibility, v.error, v.source_size,"
    " v.attempts, v.created_at, v.updated_at, v.live_version, v.duration"
)
# The orders the console's video list may take (the only text interpolated into it).
ADMIN_ORDERS = {
    "-created": "v.created_at DESC, v.id DESC",
    "created": "v.created_at ASC, v.id ASC",
    "-size": "v.source_size DESC, v.id DESC",
    "size": "v.source_size ASC, v.id ASC",
    "title": "v.title ASC, v.id ASC",
    "-updated": "v.updated_at DESC, v.id DESC",
}


async def admin_rows(cur: Any, video_ids: list[int]) -> dict[int, dict[str, Any]]:
    """{id: the console's columns} of those of `video_ids` that exist."""
    await cur.execute(
        f"SELECT {ADMIN_COLUMNS} FROM videos v JOIN users u ON u.id = v.owner_id WHERE v.id = ANY(%s)",
        (list(video_ids),),
    )
    return {row["id"]: row for row in await cur.fetchall()}


async def list_for_admin(
    cur: Any,
    *,
    status: str | None,
    visibility: str | None,
    owner_id: int | None,
    title_like: str | None,
    order: str,
    limit: int,
    offset: int,
) -> tuple[int, list[dict[str, Any]]]:
    """(how many match, one page): every user's videos, in every state."""
    conditions = []
    args: list[Any] = []
    for condition, value in (
        ("v.status = %s", status),
        ("v.visibility = %s", visibility),
        ("v.owner_id = %s", owner_id),
        ("lower(v.title) LIKE %s", title_like),
    ):
        if value is not None:
            conditions.append(condition)
            args.append(value)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    await cur.execute(f"SELECT count(*) AS n FROM videos v{where}", args)
    total = int((await cur.fetchone())["n"])
    await cur.execute(
        f"SELECT {ADMIN_COLUMNS} FROM videos v JOIN users u ON u.id = v.owner_id{where}"
        f" ORDER BY {ADMIN_ORDERS[order]} LIMIT %s OFFSET %s",
        (*args, limit, offset),
    )
    rows: list[dict[str, Any]] = await cur.fetchall()
    return total, rows


async def count_failed(cur: Any) -> int:
    await cur.execute("SELECT count(*) AS n FROM videos WHERE status = 'failed'")
    return int((await cur.fetchone())["n"])


# --- downloads (delivery/download.py; sql/006) ---------------------------------


async def downloads_enabled(cur: Any, video_id: int) -> bool | None:
    """Whether the video may be downloaded; None when there is no such video."""
    await cur.execute("SELECT downloads_enabled FROM videos WHERE id = %s", (video_id,))
    row = await cur.fetchone()
    return None if row is None else bool(row["downloads_enabled"])


async def set_downloads_enabled(cur: Any, video_id: int, enabled: bool) -> bool:
    await cur.execute(
        "UPDATE videos SET downloads_enabled = %s WHERE id = %s RETURNING id",
        (enabled, video_id),
    )
    return await cur.fetchone() is not None
