"""Who may play which HLS file: the target of a path, the watch rule, stream URLs.

Used by web/media_handlers.py and web/segment_lane.py. Pure parts:
`parse_hls_target`, `resolve_file`.
Loop-side parts look rows up (`watchable_video`, `streamable_video`,
`issue_stream_url`). Not found is media.VideoNotFound, as everywhere. The files
themselves are opened and read by mediafiles.py (in the file executor).

Video row cache: an HLS session fetches a segment every few seconds, so rows with
a live version are kept in-process (a dict per Services, here) for
VIDEO_CACHE_SECONDS. Code that changes a video's status, visibility or renditions,
or deletes it, calls `forget_video(services, video_id)` so the next HLS request
reads the row again. Rows without a live version are not cached, so a video turning
ready is seen at once, and a request a cached row refuses reads the row again
before it is refused (a version allocated or published since). The live master (a
session's start) always reads the row: a session started once the detail says a new
version is ready plays it, whether or not this process has heard of the switch yet. A change made by
another process (another server, a worker on another host) arrives on the
process's VideoFeed, which calls forget_video too (app.py), or forget_all after a
Redis reconnect; VIDEO_CACHE_SECONDS only bounds what no message announces (admin
SQL) and what falls into a Redis outage. Signed stream URLs always read the row (and the user's
token_version) from PostgreSQL: one query, so a deletion or a password change
stops them on the next request; the logout of the session that asked for the URL
stops it too (sessions.is_live).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cachetools

from videoflix.accounts import sessions, tokens
from videoflix.platform import db, media
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.tables import videos
from videoflix.tables.videos import PlaybackVideo, StreamPlayback

log = logging.getLogger(__name__)


# Long enough that a playing session (a request every ~2 s per rendition) almost
# never queries PostgreSQL; short enough that a change made outside this process
# (admin SQL, another server) is seen soon. forget_video() makes it immediate here.
VIDEO_CACHE_SECONDS = 10.0
# Bounds the memory a scan over many ids could make the cache take.
VIDEO_CACHE_MAX_ENTRIES = 10_000


class InvalidStreamToken(Exception):
    """A stream token that is malformed, forged, expired or revoked: 401."""


@dataclass(frozen=True)
class HLSTarget:
    video_id: int
    resolution: str | None  # None for the master playlist
    name: str
    version: int | None = None  # v<N> in the path; None for the unversioned paths (API.md §3, §4)
    folder: str | None = None  # below a version when not a rendition's: thumbs/ (trick-play)


# Kinds whose path names a version (v<N>): the versioned playlists and segments, and
# trick-play's I-frame playlists and storyboard files.
VERSIONED_KINDS = ("vplaylist", "vsegment", "iframes", "thumbs")


def parse_hls_target(kind: str, args: tuple[str, ...]) -> HLSTarget:
    """The validated (video id, version, resolution, file name) of an HLS path; pure,
    so it runs before any database or disk access. `kind` is master | playlist |
    segment | vplaylist | vsegment | iframes | thumbs; `args` the path parts after any
    stream token."""
    version = None
    folder = None
    if kind == "iframes":
        (raw_id, raw_version, resolution), name = args, media.IFRAME_PLAYLIST_NAME
        version = media.parse_version(raw_version)
    elif kind == "thumbs":
        (raw_id, raw_version, name), resolution, folder = args, None, media.THUMBS_DIR
        version = media.parse_version(raw_version)
        if not media.is_thumbs_file_name(name):
            raise media.VideoNotFound()
    elif kind == "master":
        (raw_id,), resolution, name = args, None, media.MASTER_PLAYLIST_NAME
    elif kind == "playlist":
        (raw_id, resolution), name = args, media.MEDIA_PLAYLIST_NAME
    elif kind == "vplaylist":
        (raw_id, raw_version, resolution), name = args, media.MEDIA_PLAYLIST_NAME
        version = media.parse_version(raw_version)
    else:
        if kind == "vsegment":
            raw_id, raw_version, resolution, name = args
            version = media.parse_version(raw_version)
        else:
            raw_id, resolution, name = args
        if not media.is_segment_name(name):
            raise media.VideoNotFound()
    video_id = media.parse_video_id(raw_id)
    if (
        video_id is None
        or (resolution is not None and resolution not in media.RESOLUTIONS)
        or (kind in VERSIONED_KINDS and version is None)
    ):
        raise media.VideoNotFound()
    return HLSTarget(video_id=video_id, resolution=resolution, name=name, version=version, folder=folder)


@dataclass(frozen=True)
class ServedFile:
    """What to answer an HLS request with: `parts` below media.version_dir(version)."""

    version: int
    parts: tuple[str, ...]
    building: bool  # the version is still being written (EVENT playlists, segments to come)

    @property
    def rendered_master(self) -> bool:
        """The master, rendered from the version's ladder.json (never a file)."""
        return self.parts == (media.MASTER_PLAYLIST_NAME,)


def resolve_file(video: PlaybackVideo, target: HLSTarget, user_id: int | None, is_admin: bool) -> ServedFile:
    """Which version's file answers `target` for this caller (pure); VideoNotFound if none.

    The master: the live version, or while nothing is live the one being built for
    the owner and admins (media.default_version). API.md §3's unversioned paths: the
    live version, a rendition above the highest produced served from the highest
    (media.serve_resolution). Versioned paths: media.can_watch_version, exactly the
    rendition named."""
    building = video.building_version
    if target.version is not None:
        if not media.can_watch_version(video, target.version, user_id, is_admin):
            raise media.VideoNotFound()
        folder = target.folder or target.resolution  # (None for a version's subtitles: no file of ours)
        parts = (target.name,) if folder is None else (folder, target.name)
        return ServedFile(target.version, parts, target.version == building)
    if target.resolution is None:
        version = media.default_version(video, user_id, is_admin)
        if version is None:
            raise media.VideoNotFound()
        return ServedFile(version, (target.name,), version == building and version != video.live_version)
    live = video.live_version
    if live is None or not media.can_watch(video, user_id, is_admin):
        raise media.VideoNotFound()
    served = media.serve_resolution(target.resolution, list(video.resolutions))
    if served is None:
        raise media.VideoNotFound()
    return ServedFile(live, (served, target.name), False)


# --- rows ----------------------------------------------------------------------


class RowCache(cachetools.TTLCache[Any, Any]):
    """{video_id: PlaybackVideo} of one Services (`services.state(RowCache)`): each row
    kept VIDEO_CACHE_SECONDS, at most VIDEO_CACHE_MAX_ENTRIES (least recently used out)."""

    def __init__(self) -> None:
        super().__init__(VIDEO_CACHE_MAX_ENTRIES, VIDEO_CACHE_SECONDS, timer=time.monotonic)


def _row_cache(services: Services) -> RowCache:
    return services.state(RowCache)


def forget_video(services: Services, video_id: int) -> None:
    """Drop a cached video row: call after any change to a video's status,
    visibility or renditions, and after deleting it."""
    _row_cache(services).pop(int(video_id), None)


def forget_all(services: Services) -> None:
    """Drop every cached video row (changes may have been missed: changefeed.py)."""
    _row_cache(services).clear()


async def _cached_video(services: Services, video_id: int, fresh: bool = False) -> PlaybackVideo | None:
    """The playback row (None if there is none); `fresh` skips the cache."""
    cache = _row_cache(services)
    if not fresh:
        hit: videos.PlaybackVideo | None = cache.get(video_id)
        if hit is not None:
            return hit
    async with db.cursor(services.pool) as cur:
        row = await videos.get_playback_video(cur, video_id)
    if row is None or row.live_version is None:
        cache.pop(video_id, None)
        return row
    cache[video_id] = row
    return row


def _is_cached(services: Services, video_id: int) -> bool:
    return video_id in _row_cache(services)


async def ready_video(services: Services, video_id: int) -> PlaybackVideo | None:
    """The video's (cached) playback row if it has a live version, else None: images.py decides."""
    row = await _cached_video(services, video_id)
    return row if row is not None and row.live_version is not None else None


def cached_watchable_file(services: Services, target: HLSTarget, claims: tokens.Viewer) -> ServedFile | None:
    """watchable_file from a fresh cached row alone, without waiting; None when that
    cannot say yes (no fresh row, or the row refuses: watchable_file reads it again)."""
    hit = _row_cache(services).get(target.video_id)
    if hit is None:
        return None
    try:
        return resolve_file(hit, target, claims.user_id, claims.is_admin)
    except media.VideoNotFound:
        return None


async def watchable_video_version(
    services: Services, video_id: int, version: int, viewer: tokens.Viewer
) -> PlaybackVideo:
    """The video's playback row if `viewer` may watch `version` of it (media.can_watch_version), else NotFound."""
    target = HLSTarget(video_id=video_id, resolution=None, name=media.MASTER_PLAYLIST_NAME, version=version)
    return (await _watchable(services, target, viewer))[0]


async def watchable_file(services: Services, target: HLSTarget, claims: tokens.Viewer) -> ServedFile:
    """The file answering `target` for this session (resolve_file), else NotFound."""
    return (await _watchable(services, target, claims))[1]


async def _watchable(services: Services, target: HLSTarget, claims: tokens.Viewer) -> tuple[PlaybackVideo, ServedFile]:
    # The master of the live version starts a session: read the row itself (one query a
    # session), so a session started once the detail says a new version is ready plays
    # that version, even before this process has heard of the change (changefeed).
    fresh = target.version is None and target.name == media.MASTER_PLAYLIST_NAME
    cached = not fresh and _is_cached(services, target.video_id)
    video = await _cached_video(services, target.video_id, fresh=fresh)
    while True:
        try:
            if video is None:
                raise media.VideoNotFound(target.video_id)
            return video, resolve_file(video, target, claims.user_id, claims.is_admin)
        except media.VideoNotFound:
            if not cached:
                raise
            # The cached row may predate a version allocated or published since.
            cached = False
            video = await _cached_video(services, target.video_id, fresh=True)


async def watchable_video(services: Services, video_id: int, claims: tokens.SessionClaims) -> PlaybackVideo:
    """The video's playback row if this session may watch its live version (media.can_watch), else NotFound."""
    video = await _cached_video(services, video_id)
    if video is None or not media.can_watch(video, claims.user_id, claims.is_admin):
        raise media.VideoNotFound(video_id)
    return video


def _check_viewer(row: StreamPlayback | None, user_id: int, token_version: int) -> StreamPlayback:
    """A get_stream_playback row: the user's tokens still valid, and something of the
    video watchable by them (its live version, or the one being built for managers)."""
    if row is None:
        # The video or the user is gone. A deleted user's videos are deleted with
        # them (ON DELETE CASCADE), so "no row" is a deleted video either way.
        raise media.VideoNotFound()
    if not row.viewer_is_active or row.viewer_token_version != token_version:
        raise InvalidStreamToken()
    if media.default_version(row.video, user_id, row.viewer_is_admin) is None:
        raise media.VideoNotFound()
    return row


async def streamable_file(config: Config, services: Services, token: str, target: HLSTarget, now: int) -> ServedFile:
    """The file answering `target` under a signed stream URL (streamable_video + resolve_file)."""
    row, claims = await _stream_row(config, services, token, target.video_id, now)
    return resolve_file(row.video, target, claims.user_id, row.viewer_is_admin)


async def streamable_video(config: Config, services: Services, token: str, video_id: int, now: int) -> PlaybackVideo:
    """The video's playback row for a signed stream URL.

    InvalidStreamToken (401) for a malformed, forged, expired or revoked token
    (token_version moved on: the password changed; the user is gone or inactive);
    NotFound (404) once the video is deleted or no longer watchable by that user.
    """
    return (await _stream_row(config, services, token, video_id, now))[0].video


async def _stream_row(
    config: Config, services: Services, token: str, video_id: int, now: int
) -> tuple[StreamPlayback, tokens.StreamClaims]:
    try:
        claims = tokens.read_stream_token(config.secret_key, token, video_id=video_id, now=now)
    except tokens.TokenError:
        raise InvalidStreamToken() from None
    # The session that asked for the URL: its logout ends the URL too (sessions.py).
    if not await sessions.is_live(services, claims.user_id, claims.token_version, claims.session_id):
        raise InvalidStreamToken()
    async with db.cursor(services.pool) as cur:
        row = await videos.get_stream_playback(cur, video_id, claims.user_id)
    return _check_viewer(row, claims.user_id, claims.token_version), claims


@dataclass(frozen=True)
class StreamURL:
    url: str
    expires_at: str  # ISO-8601 UTC


async def issue_stream_url(
    config: Config, services: Services, video_id: int, claims: tokens.SessionClaims, now: int
) -> StreamURL:
    """A signed playback URL for a video this session may watch (API.md §4).

    NotFound as for the HLS files; InvalidStreamToken when the session predates a
    password change (its token_version is stale): such a session must not mint
    URLs that outlive it."""
    async with db.cursor(services.pool) as cur:
        row = await videos.get_stream_playback(cur, video_id, claims.user_id)
    row = _check_viewer(row, claims.user_id, claims.token_version)
    token, expires_at = tokens.make_stream_token(
        config.secret_key,
        video_id=video_id,
        user_id=claims.user_id,
        token_version=row.viewer_token_version,
        now=now,
        ttl_seconds=config.stream_token_ttl,
        session_id=claims.session_id,
    )
    url = f"{config.public_url}/api/stream/{token}/{video_id}/{media.MASTER_PLAYLIST_NAME}"
    stamp = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return StreamURL(url=url, expires_at=stamp)


# --- media tokens (API.md §7: the master's URIs) --------------------------------------

MEDIA_TOKEN_PREFIX = "/api/media/"


@dataclass(frozen=True)
class MediaFolder:
    """A version's folder as the master hands it out (VIDEOFLIX_MEDIA_TOKEN_FORM):
    `url` is what its URIs start with ("/" at the end); in the path form the token is
    in it, in the query form `query` ("<name>=<token>") goes on every URI, in the
    header form `header` ((name, token)) is told in the master's answer."""

    url: str
    query: str = ""
    header: tuple[str, str] | None = None


def media_token_expiry(now: int, ttl: int) -> int:
    """When a media token made at `now` expires: `ttl` later, rounded up to a step of a
    tenth of it (at most a minute), so one session's master is the same bytes (and ETag)
    for that step, not a new one every second (a HEAD and its GET agree; caches hold)."""
    step = max(1, min(60, ttl // 10))
    return -(-(now + ttl) // step) * step


def media_folder(config: Config, viewer: tokens.SessionClaims, video_id: int, version: int, now: int) -> MediaFolder:
    """The version's folder under a media token of this session, in the configured form:
    /api/media/<token>/<id>/v<N>/, or /api/media/<id>/v<N>/ with the token in a query
    parameter or a header (after VIDEOFLIX_MEDIA_URL, a CDN's origin, if set)."""
    token = tokens.make_media_token(
        config.secret_key,
        video_id=video_id,
        version=version,
        user_id=viewer.user_id,
        token_version=viewer.token_version,
        is_admin=viewer.is_admin,
        session_id=viewer.session_id,
        expires_at=media_token_expiry(now, config.media_token_ttl),
    )
    form = config.media_token_form
    folder = f"{video_id}/{media.version_prefix(version)}"
    if form.carrier == "query":
        return MediaFolder(f"{config.media_url}{MEDIA_TOKEN_PREFIX}{folder}", query=f"{form.name}={token}")
    if form.carrier == "header":
        return MediaFolder(f"{config.media_url}{MEDIA_TOKEN_PREFIX}{folder}", header=(form.name, token))
    return MediaFolder(f"{config.media_url}{MEDIA_TOKEN_PREFIX}{token}/{folder}")
