"""Videos as the API shows them: the catalog (cached in Redis), a video's detail, its JSON shape.

The catalog cache is kept per visibility scope: `public` (every ready public
video), `own:<user>` (a user's ready private videos) and `all` (admins). A
caller's list is the merge of the scopes it may see, so one public upload
invalidates one key, not one per user. Each scope has a version counter;
readers fill `videoflix:catalog:<scope>:<version>` with the version they read *before*
querying, so a fill racing an invalidation lands under a dead version and is
never served.
"""

from __future__ import annotations

import heapq
import json
import logging
from datetime import UTC, datetime
from typing import Any

from videoflix.library import images
from videoflix.platform import media, rediskeys
from videoflix.platform.config import Config
from videoflix.platform.db import cursor
from videoflix.platform.services import Services
from videoflix.tables import videos
from videoflix.tables.videos import Video
from videoflix.transcode import progress

log = logging.getLogger(__name__)

# A safety net only: every state change invalidates explicitly.
CATALOG_TTL_SECONDS = 300


def iso_utc(moment: datetime) -> str:
    """2026-01-06T10:15:30.123456Z (API.md §2)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def catalog_item(config: Config, video: Video) -> dict[str, Any]:
    """The six catalog keys, in API.md §2's order."""
    live = video.live_version is not None
    return {
        "id": video.id,
        "created_at": iso_utc(video.created_at),
        "title": video.title,
        "description": video.description,
        # Private videos' images live under an unguessable URL (images.py).
        "thumbnail_url": images.image_url(config, video) if live else None,
        "category": video.category or "",
    }


def is_playable(video: Video, playable_version: int | None) -> bool:
    """A live version exists, or the one being built lists a segment in every rendition
    (`playable_version`: progress.read_playable, what the transcode child reported)."""
    building = video.building_version
    return video.live_version is not None or (building is not None and playable_version == building)


def detail_item(
    config: Config,
    video: Video,
    progress: float | None,
    position: float | None = None,
    playable_version: int | None = None,
    subtitles: list[dict[str, Any]] | None = None,
    thumbnails_vtt: str | None = None,
    encoding: dict[str, Any] | None = None,
    show_storage: bool = False,
    storage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """API.md §4's detail, plus §6's `position` (the caller's, or None), `playable`,
    `subtitles` (subtitle_tracks.item each; only when the caller looked them up),
    `thumbnails_vtt` (the live version's track: trickplay.thumbnails_vtt, or None) and
    `encoding` (how the live version was made: encoding.encoding, or None); with
    `show_storage` (the caller owns the video or is an admin) `storage`, its ledger row
    (ledger.detail_storage, or None).
    The detail is shown to the owner and admins, or to those who may watch the live
    version, so `master_url` is given whenever something is playable (the master
    serves the live version, or the one being built to the owner and admins)."""
    ready = video.status == "ready"
    playable = is_playable(video, playable_version)
    if ready:
        percent = 100
    elif progress is not None:
        percent = max(0, min(99, int(progress)))
    else:
        percent = 0
    return {
        **catalog_item(config, video),
        "status": video.status,
        "progress": percent,
        "error": video.error,
        "duration": video.duration,
        "width": video.width,
        "height": video.height,
        "resolutions": list(video.resolutions),
        "visibility": video.visibility,
        "master_url": f"{config.public_url}/api/video/{video.id}/{media.MASTER_PLAYLIST_NAME}" if playable else None,
        "position": position,
        "playable": playable,
        **({"subtitles": subtitles} if subtitles is not None else {}),
        "thumbnails_vtt": thumbnails_vtt,
        "encoding": encoding,
        **({"storage": storage} if show_storage else {}),
    }


def _scopes(user_id: int, is_admin: bool) -> list[str]:
    return ["all"] if is_admin else ["public", f"own:{user_id}"]


async def _scope_from_db(services: Services, scope: str) -> list[Video]:
    async with cursor(services.pool) as cur:
        if scope == "all":
            rows = await videos.list_ready_all(cur)
        elif scope == "public":
            rows = await videos.list_ready_public(cur)
        else:
            rows = await videos.list_ready_private_of(cur, int(scope.split(":", 1)[1]))
    return rows


async def list_catalog(config: Config, services: Services, user_id: int, is_admin: bool) -> list[dict[str, Any]]:
    """Ready videos the caller may watch, newest first; served from the cache when warm."""
    scopes = _scopes(user_id, is_admin)
    redis = services.redis
    versions = await redis.mget([rediskeys.catalog_version(s) for s in scopes])
    keys = [rediskeys.catalog_items(s, v or 0) for s, v in zip(scopes, versions, strict=False)]
    cached = await redis.mget(keys)
    parts: list[list[dict[str, Any]]] = []
    for scope, key, blob in zip(scopes, keys, cached, strict=False):
        if blob is not None:
            parts.append(json.loads(blob))
            continue
        items = [
            {**catalog_item(config, row), "_sort": [row.created_at.timestamp(), row.id]}
            for row in await _scope_from_db(services, scope)
        ]
        await redis.set(key, json.dumps(items), ex=CATALOG_TTL_SECONDS)
        parts.append(items)
    merged = heapq.merge(*parts, key=lambda item: item["_sort"], reverse=True)
    return [{k: v for k, v in item.items() if k != "_sort"} for item in merged]


async def forget_scopes(services: Services, owner_id: int) -> None:
    """Invalidate the cached scopes a video of `owner_id` can appear in."""
    async with services.redis.pipeline(transaction=False) as pipe:
        for scope in ("all", "public", f"own:{owner_id}"):
            pipe.incr(rediskeys.catalog_version(scope))
        await pipe.execute()


async def get_progress(services: Services, video_id: int) -> float | None:
    return await progress.read(services.redis, video_id)


async def get_playable_version(services: Services, video: Video) -> int | None:
    """The building version the transcode child reported playable (None if none is building)."""
    if video.building_version is None:
        return None
    return await progress.read_playable(services.redis, video.id)


async def get_visible_video(services: Services, video_id: int, user_id: int, is_admin: bool) -> Video:
    """The row if the caller may see its detail (watchers, owner, admin); else media.VideoNotFound."""
    async with cursor(services.pool) as cur:
        video = await videos.get_video(cur, video_id)
    if video is None or not (media.can_watch(video, user_id, is_admin) or media.can_manage(video, user_id, is_admin)):
        raise media.VideoNotFound()
    return video
