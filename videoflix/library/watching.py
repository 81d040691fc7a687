"""Watch progress (API.md §6): where each user stopped in each video, and "Continue watching".

Positions live in PostgreSQL (tables/watch_progress.py), one row per user and video. A
video counts as finished, and leaves "Continue watching", once the position reaches
FINISHED_FRACTION of its duration (the credits need not be sat through).
"""

from __future__ import annotations

import math
from typing import Any

from videoflix.library import catalog
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.db import cursor
from videoflix.platform.services import Services
from videoflix.tables import watch_progress

# API.md §6: "without finished ones (>= 95 %)".
FINISHED_FRACTION = 0.95
# The continue row is a shelf, not a history: this many items at most.
CONTINUE_LIMIT = 20
# Rows read to fill it (some may be finished, unwatchable now or gone).
CONTINUE_SCAN = 100
# No real video is longer than a few days; anything beyond is a client bug.
MAX_POSITION_SECONDS = 7 * 24 * 3600.0


class InvalidPosition(Exception):
    """The body's `position` is not a finite number >= 0 (the message says why)."""


def parse_position(body: dict[str, Any]) -> float:
    """`position` from a progress body: a JSON number, finite, 0 <= x <= MAX_POSITION_SECONDS."""
    if "position" not in body:
        raise InvalidPosition("This field is required.")
    value = body["position"]
    # bool is an int in Python, and json.loads accepts NaN and Infinity.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidPosition("A valid number is required.")
    if value < 0:
        raise InvalidPosition("Ensure this value is greater than or equal to 0.")
    if value > MAX_POSITION_SECONDS:
        raise InvalidPosition(f"Ensure this value is less than or equal to {MAX_POSITION_SECONDS:.0f}.")
    return float(value)


async def save_position(services: Services, video_id: int, user_id: int, is_admin: bool, position: float) -> None:
    """Store the caller's position in a video it may see; media.VideoNotFound otherwise.

    A position past the end (players report a little over) is stored as the end.
    """
    video = await catalog.get_visible_video(services, video_id, user_id, is_admin)
    if video.duration:
        position = min(position, float(video.duration))
    async with cursor(services.pool) as cur:
        await watch_progress.save_position(cur, user_id, video_id, position)


async def get_position(services: Services, video_id: int, user_id: int) -> float | None:
    async with cursor(services.pool) as cur:
        return await watch_progress.get_position(cur, user_id, video_id)


def is_unfinished(position: float, duration: float | None) -> bool:
    """Started (past 0) and not yet at FINISHED_FRACTION of the duration."""
    if position <= 0:
        return False
    return not duration or position < FINISHED_FRACTION * duration


async def list_continue(config: Config, services: Services, user_id: int, is_admin: bool) -> list[dict[str, Any]]:
    """Catalog items plus `position` and `duration` of what the caller started and did
    not finish, most recently watched first; only videos the caller may still watch."""
    async with cursor(services.pool) as cur:
        rows = await watch_progress.list_recent(cur, user_id, CONTINUE_SCAN)
    items = []
    for row in rows:
        video = row.video
        if not media.can_watch(video, user_id, is_admin) or not is_unfinished(row.position, video.duration):
            continue
        items.append({**catalog.catalog_item(config, video), "position": row.position, "duration": video.duration})
        if len(items) == CONTINUE_LIMIT:
            break
    return items
