"""Who may fetch a video's thumbnail and poster (issue 8, item 2; CWE-639, CWE-200).

Two URL forms, both under /media/thumbnail/ and /media/poster/:

- `<id>.jpg`: a public, ready video's images, for anyone, cacheable by shared caches
  (`public`). A private video's only for its owner and admins, by the access cookie or
  `Authorization: Bearer` (`private`, `Vary: Cookie, Authorization`); for anyone else
  it is a 404 like a missing video (sequential ids reveal nothing).
- `<id>-<key>.jpg`: `key` is a 132-bit MAC of the id under SECRET_KEY (tokens.image_key):
  unguessable and listed nowhere but in the `thumbnail_url` of those who may see the
  video. It needs no cookie: the key is the credential (`private`).

Both serve the images of the video's live version (the cached playback row says
which: playback.ready_video); a video with no live version has none.

The catalog and the detail give private videos the keyed URL: an `<img>` sends no
Authorization header and sends cookies only same-site (the frontend on another port
of the same host is same-site, but on `localhost` against `127.0.0.1` or on another
domain it is not), and an expired access cookie would break every thumbnail on the
page until the next API call refreshed it. The keyed URL works in all of these, so the
frontend needs no change. Public videos keep the plain URL (API.md §2's example).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from videoflix.accounts import sessions, tokens
from videoflix.delivery import playback
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.tables.videos import Video

THUMBNAIL_KIND = "thumbnail"
POSTER_KIND = "poster"
# Public images change only when a video is re-transcoded: a week, then a revalidation.
PUBLIC_CACHE_CONTROL = "public, max-age=604800"
# The keyed URL is a capability: the browser may keep it, no shared cache may.
KEYED_CACHE_CONTROL = "private, max-age=604800"
# Fetched with the owner's or an admin's credentials: kept briefly, by that browser only.
OWNER_CACHE_CONTROL = "private, max-age=3600"
OWNER_VARY = "Cookie, Authorization"

_NAME_RE = re.compile(
    r"(%s)(?:-([A-Za-z0-9_-]{%d}))?\.jpg" % (media.VIDEO_ID_PATTERN, tokens.IMAGE_KEY_CHARS), re.ASCII
)


@dataclass(frozen=True)
class ImageRequest:
    video_id: int
    key: str | None  # None for the plain <id>.jpg form


def parse_image_name(name: str) -> ImageRequest | None:
    """`<id>.jpg` or `<id>-<key>.jpg` (pure); None for anything else."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    return ImageRequest(video_id=int(match.group(1)), key=match.group(2))


def file_name(kind: str) -> str:
    return media.THUMBNAIL_NAME if kind == THUMBNAIL_KIND else media.POSTER_NAME


def image_url(config: Config, video: Video, kind: str = THUMBNAIL_KIND) -> str:
    """The absolute URL of a video's image for someone who may see the video."""
    video_id = int(video.id)
    if video.visibility == "public":
        return f"{config.public_url}/media/{kind}/{video_id}.jpg"
    return f"{config.public_url}/media/{kind}/{video_id}-{tokens.image_key(config.secret_key, video_id)}.jpg"


@dataclass(frozen=True)
class ImageAccess:
    cache_control: str
    version: int  # the live version, whose images are served (media.version_dir)
    vary: str | None = None


async def image_access(
    config: Config, services: Services, request: ImageRequest, claims: tokens.SessionClaims | None
) -> ImageAccess:
    """How the image may be served to this caller; media.VideoNotFound when it may not.
    A private video's owner or admin must hold a live session (sessions.is_live:
    not logged out, no password change since); sessions.Unavailable when that
    cannot be told."""
    if request.key is not None and not tokens.check_image_key(config.secret_key, request.video_id, request.key):
        raise media.VideoNotFound(request.video_id)  # before any database access
    video = await playback.ready_video(services, request.video_id)
    if video is None or video.live_version is None:
        raise media.VideoNotFound(request.video_id)
    version = video.live_version
    if request.key is not None:
        return ImageAccess(KEYED_CACHE_CONTROL, version)
    if video.visibility == "public":
        return ImageAccess(PUBLIC_CACHE_CONTROL, version)
    if (
        claims is not None
        and media.can_watch(video, claims.user_id, claims.is_admin)
        and await sessions.is_live(services, claims.user_id, claims.token_version, claims.session_id)
    ):
        return ImageAccess(OWNER_CACHE_CONTROL, version, OWNER_VARY)
    raise media.VideoNotFound(request.video_id)
