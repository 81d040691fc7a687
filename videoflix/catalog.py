"""Videos as the API shows them: catalog (cached in Redis), detail, create, delete, re-run.

The catalog cache is kept per visibility scope: `public` (every ready public
video), `own:<user>` (a user's ready private videos) and `all` (admins). A
caller's list is the merge of the scopes it may see, so one public upload
invalidates one key, not one per user. Each scope has a version counter;
readers fill `catalog:<scope>:<version>` with the version they read *before*
querying, so a fill racing an invalidation lands under a dead version and is
never served.
"""
from __future__ import annotations

import asyncio
import heapq
import json
import logging
import shutil
from datetime import datetime, timezone
from typing import Any

from videoflix import media, playback
from videoflix.config import Config
from videoflix.db import cursor
from videoflix.services import Services
from videoflix.tables import videos
from videoflix.transcode import queue

log = logging.getLogger(__name__)

# A safety net only: every state change invalidates explicitly.
CATALOG_TTL_SECONDS = 300
PROGRESS_KEY = "videoflix:progress:{}"
CANCEL_KEY = "videoflix:cancel:{}"


class VideoNotFound(Exception):
    pass


class VideoBusy(Exception):
    """The video is queued or processing: it cannot be re-run now."""


def iso_utc(moment: datetime) -> str:
    """2026-01-06T10:15:30.123456Z (API.md §2)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def catalog_item(config: Config, video: dict) -> dict[str, Any]:
    """The six catalog keys, in API.md §2's order."""
    ready = video["status"] == "ready"
    return {
        "id": video["id"],
        "created_at": iso_utc(video["created_at"]),
        "title": video["title"],
        "description": video["description"],
        "thumbnail_url": f"{config.public_url}/media/thumbnail/{video['id']}.jpg" if ready else None,
        "category": video["category"] or "",
    }


def detail_item(config: Config, video: dict, progress: float | None) -> dict[str, Any]:
    ready = video["status"] == "ready"
    if ready:
        percent = 100
    elif progress is not None:
        percent = max(0, min(99, int(progress)))
    else:
        percent = 0
    return {
        **catalog_item(config, video),
        "status": video["status"],
        "progress": percent,
        "error": video["error"],
        "duration": video["duration"],
        "width": video["width"],
        "height": video["height"],
        "resolutions": list(video["resolutions"] or []),
        "visibility": video["visibility"],
        "master_url": f"{config.public_url}/api/video/{video['id']}/master.m3u8" if ready else None,
    }


def _scopes(user_id: int, is_admin: bool) -> list[str]:
    return ["all"] if is_admin else ["public", f"own:{user_id}"]


async def _scope_from_db(services: Services, scope: str) -> list[dict]:
    async with cursor(services.pool) as cur:
        if scope == "all":
            rows = await videos.list_ready_all(cur)
        elif scope == "public":
            rows = await videos.list_ready_public(cur)
        else:
            rows = await videos.list_ready_private_of(cur, int(scope.split(":", 1)[1]))
    return rows


async def list_catalog(config: Config, services: Services, user_id: int, is_admin: bool) -> list[dict]:
    """Ready videos the caller may watch, newest first; served from the cache when warm."""
    scopes = _scopes(user_id, is_admin)
    redis = services.redis
    versions = await redis.mget([f"catalog:version:{s}" for s in scopes])
    keys = [f"catalog:{s}:{v or 0}" for s, v in zip(scopes, versions)]
    cached = await redis.mget(keys)
    parts: list[list[dict]] = []
    for scope, key, blob in zip(scopes, keys, cached):
        if blob is not None:
            parts.append(json.loads(blob))
            continue
        items = [{**catalog_item(config, row), "_sort": [row["created_at"].timestamp(), row["id"]]}
                 for row in await _scope_from_db(services, scope)]
        await redis.set(key, json.dumps(items), ex=CATALOG_TTL_SECONDS)
        parts.append(items)
    merged = heapq.merge(*parts, key=lambda item: item["_sort"], reverse=True)
    return [{k: v for k, v in item.items() if k != "_sort"} for item in merged]


async def video_changed(services: Services, video_id: int, owner_id: int) -> None:
    """Call after any change to a video (state, visibility, renditions, deletion):
    drops its cached catalog scopes and its cached playback row."""
    playback.forget_video(services, video_id)
    async with services.redis.pipeline(transaction=False) as pipe:
        for scope in ("all", "public", f"own:{owner_id}"):
            pipe.incr(f"catalog:version:{scope}")
        await pipe.execute()


async def get_progress(services: Services, video_id: int) -> float | None:
    value = await services.redis.get(PROGRESS_KEY.format(video_id))
    return float(value) if value is not None else None


async def get_visible_video(services: Services, video_id: int, user_id: int, is_admin: bool) -> dict:
    """The row if the caller may see its detail (watchers, owner, admin); else VideoNotFound."""
    async with cursor(services.pool) as cur:
        video = await videos.get_video(cur, video_id)
    if video is None or not (media.can_watch(video, user_id, is_admin)
                             or media.can_manage(video, user_id, is_admin)):
        raise VideoNotFound()
    return video


async def create_video(config: Config, services: Services, *, owner_id: int, fields: dict[str, str],
                       visibility: str, source_name: str, source_size: int, probe: Any,
                       temp_path: Any) -> dict:
    """Row + source file + queue entry, all in place before this returns (the job is durable)."""
    async with cursor(services.pool) as cur:
        video_id = await videos.insert_video(
            cur, owner_id=owner_id, title=fields["title"], description=fields["description"],
            category=fields["category"], visibility=visibility, status="queued",
            source_name=source_name, source_size=source_size, duration=probe.duration,
            width=probe.width, height=probe.height,
        )
        # Read before enqueueing: the answer says "queued" even if a consumer
        # picks the job up at once.
        video = await videos.get_video(cur, video_id)
    loop = asyncio.get_running_loop()
    target = media.source_path(config.media_dir, video_id)
    try:
        await loop.run_in_executor(services.executor, _move_into_place, temp_path, target)
        await queue.enqueue(services.redis, video_id)
    except BaseException:
        async with cursor(services.pool) as cur:
            await videos.delete_video(cur, video_id)
        await loop.run_in_executor(services.executor, _remove_files, config.media_dir, video_id)
        raise
    log.info("video %s uploaded by user %s (%s bytes), queued", video_id, owner_id, source_size)
    return video


def _move_into_place(temp_path: Any, target: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp_path.rename(target)


def _remove_files(media_dir: str, video_id: int) -> None:
    shutil.rmtree(media.video_dir(media_dir, video_id), ignore_errors=True)
    media.source_path(media_dir, video_id).unlink(missing_ok=True)
    work = media.work_dir(media_dir)
    if work.is_dir():
        for leftover in work.glob(f"{int(video_id)}-*"):
            shutil.rmtree(leftover, ignore_errors=True)


async def delete_video(config: Config, services: Services, video_id: int, user_id: int,
                       is_admin: bool) -> None:
    """Row, queue entries, source, renditions and pictures; a running job is told to stop."""
    async with cursor(services.pool) as cur:
        video = await videos.get_video(cur, video_id)
        if video is None or not media.can_manage(video, user_id, is_admin):
            raise VideoNotFound()
        if not await videos.delete_video(cur, video_id):
            raise VideoNotFound()
    # The running child polls this key and kills ffmpeg; the runner also
    # discards any output whose row is gone.
    await services.redis.set(CANCEL_KEY.format(video_id), 1, ex=3600)
    await queue.remove_video(services.redis, video_id)
    await asyncio.get_running_loop().run_in_executor(services.executor, _remove_files,
                                                     config.media_dir, video_id)
    await video_changed(services, video_id, video["owner_id"])
    log.info("video %s deleted by user %s", video_id, user_id)


async def retranscode(config: Config, services: Services, video_id: int) -> dict:
    """Queue a ready or failed video again; returns the row as queued."""
    async with cursor(services.pool) as cur:
        video = await videos.get_video(cur, video_id)
        if video is None:
            raise VideoNotFound()
        if not await videos.mark_queued(cur, video_id):
            raise VideoBusy()
        queued = await videos.get_video(cur, video_id)
    await services.redis.delete(PROGRESS_KEY.format(video_id), CANCEL_KEY.format(video_id))
    await queue.enqueue(services.redis, video_id)
    await video_changed(services, video_id, video["owner_id"])
    log.info("video %s queued again", video_id)
    return queued
