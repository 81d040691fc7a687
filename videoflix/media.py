"""Where files live under MEDIA_DIR, every name in there, and who may watch what (pure).

    media/.incoming/<random>.part   an upload being received
    media/sources/<id>              the uploaded original
    media/.work/<id>-<job>/         a transcode in progress (renamed into place on success)
    media/.work/<id>-<job>.lease    its lease fence: the monotonic time its ffmpeg must stop by
    media/<id>/master.m3u8          our master playlist
    media/<id>/<res>/index.m3u8     one media playlist per rendition (RUNGS: 1080p, 720p, 480p)
    media/<id>/<res>/seg_NNNNN.ts   its MPEG-TS segments
    media/<id>/poster.jpg           representative frame, long side <= 1280
    media/<id>/thumbnail.jpg        the same, long side <= 480 (the catalog's thumbnail_url)

The transcoder writes these names and the HTTP layer serves them: both take them
from here, and the serving rules (SEGMENT_NAME_RE, RESOLUTIONS) are derived from
what is written, so the two cannot drift apart.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MASTER_PLAYLIST_NAME = "master.m3u8"
MEDIA_PLAYLIST_NAME = "index.m3u8"
POSTER_NAME = "poster.jpg"
THUMBNAIL_NAME = "thumbnail.jpg"
# ffmpeg's -hls_segment_filename pattern; 5 digits of 4 s segments cover 111 hours.
SEGMENT_PATTERN = "seg_%05d.ts"


def _segment_name_re(pattern: str) -> re.Pattern[str]:
    """The names `pattern` (one %0Nd) writes, exactly: ASCII digits only, for
    fullmatch (`\\d` takes Unicode digits, `$` a trailing newline: CWE-22)."""
    head, width, tail = re.fullmatch(r"([^%]*)%0([1-9])d([^%]*)", pattern).groups()
    return re.compile(f"{re.escape(head)}[0-9]{{{width}}}{re.escape(tail)}")


SEGMENT_NAME_RE = _segment_name_re(SEGMENT_PATTERN)


@dataclass(frozen=True)
class Rung:
    name: str  # the rendition's folder under media/<id>/ and its URL part
    short_side: int  # rungs are named by the shorter side, so portrait video ranks the same
    max_kbps: int


# The rendition ladder, highest first: adding a rung is one line here. 6000 and
# 3000 kb/s are the 1080p and 720p rows of Apple's HLS authoring spec ladder; 1400
# sits between its 432p and 540p rows. The cap keeps BANDWIDTH meaningful under CRF.
RUNGS: tuple[Rung, ...] = (
    Rung("1080p", 1080, 6000),
    Rung("720p", 720, 3000),
    Rung("480p", 480, 1400),
)
RESOLUTIONS = tuple(rung.name for rung in RUNGS)

# A video id in a URL: decimal, no sign, no leading zero (one id has exactly one
# URL), fits a bigint. Routes and parse_video_id both use it.
VIDEO_ID_PATTERN = "[1-9][0-9]{0,17}"
_VIDEO_ID_RE = re.compile(VIDEO_ID_PATTERN)


class VideoNotFound(Exception):
    """No such video for this caller (unknown, not visible, not ready, no such
    file): always 404, so a private video cannot be told from a missing one."""


def parse_video_id(raw: str) -> int | None:
    return int(raw) if _VIDEO_ID_RE.fullmatch(raw) else None


def is_segment_name(name: str) -> bool:
    return SEGMENT_NAME_RE.fullmatch(name) is not None


def video_dir(media_dir: str, video_id: int) -> Path:
    return Path(media_dir) / str(int(video_id))


def source_path(media_dir: str, video_id: int) -> Path:
    return Path(media_dir) / "sources" / str(int(video_id))


def incoming_dir(media_dir: str) -> Path:
    return Path(media_dir) / ".incoming"


def work_dir(media_dir: str) -> Path:
    return Path(media_dir) / ".work"


def lease_fence(work: Path) -> Path:
    """The fence file beside a work folder (transcode/runner.py writes and reads it)."""
    return work.with_name(work.name + LEASE_FENCE_SUFFIX)


LEASE_FENCE_SUFFIX = ".lease"


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
