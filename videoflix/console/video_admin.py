"""Every user's videos in one list, for admins (status, owner, visibility, size,
created, failed reason), with filters, and bulk actions: transcode again, make
private, delete. Each video of a bulk action is its own change with its own audit
entry; the answer says, per video, what happened."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from videoflix.console import audit, queries
from videoflix.console.audit import Actor
from videoflix.library import lifecycle
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.services import Services
from videoflix.tables import videos as video_rows
from videoflix.tables.videos import Video

log = logging.getLogger(__name__)

MAX_PAGE = 100
DEFAULT_PAGE = 25
ORDERS = tuple(video_rows.ADMIN_ORDERS)
STATUSES = ("uploading", "queued", "processing", "ready", "failed")
VISIBILITIES = ("public", "private")
BULK_ACTIONS = ("retranscode", "make_private", "delete")
# Videos one bulk request may name (it counts as one action against the throttle).
MAX_BULK_IDS = 100


@dataclass(frozen=True)
class VideoQuery:
    status: str | None = None
    visibility: str | None = None
    owner_id: int | None = None
    search: str | None = None
    order: str = "-created"
    limit: int = DEFAULT_PAGE
    offset: int = 0


def parse_query(args: Mapping[str, str]) -> VideoQuery:
    """`status`, `visibility`, `owner` (a user id), `search` (part of the title),
    `order` (ORDERS), `limit`, `offset`. QueryError when one is bad."""
    return VideoQuery(
        status=queries.choice(args, "status", STATUSES),
        visibility=queries.choice(args, "visibility", VISIBILITIES),
        owner_id=queries.integer(args, "owner", None, 1, 2**63 - 1),
        search=queries.text(args, "search"),
        order=queries.choice(args, "order", ORDERS, "-created") or "-created",
        limit=queries.integer(args, "limit", DEFAULT_PAGE, 1, MAX_PAGE) or DEFAULT_PAGE,
        offset=queries.integer(args, "offset", 0, 0, 10**9) or 0,
    )


def video_item(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "owner_id": row["owner_id"],
        "owner_email": row["owner_email"],
        "status": row["status"],
        "visibility": row["visibility"],
        "size": int(row["source_size"]),
        "duration": row["duration"],
        "created_at": row["created_at"].isoformat(),
        "error": row["error"],
        "listed": row["live_version"] is not None,
    }


async def list_videos(services: Services, query: VideoQuery) -> dict[str, Any]:
    async with cursor(services.pool) as cur:
        total, rows = await video_rows.list_for_admin(
            cur,
            status=query.status,
            visibility=query.visibility,
            owner_id=query.owner_id,
            title_like=queries.like_pattern(query.search.lower()) if query.search else None,
            order=query.order,
            limit=query.limit,
            offset=query.offset,
        )
    return {"count": total, "limit": query.limit, "offset": query.offset, "results": [video_item(r) for r in rows]}


@dataclass(frozen=True)
class BulkRequest:
    action: str
    ids: tuple[int, ...]


def check_bulk(body: Mapping[str, Any]) -> BulkRequest:
    """{"action": one of BULK_ACTIONS, "ids": [video ids]} (1 to MAX_BULK_IDS, no repeats kept)."""
    errors: dict[str, list[str]] = {}
    action = body.get("action")
    if action not in BULK_ACTIONS:
        errors["action"] = [f"Must be one of: {', '.join(BULK_ACTIONS)}."]
    ids = body.get("ids")
    if (
        not isinstance(ids, list)
        or not ids
        or not all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i < 2**63 for i in ids)
    ):
        errors["ids"] = ["A non-empty list of video ids."]
    elif len(ids) > MAX_BULK_IDS:
        errors["ids"] = [f"At most {MAX_BULK_IDS} videos at once."]
    if errors:
        raise queries.QueryError(errors)
    assert isinstance(action, str) and isinstance(ids, list)
    return BulkRequest(action, tuple(dict.fromkeys(ids)))


async def _retranscode(config: Config, services: Services, actor: Actor, video_id: int) -> str:
    async def record(cur: Any, video: Video) -> None:
        await audit.record(cur, actor, "video.retranscode", "video", video_id, video.title, {"status": video.status})

    try:
        await lifecycle.retranscode(config, services, video_id, before_commit=record)
    except lifecycle.VideoBusy:
        return "busy"
    return "queued"


async def _make_private(services: Services, actor: Actor, video_id: int) -> str:
    async with transaction(services.pool) as cur:
        video = await video_rows.get_video(cur, video_id)
        if video is None:
            raise media.VideoNotFound()
        if video.visibility == "private":
            return "unchanged"
        await video_rows.update_fields(cur, video_id, {"visibility": "private"})
        await audit.record(cur, actor, "video.make_private", "video", video_id, video.title, {"visibility": "public"})
    await lifecycle.video_changed(services, video_id, video.owner_id)
    return "private"


async def delete_video(config: Config, services: Services, actor: Actor, video_id: int) -> str:
    async with transaction(services.pool) as cur:
        video = await video_rows.get_video(cur, video_id)
        if video is not None:
            # With a bucket: its objects counted first (the store down: 503, nothing deleted).
            await lifecycle.count_files(config, services, [video_id])
        if video is None or not await video_rows.delete_video(cur, video_id):
            raise media.VideoNotFound()
        await audit.record(
            cur,
            actor,
            "video.delete",
            "video",
            video_id,
            video.title,
            {"owner_id": video.owner_id, "status": video.status, "source_bytes": video.source_size},
        )
    await lifecycle.remove_deleted(config, services, video_id, video.owner_id)
    return "deleted"


async def bulk(config: Config, services: Services, actor: Actor, request: BulkRequest) -> dict[str, Any]:
    """Apply one action to each video: {"action", "results": [{"id", "result"}]}, where
    result is queued/busy (retranscode), private/unchanged (make_private), deleted,
    or not_found."""
    results = []
    for video_id in request.ids:
        try:
            if request.action == "retranscode":
                result = await _retranscode(config, services, actor, video_id)
            elif request.action == "make_private":
                result = await _make_private(services, actor, video_id)
            else:
                result = await delete_video(config, services, actor, video_id)
        except media.VideoNotFound:
            result = "not_found"
        results.append({"id": video_id, "result": result})
    log.info("bulk %s of %d video(s) by %s (%s)", request.action, len(request.ids), actor.email, actor.address)
    return {"action": request.action, "results": results}
