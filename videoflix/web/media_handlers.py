"""HLS delivery, API.md §3 and §4: playlists, segments, signed stream URLs, images.

The file handlers are `tornado.web.StaticFileHandler`s. Reused from it:
`should_return_304` (If-None-Match first, else If-Modified-Since: RFC 7232 §6) and
the header hooks. Ours, and why:
- `get`: access is decided (asynchronously, one small query at most) before any file
  is opened, and the file is opened and read in `services.file_executor`, in
  FILE_CHUNK_BYTES chunks with one read ahead, never whole and never on the loop
  (the parent reads synchronously on the loop). A plain GET reads its first chunk
  in the same thread hop as the open, and that chunk leaves with the headers: a
  ~1 MB segment costs one hop and one send. Range rules are the parent's (RFC 7233):
  one range -> 206 + Content-Range, unsatisfiable -> 416 `bytes */size`, the full
  range -> 200, a malformed Range (or several ranges) is ignored; plus If-Range (§3.2).
- Files are opened component by component with O_NOFOLLOW below media/<id>/
  (mediafiles.open_inside): no symlink there is followed, no path is resolved and
  then reopened.
- `compute_etag`: size + mtime + inode from the one fstat, not the parent's SHA-512
  of the whole file computed on the loop and cached forever. `set_headers`: the
  parent's headers (Accept-Ranges, ETag, Last-Modified, Content-Type, then
  set_extra_headers) without its Expires (Cache-Control is ours), Last-Modified
  formatted once per mtime.
- Segments' open files are kept a few seconds (openfiles.py): a segment GET that
  finds its file open makes no thread hop. A plain segment GET whose every
  decision is cached is answered before it reaches these handlers, by the
  segment lane (lane.py), with the headers made by the same functions and
  policy (KINDS, file_etag, http_date); everything else comes here.
- Bodies on plain connections go by os.sendfile once the headers are flushed
  (zerocopy.py): no thread reads and no copies; the chunked reads above remain for
  TLS and gzip. With VIDEOFLIX_ACCEL_REDIRECT, playlists and segments are
  authorised here and sent by nginx (accel.py, `_accel_redirect`).
- Playlists are gzipped when the client accepts it (they are small and compress
  ~5x). A gzipped answer ignores Range (RFC 7233 §3.1 lets a server ignore it) and
  says `Accept-Ranges: none`; players never range-request playlists, and ranges of
  the identity bytes are still served to clients that do not ask for gzip.
- Errors are JSON (JSONErrorsMixin) and are 404, never 403: a caller cannot tell a
  private video from a missing one, or a refused path from an absent file.
- Versions (README, Architecture: Transcode): playback.resolve_file says which version's file answers
  (the live one; the one being built for the owner and admins). The master of a
  version is rendered per request from its ladder.json (playlist.render_master,
  ETag + 304). A playlist
  or segment of the version being built that is not written yet is waited for up to
  BUILDING_WAIT_SECONDS, then answered 503 with Retry-After (hls.js retries a 5xx,
  not a 404); a finished version answers at once.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import email.utils
import functools
import gzip
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.iostream
import tornado.web

from videoflix.accounts import sessions, tokens
from videoflix.delivery import accel, httpranges, mediafiles, openfiles, playback, zerocopy
from videoflix.library import images, subtitle_tracks
from videoflix.platform import media
from videoflix.transcode import ladderfile
from videoflix.transcode.playlist import PlaylistError, render_master
from videoflix.web.base import (
    INVALID_TOKEN,
    APIError,
    AuthMixin,
    BaseHandler,
    CorsMixin,
    JSONErrorsMixin,
    ServicesMixin,
    authenticated,
    public,
)
from videoflix.web.observe import ObservedMixin

log = logging.getLogger(__name__)

# A ~1 MB segment is one chunk: read in the same thread hop as the open, sent with
# the headers. A download holds two chunks at most (one being sent, one read ahead).
# 512 KiB measured ~20% slower in bench/serve.py, 2 MiB no faster.
FILE_CHUNK_BYTES = 1024 * 1024
# A versioned segment never changes (a re-transcode writes a new version), and only
# this caller may keep it; so does the VOD playlist of a finished version.
SEGMENT_CACHE_CONTROL = "private, max-age=31536000, immutable"
IMMUTABLE_CACHE_CONTROL = SEGMENT_CACHE_CONTROL
# API.md §3's unversioned segment paths are served from whichever version is live,
# which a re-transcode changes under them: kept briefly, never immutable.
UNVERSIONED_SEGMENT_CACHE_CONTROL = "private, max-age=60"
# Playlists: `private` (access-controlled, no shared cache may keep them) and a few
# seconds, so a re-transcode or a deletion shows soon; after that the browser
# revalidates with If-None-Match and gets a bodiless 304.
PLAYLIST_CACHE_CONTROL = "private, max-age=5"
# A growing (EVENT) playlist and the rendered master: revalidated every time (304s).
REVALIDATE_CACHE_CONTROL = "private, no-cache"
# A not-yet-written file of the version being built: waited for this long, polled.
BUILDING_WAIT_SECONDS = 3.0
BUILDING_POLL_SECONDS = 0.2
BUILDING_RETRY_AFTER = "1"
# Thumbnails and posters: images.py sets Cache-Control by who may fetch them.
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"  # RFC 8216 §4
SEGMENT_TYPE = "video/MP2T"  # RFC 8216 §3.2 / RFC 3555
IMAGE_TYPE = "image/jpeg"
VTT_TYPE = "text/vtt; charset=utf-8"  # the WebVTT spec's MIME type


@dataclass(frozen=True)
class KindPolicy:
    """How the files of one route kind are served: one row of KINDS, read by these
    handlers, the segment lane (lane.py) and the access log (log.py)."""

    content_type: str
    text: bool  # small text: gzipped for clients that take it, Vary: Accept-Encoding
    cache_control: str  # once the file's version is finished ("": images.py decides)
    building_cache_control: str  # while its version is being built
    waits: bool  # of the version being built: a file not written yet is waited for, then 503
    accel: bool  # with VIDEOFLIX_ACCEL_REDIRECT, sent by nginx (accel.py)
    unchanging: bool  # never changes once written: kept open (openfiles.py), the segment lane's
    bulk: bool = False  # the bulk of all requests: a successful one is logged at DEBUG

    def cache_control_for(self, building: bool) -> str:
        return self.building_cache_control if building else self.cache_control


_PLAYLIST = KindPolicy(PLAYLIST_TYPE, text=True, cache_control=PLAYLIST_CACHE_CONTROL,
                       building_cache_control=PLAYLIST_CACHE_CONTROL, waits=True, accel=True, unchanging=False)
# Trick-play (transcode/sprites.py, iframes.py): <res>/iframes.m3u8 and thumbs/ of a
# version, written when its run ends: never waited for, immutable once finished.
_TRICKPLAY = dict(cache_control=IMMUTABLE_CACHE_CONTROL, building_cache_control=REVALIDATE_CACHE_CONTROL,
                  waits=False, accel=False, unchanging=False)
_IMAGE = KindPolicy(IMAGE_TYPE, text=False, cache_control="", building_cache_control="", waits=False,
                    accel=False, unchanging=False)
KINDS: dict[str, KindPolicy] = {
    "master": _PLAYLIST,
    "playlist": _PLAYLIST,
    # A growing (EVENT) playlist while its version is built, then immutable.
    "vplaylist": KindPolicy(PLAYLIST_TYPE, text=True, cache_control=IMMUTABLE_CACHE_CONTROL,
                            building_cache_control=REVALIDATE_CACHE_CONTROL, waits=True, accel=True,
                            unchanging=False),
    "iframes": KindPolicy(PLAYLIST_TYPE, text=True, **_TRICKPLAY),
    # JPEG sheets; the WebVTT track among them is text (MediaFileHandler.is_track).
    "thumbs": KindPolicy(IMAGE_TYPE, text=False, **_TRICKPLAY),
    "segment": KindPolicy(SEGMENT_TYPE, text=False, cache_control=UNVERSIONED_SEGMENT_CACHE_CONTROL,
                          building_cache_control=UNVERSIONED_SEGMENT_CACHE_CONTROL, waits=True, accel=True,
                          unchanging=True, bulk=True),
    "vsegment": KindPolicy(SEGMENT_TYPE, text=False, cache_control=IMMUTABLE_CACHE_CONTROL,
                           building_cache_control=IMMUTABLE_CACHE_CONTROL, waits=True, accel=True,
                           unchanging=True, bulk=True),
    "thumbnail": _IMAGE,
    "poster": _IMAGE,
}


def file_etag(info: os.stat_result, gzipped: bool = False) -> str:
    """Size + mtime + inode of the one fstat (see the module docstring)."""
    return f'"{info.st_size:x}-{info.st_mtime_ns:x}-{info.st_ino:x}{"-gz" if gzipped else ""}"'


def path_part(value: bytes) -> str:
    """A percent-decoded path part: invalid UTF-8 is one more unknown name (404), not a 400."""
    return value.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=1024)
def http_date(seconds: int) -> str:
    """Last-Modified's IMF-fixdate (RFC 9110 §5.6.7); the files of a playing video share a few."""
    return email.utils.formatdate(seconds, usegmt=True)


class HLSRequestMixin:
    """What every HLS answer shares (media files here, rendered subtitle playlists in
    handlers/subtitles.py): CORS and request-id headers on every answer, cached
    access-token checks, undecodable path parts as unknown names, and `write_rendered`
    for bodies made per request."""

    def set_default_headers(self) -> None:
        self.set_cors_headers()
        self.set_request_id_header()

    def read_access_token(self, token: str, now: int) -> tokens.SessionClaims:
        return tokens.read_access_token_cached(self.config.secret_key, token, now)

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        return path_part(value)

    async def streamed_file(self, token: str, target: playback.HLSTarget) -> playback.ServedFile:
        """playback.streamable_file for a signed stream URL, its refusals as answers:
        a bad, expired or revoked token 401, a video gone or not watchable 404."""
        try:
            return await playback.streamable_file(self.config, self.services, token, target, int(time.time()))
        except playback.InvalidStreamToken:
            raise APIError(401, INVALID_TOKEN) from None
        except media.VideoNotFound:
            raise APIError(404) from None
        except sessions.Unavailable:
            raise APIError(503) from None

    def write_rendered(self, body: bytes, content_type: str, include_body: bool) -> None:
        """A small body made per request (a master, a subtitle playlist or segment):
        `private, no-cache` with an ETag of the text, 304 when it matches, gzip when
        accepted (a few KB: microseconds)."""
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", REVALIDATE_CACHE_CONTROL)
        self.add_header("Vary", "Accept-Encoding")
        gzipped = httpranges.accepts_gzip(self.request.headers.get("Accept-Encoding", ""))
        self.set_header("Etag", '"%s%s"' % (hashlib.sha256(body).hexdigest()[:32], "-gz" if gzipped else ""))
        if self.check_etag_header():
            self.set_status(304)
            return
        if gzipped:
            body = gzip.compress(body, compresslevel=mediafiles.GZIP_LEVEL, mtime=0)
            self.set_header("Content-Encoding", "gzip")
        self.set_header("Content-Length", len(body))
        if include_body:
            self.write(body)


class MediaFileHandler(HLSRequestMixin, ObservedMixin, ServicesMixin, JSONErrorsMixin, CorsMixin, AuthMixin,
                       tornado.web.StaticFileHandler):
    """One file under media/<id>/, found by a subclass; see the module docstring.

    Route kwargs: `kind` is master | playlist | segment | vplaylist | vsegment |
    iframes | thumbs | thumbnail | poster.
    """

    kind: str
    policy: KindPolicy
    retry_expected = False  # answered 503: a file of the version being built is not written yet
    served: playback.ServedFile | None = None  # what an HLS request resolved to
    file: mediafiles.OpenFile | None = None
    cached: openfiles.Entry | None = None  # `file` is lent by the open-file cache
    reading: concurrent.futures.Future | None = None  # the read in flight on `file`
    sender: zerocopy.Sender | None = None  # the sendfile in flight on `file`
    use_gzip = False

    def initialize(self, kind: str) -> None:  # type: ignore[override]
        super().initialize(path=self.settings["config"].media_dir)
        self.kind = kind
        self.policy = KINDS[kind]

    # --- StaticFileHandler hooks --------------------------------------------------

    def compute_etag(self) -> str | None:
        return None if self.file is None else file_etag(self.file.stat, self.use_gzip)

    def get_content_size(self) -> int:
        assert self.file is not None
        return self.file.stat.st_size

    def get_modified_time(self) -> datetime.datetime | None:
        assert self.file is not None
        # Whole seconds, as the parent does: Last-Modified has no finer resolution.
        return datetime.datetime.fromtimestamp(int(self.file.stat.st_mtime), datetime.timezone.utc)

    def set_headers(self) -> None:
        self.set_header("Accept-Ranges", "bytes")
        self.set_etag_header()
        assert self.file is not None
        self.set_header("Last-Modified", http_date(int(self.file.stat.st_mtime)))
        self.set_header("Content-Type", self.get_content_type())
        self.set_extra_headers(self.path)

    def get_content_type(self) -> str:
        return VTT_TYPE if self.is_track() else self.policy.content_type

    def is_track(self) -> bool:
        """The thumbnails WebVTT track (thumbs/ also holds the JPEG sheets)."""
        return self.kind == "thumbs" and self.path == media.THUMBNAILS_VTT_NAME

    def is_text(self) -> bool:
        """Playlists and the track: small text, gzipped for clients that take it."""
        return self.policy.text or self.is_track()

    def get_cache_time(self, path: str, modified: datetime.datetime | None, mime_type: str) -> int:
        return 0  # Cache-Control is set whole in set_extra_headers

    def cache_control(self) -> str:
        return self.policy.cache_control_for(self.served is not None and self.served.building)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", self.cache_control())
        if self.is_text():
            # The body depends on Accept-Encoding whether or not this one is gzipped.
            self.add_header("Vary", "Accept-Encoding")

    # --- serving ------------------------------------------------------------------

    async def serve_hls(self, video_id: int, served: playback.ServedFile, include_body: bool) -> None:
        """Answer an HLS request resolved by playback.resolve_file."""
        self.served = served
        if served.rendered_master:
            await self.serve_master(video_id, served.version, include_body)
            return
        root = media.version_dir(self.config.media_dir, video_id, served.version)
        # Segments never change once written: their open files are kept (openfiles.py).
        cache_key = (video_id, served.version, served.parts) if self.policy.unchanging else None
        await self.serve_file(root, served.parts, include_body, wait=served.building and self.policy.waits,
                              cache_key=cache_key)

    async def serve_master(self, video_id: int, version: int, include_body: bool) -> None:
        """The master of a version, rendered from its ladder.json (one owner of the text:
        playlist.render_master); ETag from the text, 304 when it matches."""
        path = media.ladder_path(self.config.media_dir, video_id, version)
        ladder = await asyncio.get_running_loop().run_in_executor(
            self.services.file_executor, ladderfile.read_ladder, path)
        if ladder is None:
            raise APIError(404)
        try:
            tracks = await subtitle_tracks.master_tracks(self.services, video_id)
            body = render_master(ladder, subtitles=tracks, prefix=media.version_prefix(version)).encode()
        except PlaylistError:
            log.error("video %s version %s: unusable %s", video_id, version, path)
            raise APIError(404) from None
        self.write_rendered(body, PLAYLIST_TYPE, include_body)

    async def serve_file(self, root: Path, parts: tuple[str, ...], include_body: bool, wait: bool = False,
                         cache_key: tuple | None = None) -> None:
        """Answer with root/<parts...> (validated names, no symlink followed); `wait`:
        the file may still be coming (the version being built); `cache_key`: the
        file never changes, keep it open (openfiles.py)."""
        try:
            await self._serve(root, parts, include_body, wait, cache_key)
        finally:
            opened, self.file = self.file, None
            cached, self.cached = self.cached, None
            reading, self.reading = self.reading, None
            if opened is not None:
                done = (lambda: self.open_files.release(cached)) if cached is not None else (
                    lambda: mediafiles.close_file(opened))
                if reading is not None and not reading.done():
                    # Cancelled (server shutdown) while a thread reads this fd: close
                    # it when the read ends (a closed fd number is reused at once).
                    reading.add_done_callback(lambda _: done())
                else:
                    done()

    @property
    def open_files(self) -> openfiles.OpenFileCache:
        return self.settings["open_files"]

    def _prefetch_bytes(self, include_body: bool) -> int:
        """How much to read in the same thread hop as the open: the first chunk of
        a plain GET (no Range, no validators), which is all of most segments."""
        headers = self.request.headers
        if not include_body or self.policy.text or zerocopy.usable(self.request) or any(
                name in headers for name in ("Range", "If-None-Match", "If-Modified-Since")):
            return 0
        return FILE_CHUNK_BYTES

    async def _open(self, root: Path, parts: tuple[str, ...], include_body: bool, wait: bool,
                    cache_key: tuple | None) -> None:
        if cache_key is not None:
            self.cached = self.open_files.acquire(cache_key)
            if self.cached is not None:  # no thread hop
                self.file = self.cached.file
                return
        await self._open_now(root, parts, include_body, wait)
        if cache_key is not None and self.file is not None:
            self.cached = self.open_files.add(cache_key, self.file)

    async def _open_now(self, root: Path, parts: tuple[str, ...], include_body: bool, wait: bool) -> None:
        loop = asyncio.get_running_loop()
        executor = self.services.file_executor
        prefetch = self._prefetch_bytes(include_body)
        read_ahead = include_body and zerocopy.usable(self.request)
        self.file = await loop.run_in_executor(executor, mediafiles.open_inside, root, parts, prefetch, read_ahead)
        if self.file is not None or not wait or len(parts) < 2:
            return
        # The version being built: a rendition it writes has its folder from the start.
        if not await loop.run_in_executor(executor, mediafiles.is_dir_inside, root, parts[:-1]):
            return
        deadline = loop.time() + BUILDING_WAIT_SECONDS
        while self.file is None and loop.time() < deadline:
            await asyncio.sleep(BUILDING_POLL_SECONDS)
            self.file = await loop.run_in_executor(executor, mediafiles.open_inside, root, parts, prefetch,
                                                   read_ahead)
        if self.file is None:
            self.retry_expected = True  # an expected "retry shortly": logged at INFO (log.py)
            raise APIError(503, "Not transcoded yet: try again shortly.",
                           headers={"Retry-After": BUILDING_RETRY_AFTER})

    async def _serve(self, root: Path, parts: tuple[str, ...], include_body: bool, wait: bool = False,
                     cache_key: tuple | None = None) -> None:
        if self.config.accel_redirect and self.policy.accel and not wait:
            # (A version still being built is ours: a file not written yet is waited for.)
            self._accel_redirect(root, parts)
            return
        loop = asyncio.get_running_loop()
        executor = self.services.file_executor
        await self._open(root, parts, include_body, wait, cache_key)
        if self.file is None:
            raise APIError(404)
        self.path = parts[-1]
        self.absolute_path = self.file.path
        self.modified = self.get_modified_time()
        size = self.get_content_size()
        self.use_gzip = (self.is_text() and size <= mediafiles.MAX_GZIP_BYTES
                         and httpranges.accepts_gzip(self.request.headers.get("Accept-Encoding", "")))
        self.set_headers()
        if self.should_return_304():
            self.set_status(304)
            return
        if self.use_gzip:
            body = await loop.run_in_executor(executor, mediafiles.read_gzipped, self.file.fd, size)
            self.set_header("Content-Encoding", "gzip")
            self.set_header("Accept-Ranges", "none")
            self.set_header("Content-Length", len(body))
            if include_body:
                self.write(body)
            return
        start, end = self._requested_range(size)
        self.set_header("Content-Length", end - start)
        if include_body and end > start:
            await self._stream(start, end)

    def _accel_redirect(self, root: Path, parts: tuple[str, ...]) -> None:
        """Behind nginx: the policy headers, and nginx sends the file (accel.py)."""
        self.set_header("Content-Type", self.get_content_type())
        self.set_extra_headers(parts[-1])
        self.set_header("X-Accel-Redirect", accel.location(self.config.accel_redirect, self.config.media_dir,
                                                           root, parts))

    def _requested_range(self, size: int) -> tuple[int, int]:
        header = self.request.headers.get("Range")
        if not header or not httpranges.range_is_current(self.request.headers.get("If-Range"),
                                              self.compute_etag(), self.modified):
            return 0, size
        try:
            byte_range = httpranges.parse_byte_range(header, size)
        except httpranges.RangeNotSatisfiable:
            raise APIError(416, headers={"Content-Range": f"bytes */{size}"}) from None
        if byte_range is None or byte_range == (0, size):
            return 0, size  # a full range is a plain 200 (Chrome refuses a 206 for bytes=0-)
        start, end = byte_range
        self.set_status(206)
        self.set_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        return start, end

    async def _stream(self, start: int, end: int) -> None:
        """Write bytes [start, end) of the open file, reading the next chunk in a
        thread while the previous one is sent; stops quietly if the client leaves."""
        assert self.file is not None
        fd = self.file.fd
        if zerocopy.usable(self.request):  # zero-copy where the connection allows it
            sender = self.sender = zerocopy.Sender()
            try:
                if await sender.send_body(self, fd, start, end):
                    return
            except zerocopy.ClientGone:
                return
            finally:
                self.sender = None
                self.body_bytes += sender.sent  # ObservedMixin counts what write() saw; this bypassed it
        executor = self.services.file_executor

        def read(offset: int) -> asyncio.Future:
            self.reading = executor.submit(mediafiles.read_chunk, fd, offset, min(FILE_CHUNK_BYTES, end - offset))
            return asyncio.wrap_future(self.reading)

        offset = start
        prefetched = self.file.first[:end - start] if start == 0 else b""
        try:
            # The first chunk goes out with the headers: one send. (Sending the
            # headers alone costs a loopback round of its own, more than Tornado's
            # copy of the chunk onto the header block: bench/serve.py.)
            chunk = prefetched or await read(offset)
            while True:
                if not chunk:
                    raise OSError(f"{self.file.path} shrank while being sent")
                offset += len(chunk)
                more = offset < end
                if more:
                    pending = read(offset)
                self.write(chunk)
                await self.flush()
                if not more:
                    return
                chunk = await pending
        except tornado.iostream.StreamClosedError:
            return

    def on_connection_close(self) -> None:
        if self.sender is not None:
            self.sender.abort()
        super().on_connection_close()

    def target(self, args: tuple[str, ...]) -> playback.HLSTarget:
        try:
            return playback.parse_hls_target(self.kind, args)
        except media.VideoNotFound:
            raise APIError(404) from None


class VideoFileHandler(MediaFileHandler):
    """/api/video/<id>/... with the access cookie or `Authorization: Bearer`."""

    @authenticated
    async def get(self, *args: str, include_body: bool = True) -> None:  # type: ignore[override]
        target = self.target(args)  # before any DB or disk access
        try:
            served = await playback.watchable_file(self.services, target, self.current_user)
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.serve_hls(target.video_id, served, include_body)

    @authenticated
    async def head(self, *args: str) -> None:  # type: ignore[override]
        await self.get(*args, include_body=False)


class StreamFileHandler(MediaFileHandler):
    """/api/stream/<token>/<id>/...: the same files for cookie-less players.

    @public because the signed token in the path is the credential, checked here.
    A bad, expired or revoked token is 401 "Invalid or expired token." like an
    expired access JWT (API.md §1): the client knows to ask /stream/ for a new URL,
    while 404 keeps meaning the video itself is gone or not watchable.
    """

    @public
    async def get(self, token: str, *args: str, include_body: bool = True) -> None:  # type: ignore[override]
        target = self.target(args)
        served = await self.streamed_file(token, target)
        await self.serve_hls(target.video_id, served, include_body)

    @public
    async def head(self, token: str, *args: str) -> None:  # type: ignore[override]
        await self.get(token, *args, include_body=False)


class MediaImageHandler(MediaFileHandler):
    """/media/{thumbnail,poster}/<id>.jpg and <id>-<key>.jpg: who may fetch them and
    how they are cached is images.py's rule (public videos: anyone; private: owner
    and admins, or the unguessable keyed URL).

    They exist only once a transcode has put them in place and go with the video.
    """

    access: images.ImageAccess | None = None

    @public
    async def get(self, name: str, include_body: bool = True) -> None:  # type: ignore[override]
        request = images.parse_image_name(name)
        if request is None:
            raise APIError(404)
        try:
            self.access = await images.image_access(self.config, self.services, request, self.current_user)
        except media.VideoNotFound:
            if self._auth_problem == INVALID_TOKEN:
                # A stale or forged token says so, as for the HLS files; a private video
                # and a missing one still get the same answer.
                raise APIError(401, INVALID_TOKEN) from None
            raise APIError(404) from None
        except sessions.Unavailable:
            raise APIError(503) from None
        root = media.version_dir(self.config.media_dir, request.video_id, self.access.version)
        await self.serve_file(root, (images.file_name(self.kind),), include_body)

    def set_extra_headers(self, path: str) -> None:
        assert self.access is not None
        self.set_header("Cache-Control", self.access.cache_control)
        if self.access.vary:
            self.add_header("Vary", self.access.vary)

    @public
    async def head(self, name: str) -> None:  # type: ignore[override]
        await self.get(name, include_body=False)


class VideoStreamURLHandler(BaseHandler):
    """GET /api/video/<id>/stream/ -> a signed playback URL (API.md §4)."""

    @authenticated
    async def get(self, raw_id: str) -> None:
        video_id = media.parse_video_id(raw_id)
        if video_id is None:
            raise APIError(404)
        try:
            issued = await playback.issue_stream_url(self.config, self.services, video_id,
                                                     self.current_user, int(time.time()))
        except media.VideoNotFound:
            raise APIError(404) from None
        except playback.InvalidStreamToken:
            raise APIError(401, INVALID_TOKEN) from None
        self.write_json({"url": issued.url, "expires_at": issued.expires_at})


# Path parts are matched loosely and validated in the handlers (JSON 404s, and the
# same checks whatever the router lets through); Tornado percent-decodes each part
# after matching, so %2F never splits a part and is refused by the name rules.
# Versioned paths (/v<N>/...) come first; a route for another file kind under a
# version (iframes.m3u8, thumbs/, subtitles/) must come before the versioned segment
# route, which takes any name and refuses what is not a segment name.
PART = r"([^/]+)"
VERSION = r"(v[^/]*)"
IFRAMES = re.escape(media.IFRAME_PLAYLIST_NAME)
THUMBS = re.escape(media.THUMBS_DIR)
ROUTES: list[Any] = [
    (rf"/api/video/{PART}/stream/", VideoStreamURLHandler),
    (rf"/api/video/{PART}/master\.m3u8", VideoFileHandler, {"kind": "master"}),
    (rf"/api/video/{PART}/{VERSION}/{PART}/{IFRAMES}", VideoFileHandler, {"kind": "iframes"}),
    (rf"/api/video/{PART}/{VERSION}/{THUMBS}/{PART}", VideoFileHandler, {"kind": "thumbs"}),
    (rf"/api/video/{PART}/{VERSION}/{PART}/index\.m3u8", VideoFileHandler, {"kind": "vplaylist"}),
    (rf"/api/video/{PART}/{VERSION}/{PART}/{PART}/?", VideoFileHandler, {"kind": "vsegment"}),
    (rf"/api/video/{PART}/{PART}/index\.m3u8", VideoFileHandler, {"kind": "playlist"}),
    (rf"/api/video/{PART}/{PART}/{PART}/?", VideoFileHandler, {"kind": "segment"}),
    (rf"/api/stream/{PART}/{PART}/master\.m3u8", StreamFileHandler, {"kind": "master"}),
    (rf"/api/stream/{PART}/{PART}/{VERSION}/{PART}/{IFRAMES}", StreamFileHandler, {"kind": "iframes"}),
    (rf"/api/stream/{PART}/{PART}/{VERSION}/{THUMBS}/{PART}", StreamFileHandler, {"kind": "thumbs"}),
    (rf"/api/stream/{PART}/{PART}/{VERSION}/{PART}/index\.m3u8", StreamFileHandler, {"kind": "vplaylist"}),
    (rf"/api/stream/{PART}/{PART}/{VERSION}/{PART}/{PART}/?", StreamFileHandler, {"kind": "vsegment"}),
    (rf"/api/stream/{PART}/{PART}/{PART}/index\.m3u8", StreamFileHandler, {"kind": "playlist"}),
    (rf"/api/stream/{PART}/{PART}/{PART}/{PART}/?", StreamFileHandler, {"kind": "segment"}),
    (rf"/media/thumbnail/{PART}", MediaImageHandler, {"kind": "thumbnail"}),
    (rf"/media/poster/{PART}", MediaImageHandler, {"kind": "poster"}),
]
