"""Where files live under MEDIA_DIR, and who may watch what (pure).

    media/.incoming/<random>.part   an upload being received
    media/sources/<id>              the uploaded original
    media/.work/<id>-<job>/         a transcode in progress (renamed into place on success)
    media/<id>/master.m3u8          our master playlist
    media/<id>/<res>/index.m3u8     one media playlist per rendition (480p, 720p, 1080p)
    media/<id>/<res>/seg_NNNNN.ts   its MPEG-TS segments
    media/<id>/poster.jpg           representative frame, long side <= 1280
    media/<id>/thumbnail.jpg        the same, long side <= 480 (the catalog's thumbnail_url)
"""
from __future__ import annotations

from pathlib import Path

RESOLUTIONS = ("1080p", "720p", "480p")


def video_dir(media_dir: str, video_id: int) -> Path:
    return Path(media_dir) / str(int(video_id))


def source_path(media_dir: str, video_id: int) -> Path:
    return Path(media_dir) / "sources" / str(int(video_id))


def incoming_dir(media_dir: str) -> Path:
    return Path(media_dir) / ".incoming"


def work_dir(media_dir: str) -> Path:
    return Path(media_dir) / ".work"


def can_watch(video: dict, user_id: int | None, is_admin: bool) -> bool:
    """Ready, and public or the caller's own (admins see everything)."""
    if video["status"] != "ready":
        return False
    return video["visibility"] == "public" or is_admin or (user_id is not None and video["owner_id"] == user_id)


def can_manage(video: dict, user_id: int, is_admin: bool) -> bool:
    """Owner or admin: delete, see the detail of a video that is not ready."""
    return is_admin or video["owner_id"] == user_id


def serve_resolution(requested: str, available: list[str]) -> str | None:
    """The rendition to serve for `requested` (API.md §3): itself, or the highest
    produced when the request is above it; None for unknown names or when a
    lower rendition was asked for that does not exist."""
    if requested not in RESOLUTIONS or not available:
        return None
    if requested in available:
        return requested
    ranked = [r for r in RESOLUTIONS if r in available]  # highest first
    highest = ranked[0]
    if RESOLUTIONS.index(requested) < RESOLUTIONS.index(highest):
        return highest
    return None
