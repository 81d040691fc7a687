"""The detail's `encoding` (issue 23): how the live version was made, from its ladder.json.

Also what the run read: the original, or, once the original was removed by policy
(transcode/originals.py), the previous version's top rung.

The transcode child records in each version's ladder.json whether the top rung is the
source's video stream, copied, and when not, why (transcode/copyfit.py): the studio shows
"copied" or "encoded: source GOP 10 s". Null when nothing is live, or for a version made
before issue 23 (its ladder says nothing). A finished version's ladder never changes, so
the answer is kept in-process per (video, version), bounded; the ladder is read in the
file executor.
"""

from __future__ import annotations

import logging
from typing import Any

import cachetools

from videoflix.delivery import storefiles
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.tables.videos import Video

log = logging.getLogger(__name__)

# Bounds the memory the answers can take (one small entry per published version).
ENCODING_CACHE_MAX_ENTRIES = 10_000
# A reason is a few words from copyfit.py; anything longer is not ours.
MAX_TEXT = 120


class EncodingCache(cachetools.LRUCache[Any, Any]):
    """{(video_id, version): encoding dict or None} of finished versions; one per Services."""

    def __init__(self) -> None:
        super().__init__(ENCODING_CACHE_MAX_ENTRIES)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_TEXT else None


def encoding_from_ladder(ladder: dict[str, Any] | None) -> dict[str, Any] | None:
    """The detail's `encoding` from a version's ladder (pure): only the fields and types
    the transcoder writes; `audio` None when the video has no sound."""
    copy = ladder.get("copy") if ladder is not None else None
    if not isinstance(copy, dict) or not isinstance(copy.get("video"), bool):
        return None
    video = copy["video"]
    variants = ladder.get("variants") if ladder is not None else None
    has_audio = isinstance(variants, list) and any(
        isinstance(v, dict) and "mp4a" in str(v.get("codecs", "")) for v in variants
    )
    return {
        "video": "copied" if video else "encoded",
        "audio": "copied" if copy.get("audio") is True else "encoded" if has_audio else None,
        "reason": None if video else _text(copy.get("reason")),
        "audio_reason": _text(copy.get("audio_reason")),
        "note": _text(copy.get("note")),
        # What the run read: "the original", or "the 1080p rung of v3 (no original)".
        "input": _text(ladder.get("input")) if ladder is not None else None,
    }


async def encoding(config: Config, services: Services, video: Video) -> dict[str, Any] | None:
    """The live version's encoding (see encoding_from_ladder), or None."""
    version = video.live_version
    if version is None:
        return None
    cache = services.state(EncodingCache)
    key = (video.id, version)
    if key in cache:
        known: dict[str, Any] | None = cache[key]
        return known
    try:
        ladder = await storefiles.read_ladder(config, services, video.id, version)
    except storefiles.StoreUnavailable as exc:  # the detail says null meanwhile (not kept)
        log.warning("video %s: no encoding while the store is unavailable: %s", video.id, exc)
        return None
    found = encoding_from_ladder(ladder)
    if ladder is not None and ladder.get("complete") is True:
        cache[key] = found
    return found
