"""Trick-play on the loop side: the detail's `thumbnails_vtt` (API.md §6).

The transcode child records in a version's ladder.json whether it wrote a thumbnails
track ("thumbnails_vtt", transcode/sprites.py); the detail links the LIVE version's
track, or says null (nothing live, or a run without sprites: a video moved from the
wave-1 layout has none). A finished version's ladder never changes, so the answer is kept
in-process per (video, version), bounded; the ladder is read from the store (delivery/storefiles.py: the file executor on MEDIA_DIR).
The I-frame playlists need nothing here: the master lists them (playlist.render_master
from the same ladder) and web/media_handlers.py serves them with the segments' access rule.
"""

from __future__ import annotations

import logging
from typing import Any

import cachetools

from videoflix.delivery import storefiles
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.tables.videos import Video

log = logging.getLogger(__name__)

# Bounds the memory the answers can take (one small entry per published version).
TRACK_CACHE_MAX_ENTRIES = 10_000


class TrackCache(cachetools.LRUCache[Any, Any]):
    """{(video_id, version): has a track} of finished versions; one per Services."""

    def __init__(self) -> None:
        super().__init__(TRACK_CACHE_MAX_ENTRIES)


def thumbnails_vtt_url(config: Config, video_id: int, version: int) -> str:
    """The absolute URL of a version's thumbnails track (pure); the sheets' URLs in it
    are relative to it."""
    return "%s/api/video/%d/%s/%s/%s" % (
        config.public_url,
        int(video_id),
        media.version_name(version),
        media.THUMBS_DIR,
        media.THUMBNAILS_VTT_NAME,
    )


async def _has_track(config: Config, services: Services, video_id: int, version: int) -> bool:
    cache = services.state(TrackCache)
    known: bool | None = cache.get((video_id, version))
    if known is not None:
        return known
    try:
        ladder = await storefiles.read_ladder(config, services, video_id, version)
    except storefiles.StoreUnavailable as exc:  # the detail says null meanwhile (not kept)
        log.warning("video %s: no thumbnails track while the store is unavailable: %s", video_id, exc)
        return False
    # Only the name the transcoder writes counts: the file's text never makes a URL.
    found = ladder is not None and ladder.get("thumbnails_vtt") == "%s/%s" % (
        media.THUMBS_DIR,
        media.THUMBNAILS_VTT_NAME,
    )
    if ladder is not None and ladder.get("complete") is True:
        cache[(video_id, version)] = found
    return found


async def thumbnails_vtt(config: Config, services: Services, video: Video) -> str | None:
    """The detail's `thumbnails_vtt`: the live version's track URL, or None."""
    version = video.live_version
    if version is None:
        return None
    if not await _has_track(config, services, video.id, version):
        return None
    return thumbnails_vtt_url(config, video.id, version)
