"""Who may play which HLS file: names, the watch rule, stream URLs, and the file IO.

Used by handlers/hls.py. Pure parts:
`parse_hls_target`, `hls_file_parts`, `accepts_gzip`. Loop-side parts look rows
up (`watchable_video`, `streamable_video`, `issue_stream_url`). The blocking parts
(`open_inside`, `read_chunk`, `read_gzipped`) run in `services.file_executor`.

Video row cache: an HLS session fetches a segment every few seconds, so ready rows
are kept in-process (`services.video_cache`) for VIDEO_CACHE_SECONDS. Code that
changes a video's status, visibility or renditions, or deletes it, calls
`forget_video(services, video_id)` so the next HLS request reads the row again.
Only ready rows are cached, so a video turning ready is seen at once; a change made
by another process is seen within VIDEO_CACHE_SECONDS (and a deleted video's files
are gone at once anyway). Signed stream URLs always read the row (and the user's
token_version) from PostgreSQL: one query, so a deletion or a password change
stops them on the next request.
"""
from __future__ import annotations

import errno
import gzip
import logging
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from videoflix import db, media, tokens
from videoflix.config import Config
from videoflix.services import Services
from videoflix.tables import videos

log = logging.getLogger(__name__)


# Long enough that a playing session (a request every ~2 s per rendition) almost
# never queries PostgreSQL; short enough that a change made outside this process
# (admin SQL, another server) is seen soon. forget_video() makes it immediate here.
VIDEO_CACHE_SECONDS = 10.0
# Bounds the memory a scan over many ids could make the cache take.
VIDEO_CACHE_MAX_ENTRIES = 10_000
# Playlists are gzipped in memory; a larger file (a 10-hour video at 2 s segments
# is ~1 MB) is sent as is rather than held whole.
MAX_GZIP_BYTES = 4 * 1024 * 1024
GZIP_LEVEL = 6  # zlib's default: playlists are small, level 9 gains ~1% for 2x CPU


class NotFound(Exception):
    """No such video for this caller (unknown, not ready, private, no such file): 404."""


class InvalidStreamToken(Exception):
    """A stream token that is malformed, forged, expired or revoked: 401."""


@dataclass(frozen=True)
class HLSTarget:
    video_id: int
    resolution: str | None  # None for the master playlist
    name: str


def parse_hls_target(kind: str, args: tuple[str, ...]) -> HLSTarget:
    """The validated (video id, resolution, file name) of an HLS path; pure, so it
    runs before any database or disk access. `kind` is master | playlist | segment;
    `args` the path parts after any stream token."""
    if kind == "master":
        (raw_id,), resolution, name = args, None, media.MASTER_PLAYLIST_NAME
    elif kind == "playlist":
        (raw_id, resolution), name = args, media.MEDIA_PLAYLIST_NAME
    else:
        raw_id, resolution, name = args
        if not media.is_segment_name(name):
            raise NotFound()
    video_id = media.parse_video_id(raw_id)
    if video_id is None or (resolution is not None and resolution not in media.RESOLUTIONS):
        raise NotFound()
    return HLSTarget(video_id=video_id, resolution=resolution, name=name)


def hls_file_parts(video: dict, target: HLSTarget) -> tuple[str, ...]:
    """The file below media/<id>/: (master.m3u8,) or (<res>, <name>); a rendition
    above the highest produced is served from the highest (API.md §3,
    media.serve_resolution)."""
    if target.resolution is None:
        return (target.name,)
    served = media.serve_resolution(target.resolution, list(video["resolutions"] or []))
    if served is None:
        raise NotFound()
    return served, target.name


def accepts_gzip(accept_encoding: str) -> bool:
    """True when Accept-Encoding lists gzip (or *) with a non-zero q (RFC 7231 §5.3.4)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False


# --- rows ----------------------------------------------------------------------

def forget_video(services: Services, video_id: int) -> None:
    """Drop a cached video row: call after any change to a video's status,
    visibility or renditions, and after deleting it."""
    services.video_cache.pop(int(video_id), None)


async def _cached_video(services: Services, video_id: int) -> dict | None:
    cache = services.video_cache
    hit = cache.get(video_id)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    async with db.cursor(services.pool) as cur:
        row = await videos.get_playback_video(cur, video_id)
    if row is None or row["status"] != "ready":
        cache.pop(video_id, None)
        return None
    if len(cache) >= VIDEO_CACHE_MAX_ENTRIES:
        cache.pop(next(iter(cache)))  # the oldest insertion
    cache[video_id] = (now + VIDEO_CACHE_SECONDS, row)
    return row


async def watchable_video(services: Services, video_id: int, claims: tokens.SessionClaims) -> dict:
    """The video's playback row if this session may watch it (media.can_watch), else NotFound."""
    video = await _cached_video(services, video_id)
    if video is None or not media.can_watch(video, claims.user_id, claims.is_admin):
        raise NotFound(video_id)
    return video


def _check_viewer(row: dict | None, user_id: int, token_version: int) -> dict:
    """A get_stream_playback row: the user's tokens still valid, the video watchable."""
    if row is None:
        # The video or the user is gone. A deleted user's videos are deleted with
        # them (ON DELETE CASCADE), so "no row" is a deleted video either way.
        raise NotFound()
    if not row["viewer_is_active"] or row["viewer_token_version"] != token_version:
        raise InvalidStreamToken()
    if not media.can_watch(row, user_id, row["viewer_is_admin"]):
        raise NotFound()
    return row


async def streamable_video(config: Config, services: Services, token: str, video_id: int,
                           now: int) -> dict:
    """The video's playback row for a signed stream URL.

    InvalidStreamToken (401) for a malformed, forged, expired or revoked token
    (token_version moved on: the password changed; the user is gone or inactive);
    NotFound (404) once the video is deleted or no longer watchable by that user.
    """
    try:
        claims = tokens.read_stream_token(config.secret_key, token, video_id=video_id, now=now)
    except tokens.TokenError:
        raise InvalidStreamToken() from None
    async with db.cursor(services.pool) as cur:
        row = await videos.get_stream_playback(cur, video_id, claims.user_id)
    return _check_viewer(row, claims.user_id, claims.token_version)


@dataclass(frozen=True)
class StreamURL:
    url: str
    expires_at: str  # ISO-8601 UTC


async def issue_stream_url(config: Config, services: Services, video_id: int,
                           claims: tokens.SessionClaims, now: int) -> StreamURL:
    """A signed playback URL for a video this session may watch (API.md §4).

    NotFound as for the HLS files; InvalidStreamToken when the session predates a
    password change (its token_version is stale): such a session must not mint
    URLs that outlive it."""
    async with db.cursor(services.pool) as cur:
        row = await videos.get_stream_playback(cur, video_id, claims.user_id)
    row = _check_viewer(row, claims.user_id, claims.token_version)
    token, expires_at = tokens.make_stream_token(
        config.secret_key, video_id=video_id, user_id=claims.user_id,
        token_version=row["viewer_token_version"], now=now, ttl_seconds=config.stream_token_ttl)
    url = f"{config.public_url}/api/stream/{token}/{video_id}/{media.MASTER_PLAYLIST_NAME}"
    stamp = datetime.fromtimestamp(expires_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return StreamURL(url=url, expires_at=stamp)


# --- files (blocking: run in services.file_executor) ----------------------------

@dataclass(frozen=True)
class OpenFile:
    fd: int
    path: str  # for messages: root/parts
    stat: os.stat_result
    first: bytes = b""  # the first bytes, when asked for (saves a thread hop)


# Below the video's directory every component is opened relative to its parent
# with O_NOFOLLOW: no symlink is followed there at all, wherever it points, so a
# planted link (to /etc/passwd, to another video) fails with ELOOP, and nothing
# can change between a check and the open (CWE-22, CWE-59, CWE-367). O_NONBLOCK:
# opening a FIFO planted there returns at once (fstat then rejects it) instead of
# hanging a thread.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def open_inside(root: Path, parts: tuple[str, ...], prefetch: int = 0) -> OpenFile | None:
    """Open root/parts[0]/.../parts[-1] for reading if it is a regular file reached
    without following any symlink below `root` (`root` itself, media/<id>, may be
    one: it is the video's real directory wherever it lives); None otherwise.
    `parts` are validated single names (no "/", no ".."). Reads up to `prefetch`
    bytes from the start too."""
    try:
        dir_fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return None
    fd = -1
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileNotFoundError(parts[-1])
        first = os.pread(fd, min(prefetch, info.st_size), 0) if prefetch else b""
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            log.warning("refused a symlink below %s: %s", root, "/".join(parts))
        if fd >= 0:
            os.close(fd)
        return None
    finally:
        os.close(dir_fd)
    return OpenFile(fd=fd, path=os.path.join(root, *parts), stat=info, first=first)


def close_file(opened: OpenFile) -> None:
    os.close(opened.fd)


def read_chunk(fd: int, offset: int, size: int) -> bytes:
    """Up to `size` bytes at `offset` (pread: no shared file position)."""
    return os.pread(fd, size, offset)


def read_gzipped(fd: int, size: int) -> bytes:
    """The whole (small) file, gzip-compressed; mtime=0 so the same file always
    gives the same bytes (stable Content-Length for HEAD and GET)."""
    data = bytearray()
    while len(data) < size:
        chunk = os.pread(fd, size - len(data), len(data))
        if not chunk:
            break
        data += chunk
    return gzip.compress(bytes(data), compresslevel=GZIP_LEVEL, mtime=0)
