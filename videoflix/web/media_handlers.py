"""HLS delivery, API.md §3, §4 and §6: playlists, segments, trick play, subtitle
playlists and segments, signed stream URLs, images.

Every answer is delivery/answer.py's (status, headers, body source, from the
request's headers, the file's fstat and the kind's policy, KINDS); these handlers
find the file, decide access, and carry the answer out:
- Every route exists once per credential (CREDENTIALS: the access cookie or a
  stream token), generated from one table (`twins`).
- Access is decided (asynchronously, one small query at most) before any file is
  opened. Errors are JSON (JSONErrorsMixin) and are 404, never 403: a caller cannot
  tell a private video from a missing one, or a refused path from an absent file.
- Files are opened component by component with O_NOFOLLOW below media/<id>/
  (mediafiles.open_inside), in `services.file_executor`, never on the loop: no
  symlink there is followed, no path is resolved and then reopened.
- Bodies on plain connections go by os.sendfile once the headers are flushed
  (zerocopy.py): no thread reads and no copies. On TLS they are read in the file
  executor, FILE_CHUNK_BYTES at a time with one read ahead; a plain GET reads its
  first chunk in the same thread hop as the open, and it leaves with the headers.
  A gzipped text file is compressed there too (mediafiles.read_gzipped).
- Segments' open files are kept a few seconds (openfiles.py): a segment GET that
  finds its file open makes no thread hop. A plain segment GET whose every
  decision is cached is answered before it reaches these handlers, by the segment
  lane (segment_lane.py), with the same answer.py answer.
- With VIDEOFLIX_ACCEL_REDIRECT, playlists and segments are authorised here and
  sent by nginx (accel.py, answer.answer_accel).
- Versions (README, Architecture: Transcode): playback.resolve_file says which
  version's file answers (the live one; the one being built for the owner and
  admins). The master of a version is rendered per request from its ladder.json
  (playlist.render_master), its subtitle playlists and segments from the canonical
  WebVTT file (subtitle_tracks.render_hls_file). A playlist or segment of the
  version being built that is not written yet is waited for up to
  BUILDING_WAIT_SECONDS, then answered 503 with Retry-After (hls.js retries a 5xx,
  not a 404); a finished version answers at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import tornado.iostream
import tornado.web

from videoflix.accounts import sessions, tokens
from videoflix.delivery import accel, answer, mediafiles, openfiles, playback, zerocopy
from videoflix.delivery.answer import NOSNIFF
from videoflix.library import images, subtitle_tracks
from videoflix.platform import media
from videoflix.platform.log import AccessRecord
from videoflix.transcode import ladderfile
from videoflix.transcode.playlist import PlaylistError, render_master
from videoflix.web import schemas
from videoflix.web.answer_writer import AnswerWriterMixin
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
from videoflix.web.operation import media_file, operation

log = logging.getLogger(__name__)

# A ~1 MB segment is one chunk: read in the same thread hop as the open, sent with
# the headers. A download holds two chunks at most (one being sent, one read ahead).
# 512 KiB measured ~20% slower in bench/serve.py, 2 MiB no faster.
FILE_CHUNK_BYTES = 1024 * 1024
# A not-yet-written file of the version being built: waited for this long, polled.
BUILDING_WAIT_SECONDS = 3.0
BUILDING_POLL_SECONDS = 0.2
BUILDING_RETRY_AFTER = "1"
# A language as it may appear in a subtitle URL: a canonical tag (media.subtitle_file_name).
LANGUAGE_PART = re.compile(r"[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8}){0,16}")


def path_part(value: bytes) -> str:
    """A percent-decoded path part: invalid UTF-8 is one more unknown name (404), not a 400."""
    return value.decode("utf-8", errors="replace")


class HLSRequestMixin(AnswerWriterMixin):
    """What every HLS answer shares (media files, rendered subtitle playlists and
    segments): CORS and request-id headers on every answer, cached access-token
    checks, undecodable path parts as unknown names."""

    def set_default_headers(self: Any) -> None:
        self.set_header(*NOSNIFF)  # (errors too: they are answered after clear())
        self.set_cors_headers()
        self.set_request_id_header()

    def read_access_token(self: Any, token: str, now: int) -> tokens.SessionClaims:
        return tokens.read_access_token_cached(self.config.secret_key, token, now)

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        return path_part(value)

    def compute_etag(self) -> str | None:
        return None  # every validator is answer.py's (none on an X-Accel-Redirect answer)

    def request_facts(self: Any) -> answer.RequestFacts:
        return answer.RequestFacts.of(self.request.method, self.request.headers)

    async def streamed_file(self: Any, token: str, target: playback.HLSTarget) -> playback.ServedFile:
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


class MediaFileHandler(
    HLSRequestMixin, ObservedMixin, ServicesMixin, JSONErrorsMixin, CorsMixin, AuthMixin, tornado.web.RequestHandler
):
    """One file under media/<id>/, found by a subclass; see the module docstring.

    Route kwargs: `kind` is a row of answer.KINDS.
    """

    kind: str
    policy: answer.KindPolicy
    retry_expected = False  # answered 503: a file of the version being built is not written yet
    file: mediafiles.OpenFile | None = None
    cached: openfiles.Entry | None = None  # `file` is lent by the open-file cache
    reading: concurrent.futures.Future[Any] | None = None  # the read in flight on `file`
    sender: zerocopy.Sender | None = None  # the sendfile in flight on `file`

    def initialize(self, kind: str) -> None:
        self.kind = kind
        self.policy = answer.KINDS[kind]

    async def serve_hls(self, video_id: int, served: playback.ServedFile) -> None:
        """Answer an HLS request resolved by playback.resolve_file."""
        if served.rendered_master:
            await self.serve_master(video_id, served)
            return
        root = media.version_dir(self.config.media_dir, video_id, served.version)
        # Segments never change once written: their open files are kept (openfiles.py).
        cache_key = (video_id, served.version, served.parts) if self.policy.unchanging else None
        await self.serve_file(
            root,
            served.parts,
            answer.media_policy(self.kind, served.parts[-1], served.building),
            wait=served.building and self.policy.waits,
            cache_key=cache_key,
        )

    async def serve_master(self, video_id: int, served: playback.ServedFile) -> None:
        """The master of a version, rendered from its ladder.json (one owner of the text:
        playlist.render_master)."""
        version = served.version
        path = media.ladder_path(self.config.media_dir, video_id, version)
        ladder = await asyncio.get_running_loop().run_in_executor(
            self.services.file_executor, ladderfile.read_ladder, path
        )
        if ladder is None:
            raise APIError(404)
        try:
            tracks = await subtitle_tracks.master_tracks(self.services, video_id)
            body = render_master(ladder, subtitles=tracks, prefix=self.master_prefix(video_id, version)).encode()
        except PlaylistError:
            log.error("video %s version %s: unusable %s", video_id, version, path)
            raise APIError(404) from None
        policy = answer.media_policy(self.kind, served.parts[-1], served.building)
        self.write_answer(answer.answer_rendered(self.request_facts(), policy, body))

    def master_prefix(self, video_id: int, version: int) -> str:
        """What the master puts before its URIs: "v<N>/", relative to the master's own
        folder (its credential's); VideoFileHandler hands out media tokens instead."""
        return media.version_prefix(version)

    async def serve_file(
        self,
        root: Path,
        parts: tuple[str, ...],
        policy: answer.Policy,
        wait: bool = False,
        cache_key: tuple[Any, ...] | None = None,
    ) -> None:
        """Answer with root/<parts...> (validated names, no symlink followed); `wait`:
        the file may still be coming (the version being built); `cache_key`: the
        file never changes, keep it open (openfiles.py)."""
        facts = self.request_facts()
        if self.config.accel_redirect and self.policy.accel and not wait:
            # (A version still being built is ours: a file not written yet is waited for.)
            location = accel.location(self.config.accel_redirect, self.config.media_dir, root, parts)
            self.write_answer(answer.answer_accel(facts, policy, location))
            return
        try:
            await self._open(root, parts, not facts.head, wait, cache_key)
            if self.file is None:
                raise APIError(404)
            result = answer.answer_file(facts, policy, self.file.stat)
            if isinstance(result.body, answer.GzippedFile):
                data = await asyncio.get_running_loop().run_in_executor(
                    self.services.file_executor, mediafiles.read_gzipped, self.file.fd, self.file.stat.st_size
                )
                result = answer.with_gzipped(result, data)
            self.write_answer(result)
            body = result.body
            if result.with_body and isinstance(body, answer.FileRange) and body.end > body.start:
                await self._stream(body.start, body.end)
        finally:
            opened, self.file = self.file, None
            cached, self.cached = self.cached, None
            reading, self.reading = self.reading, None
            if opened is not None:

                def done() -> None:
                    if cached is not None:
                        self.open_files.release(cached)
                    else:
                        mediafiles.close_file(opened)

                if reading is not None and not reading.done():
                    # Cancelled (server shutdown) while a thread reads this fd: close
                    # it when the read ends (a closed fd number is reused at once).
                    reading.add_done_callback(lambda _: done())
                else:
                    done()

    @property
    def open_files(self) -> openfiles.OpenFileCache:
        return cast(openfiles.OpenFileCache, self.settings["open_files"])

    def _prefetch_bytes(self, include_body: bool) -> int:
        """How much to read in the same thread hop as the open: the first chunk of
        a plain GET (no Range, no validators), which is all of most segments."""
        headers = self.request.headers
        if (
            not include_body
            or self.policy.text
            or zerocopy.usable(self.request)
            or any(name in headers for name in ("Range", "If-None-Match", "If-Modified-Since"))
        ):
            return 0
        return FILE_CHUNK_BYTES

    async def _open(
        self, root: Path, parts: tuple[str, ...], include_body: bool, wait: bool, cache_key: tuple[Any, ...] | None
    ) -> None:
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
            self.file = await loop.run_in_executor(executor, mediafiles.open_inside, root, parts, prefetch, read_ahead)
        if self.file is None:
            self.retry_expected = True  # an expected "retry shortly": logged at INFO (log.py)
            raise APIError(503, "Not transcoded yet: try again shortly.", headers={"Retry-After": BUILDING_RETRY_AFTER})

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

        def read(offset: int) -> asyncio.Future[Any]:
            self.reading = executor.submit(mediafiles.read_chunk, fd, offset, min(FILE_CHUNK_BYTES, end - offset))
            return asyncio.wrap_future(self.reading)

        offset = start
        prefetched = self.file.first[: end - start] if start == 0 else b""
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

    def access_record(self) -> AccessRecord:
        return dataclasses.replace(super().access_record(), bulk=self.policy.bulk, retry_expected=self.retry_expected)

    def target(self, args: tuple[str, ...]) -> playback.HLSTarget:
        try:
            return playback.parse_hls_target(self.kind, args)
        except media.VideoNotFound:
            raise APIError(404) from None


# What each route kind serves, for the OpenAPI document (web/operation.py): its path
# parameters after the credential's, and its words; the answers are answer.KINDS'.
_MEDIA_FILE_WORDS: dict[str, tuple[Any, ...]] = {
    "master": (
        "Master playlist",
        (schemas.VIDEO_ID,),
        "Of the live version (measured BANDWIDTH), or while nothing is live of the version being built for "
        "the owner and admins (BANDWIDTH from the caps until measured); its URIs name the version.",
    ),
    "iframes": (
        "I-frame playlist of one rendition of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.RESOLUTION),
        "Trick play: #EXT-X-I-FRAMES-ONLY, byte ranges into its segments; listed by the master as "
        "#EXT-X-I-FRAME-STREAM-INF once the version is done.",
    ),
    "thumbs": (
        "Seek-bar previews of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.THUMBS_FILE),
        "The WebVTT track (cues `sprite_NNN.jpg#xywh=x,y,w,h`, relative to it) or one of its sprite "
        "sheets; the detail's thumbnails_vtt links the live version's track.",
        (answer.VTT_TYPE.split(";")[0],),
    ),
    "vplaylist": (
        "Media playlist of one rendition of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.RESOLUTION),
        "The live version (or an older one kept for a grace period), or the one being built for the "
        "owner and admins (EVENT, growing, until it is done).",
    ),
    "playlist": (
        "Media playlist of one rendition of the live version",
        (schemas.VIDEO_ID, schemas.RESOLUTION),
        "A rendition above the highest one produced is served from the highest (API.md §3).",
    ),
    "vsegment": (
        "MPEG-TS segment of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.RESOLUTION, schemas.SEGMENT),
        "Immutable.",
    ),
    "segment": (
        "MPEG-TS segment of the live version",
        (schemas.VIDEO_ID, schemas.RESOLUTION, schemas.SEGMENT),
        "Follows the live version: cached briefly.",
    ),
    "subtitles": (
        "Subtitle playlist of one language of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.LANGUAGE),
        "Covers the whole duration; made per request from the WebVTT file.",
    ),
    "subsegment": (
        "WebVTT segment of a subtitle playlist",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.LANGUAGE, schemas.SUBTITLE_SEGMENT),
        "With X-TIMESTAMP-MAP.",
    ),
    "thumbnail": (
        "Catalog thumbnail",
        (schemas.IMAGE_NAME,),
        "<id>.jpg: a public video's for anyone, a private video's for its owner and admins; "
        "<id>-<key>.jpg (a private video's thumbnail_url): for whoever holds the key.",
    ),
    "poster": ("Poster", (schemas.IMAGE_NAME,), "Access as for the thumbnail."),
}
MEDIA_FILES = {kind: media_file(kind, *declared) for kind, declared in _MEDIA_FILE_WORDS.items()}
UNWATCHABLE = "No such file, or a video the caller may not watch"
BAD_STREAM_TOKEN = "A bad, expired or revoked stream token"


class VideoFileHandler(MediaFileHandler):
    """/api/video/<id>/... with the access cookie or `Authorization: Bearer`."""

    @operation(kinds=MEDIA_FILES, responses={404: UNWATCHABLE})
    @authenticated
    async def get(self, *args: str) -> None:
        target = self.target(args)  # before any DB or disk access
        try:
            served = await playback.watchable_file(self.services, target, self.current_user)
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.serve_hls(target.video_id, served)

    @authenticated
    async def head(self, *args: str) -> None:
        await self.get(*args)

    def master_prefix(self, video_id: int, version: int) -> str:
        """The version's folder under a media token of this session (API.md §7): its
        playlists, segments, I-frame playlists, sprites and subtitles need no cookie,
        and nginx checks the token by itself (deploy/nginx.conf)."""
        return media_folder_url(self.config, self.current_user, video_id, version, int(time.time()))


def media_folder_url(config: Any, claims: tokens.SessionClaims, video_id: int, version: int, now: int) -> str:
    """/api/media/<token>/<id>/v<N>/ (after VIDEOFLIX_MEDIA_URL, a CDN's origin, if set)."""
    token = tokens.make_media_token(
        config.secret_key,
        video_id=video_id,
        version=version,
        user_id=claims.user_id,
        token_version=claims.token_version,
        is_admin=claims.is_admin,
        session_id=claims.session_id,
        expires_at=now + config.media_token_ttl,
    )
    return f"{config.media_url}{MEDIA_TOKEN_PREFIX}{token}/{video_id}/{media.version_prefix(version)}"


MEDIA_TOKEN_PREFIX = "/api/media/"
BAD_MEDIA_TOKEN = "Invalid or expired media token."


class MediaTokenMixin:
    """The credential of /api/media/<token>/<id>/v<N>/...: a media token for that
    version's folder (tokens.read_media_token: HMAC only) whose session is live
    (sessions.is_live: in-process, CHECK_SECONDS old at most). Refusals are 403
    (JSON), so a player knows to reload the master for fresh tokens; the same rule
    nginx applies (deploy/media-token.js, then this check through auth_request)."""

    async def media_viewer(self: Any, token: str, video_id: int, version: int | None) -> tokens.MediaClaims:
        if version is None:  # a token opens one version's folder; nothing else is under it
            raise APIError(404)
        try:
            claims = tokens.read_media_token(
                self.config.secret_key, token, video_id=video_id, version=version, now=int(time.time())
            )
        except tokens.TokenError:
            raise APIError(403, BAD_MEDIA_TOKEN) from None
        try:
            live = await sessions.is_live(self.services, claims.user_id, claims.token_version, claims.session_id)
        except sessions.Unavailable:
            raise APIError(503) from None
        if not live:
            raise APIError(403, BAD_MEDIA_TOKEN)
        return claims

    async def media_file(self: Any, token: str, target: playback.HLSTarget) -> playback.ServedFile:
        """The file answering `target` under a media token: the token's session may
        still watch that version (a video made private or deleted since: 403)."""
        claims = await self.media_viewer(token, target.video_id, target.version)
        try:
            return await playback.watchable_file(self.services, target, claims)
        except media.VideoNotFound:
            raise APIError(403, BAD_MEDIA_TOKEN) from None


class MediaTokenFileHandler(MediaTokenMixin, MediaFileHandler):
    """/api/media/<token>/<id>/v<N>/...: a version's files for the holder of its media token."""

    @operation(
        "under a media token (the master's URIs)",
        params=(schemas.MEDIA_TOKEN,),
        kinds=MEDIA_FILES,
        responses={403: BAD_MEDIA_TOKEN, 404: "No such file"},
    )
    @public
    async def get(self, token: str, *args: str) -> None:
        target = self.target(args)
        served = await self.media_file(token, target)
        await self.serve_hls(target.video_id, served)

    @public
    async def head(self, token: str, *args: str) -> None:
        await self.get(token, *args)


class MediaTokenCheckHandler(MediaTokenMixin, BaseHandler):
    """GET /api/media/<token>/<id>/v<N>/: 204 while the token may open that folder,
    else 403. nginx asks it (auth_request) and keeps the answer MEDIA_CHECK_SECONDS:
    the whole per-session cost of a viewer behind nginx, and how soon a logout, a
    password change, a deactivation or a video made private or deleted stops the
    token's segments there (README: Edge delivery)."""

    @operation(
        "Whether a media token still opens its folder (nginx's auth_request)",
        params=(schemas.MEDIA_TOKEN, schemas.VIDEO_ID, schemas.VERSION),
        responses={204: "It does", 403: BAD_MEDIA_TOKEN, 404: "Not a video's version folder"},
    )
    @public
    async def get(self, token: str, raw_id: str, raw_version: str) -> None:
        video_id = media.parse_video_id(raw_id)
        version = media.parse_version(raw_version)
        if video_id is None or version is None:
            raise APIError(404)
        claims = await self.media_viewer(token, video_id, version)
        try:
            video = await playback.watchable_video_version(self.services, video_id, version, claims)
        except media.VideoNotFound:
            raise APIError(403, BAD_MEDIA_TOKEN) from None
        del video
        keep = max(0, min(MEDIA_CHECK_SECONDS, claims.expires_at - int(time.time())))
        self.set_header("Cache-Control", f"private, max-age={keep}")
        self.set_header("X-Accel-Expires", str(keep))  # nginx's cache of this answer
        self.set_status(204)


# nginx keeps a media token's check this long (X-Accel-Expires): with the up to
# sessions.CHECK_SECONDS another server of ours may take to see a revocation, a
# revoked token's segments stop within 10 s.
MEDIA_CHECK_SECONDS = 5


class StreamFileHandler(MediaFileHandler):
    """/api/stream/<token>/<id>/...: the same files for cookie-less players.

    @public because the signed token in the path is the credential, checked here.
    A bad, expired or revoked token is 401 "Invalid or expired token." like an
    expired access JWT (API.md §1): the client knows to ask /stream/ for a new URL,
    while 404 keeps meaning the video itself is gone or not watchable.
    """

    @operation(
        "under a signed stream URL",
        params=(schemas.STREAM_TOKEN,),
        kinds=MEDIA_FILES,
        responses={401: BAD_STREAM_TOKEN, 404: UNWATCHABLE},
    )
    @public
    async def get(self, token: str, *args: str) -> None:
        target = self.target(args)
        served = await self.streamed_file(token, target)
        await self.serve_hls(target.video_id, served)

    @public
    async def head(self, token: str, *args: str) -> None:
        await self.get(token, *args)


class MediaImageHandler(MediaFileHandler):
    """/media/{thumbnail,poster}/<id>.jpg and <id>-<key>.jpg: who may fetch them and
    how they are cached is images.py's rule (public videos: anyone; private: owner
    and admins, or the unguessable keyed URL).

    They exist only once a transcode has put them in place and go with the video.
    """

    @operation(
        security=schemas.ANYONE_OR_ACCESS_TOKEN,
        kinds=MEDIA_FILES,
        responses={
            401: f"{INVALID_TOKEN} (a stale or forged access token)",
            404: "No such image, or a video the caller may not see",
        },
    )
    @public
    async def get(self, name: str) -> None:
        request = images.parse_image_name(name)
        if request is None:
            raise APIError(404)
        try:
            access = await images.image_access(self.config, self.services, request, self.current_user)
        except media.VideoNotFound:
            if self._auth_problem == INVALID_TOKEN:
                # A stale or forged token says so, as for the HLS files; a private video
                # and a missing one still get the same answer.
                raise APIError(401, INVALID_TOKEN) from None
            raise APIError(404) from None
        except sessions.Unavailable:
            raise APIError(503) from None
        root = media.version_dir(self.config.media_dir, request.video_id, access.version)
        # Cached as images.py says for this caller (its own Vary when it answers by credentials).
        policy = answer.Policy(
            self.policy.content_type, access.cache_control, extra=(("Vary", access.vary),) if access.vary else ()
        )
        await self.serve_file(root, (images.file_name(self.kind),), policy)

    @public
    async def head(self, name: str) -> None:
        await self.get(name)


SUBTITLES_NOT_READY = "Of the version being built: not ready yet (Retry-After)"


class SubtitleHLSHandler(
    HLSRequestMixin, ObservedMixin, ServicesMixin, JSONErrorsMixin, CorsMixin, AuthMixin, tornado.web.RequestHandler
):
    """A version's subtitle playlist and segments, made per request from the canonical
    WebVTT file and the version's ladder.json (parsing in the file executor), with the
    access rules of that version's segments (playback.resolve_file):

        /api/video/<id>/v<N>/subtitles/<language>/index.m3u8
        /api/video/<id>/v<N>/subtitles/<language>/seg_NNNNN.vtt
        and the same under /api/stream/<token>/

    Not immutable although versioned: a new upload of that language changes them under
    the same URL; ETag + `no-cache` make a revalidation a bodiless 304 (answer.KINDS).

    Route kwargs: `kind` is subtitles (the playlist) or subsegment.
    """

    kind: str

    def initialize(self, kind: str) -> None:
        self.kind = kind

    def target(self, raw_id: str, raw_version: str, language: str, name: str) -> tuple[playback.HLSTarget, str]:
        video_id = media.parse_video_id(raw_id)
        version = media.parse_version(raw_version)
        if self.kind == "subtitles":
            name = media.MEDIA_PLAYLIST_NAME
        elif media.parse_subtitle_segment(name) is None:
            raise APIError(404)
        if video_id is None or version is None or not LANGUAGE_PART.fullmatch(language):
            raise APIError(404)
        return playback.HLSTarget(video_id=video_id, resolution=None, name=name, version=version), language

    async def serve(self, served: playback.ServedFile, target: playback.HLSTarget, language: str) -> None:
        segment = None if self.kind == "subtitles" else target.name
        try:
            body = await asyncio.get_running_loop().run_in_executor(
                self.services.file_executor,
                subtitle_tracks.render_hls_file,
                self.config.media_dir,
                target.video_id,
                served.version,
                language,
                segment,
            )
        except subtitle_tracks.SubtitleUnavailable:
            raise APIError(404) from None
        except subtitle_tracks.SubtitleNotReady:
            raise APIError(
                503, "Not transcoded yet: try again shortly.", headers={"Retry-After": BUILDING_RETRY_AFTER}
            ) from None
        self.write_answer(
            answer.answer_rendered(
                self.request_facts(), answer.media_policy(self.kind, target.name, served.building), body
            )
        )


class VideoSubtitleHLSHandler(SubtitleHLSHandler):
    @operation(kinds=MEDIA_FILES, responses={404: UNWATCHABLE, 503: SUBTITLES_NOT_READY})
    @authenticated
    async def get(self, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        target, language = self.target(raw_id, raw_version, language, name)
        try:
            served = await playback.watchable_file(self.services, target, self.current_user)
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.serve(served, target, language)

    @authenticated
    async def head(self, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        await self.get(raw_id, raw_version, language, name)


class StreamSubtitleHLSHandler(SubtitleHLSHandler):
    @operation(
        "under a signed stream URL",
        params=(schemas.STREAM_TOKEN,),
        kinds=MEDIA_FILES,
        responses={401: BAD_STREAM_TOKEN, 404: UNWATCHABLE, 503: SUBTITLES_NOT_READY},
    )
    @public
    async def get(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        target, language = self.target(raw_id, raw_version, language, name)
        served = await self.streamed_file(token, target)
        await self.serve(served, target, language)

    @public
    async def head(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        await self.get(token, raw_id, raw_version, language, name)


class MediaTokenSubtitleHLSHandler(MediaTokenMixin, SubtitleHLSHandler):
    @operation(
        "under a media token (the master's URIs)",
        params=(schemas.MEDIA_TOKEN,),
        kinds=MEDIA_FILES,
        responses={403: BAD_MEDIA_TOKEN, 404: "No such file", 503: SUBTITLES_NOT_READY},
    )
    @public
    async def get(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        target, language = self.target(raw_id, raw_version, language, name)
        served = await self.media_file(token, target)
        await self.serve(served, target, language)

    @public
    async def head(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        await self.get(token, raw_id, raw_version, language, name)


class VideoStreamURLHandler(BaseHandler):
    """GET /api/video/<id>/stream/ -> a signed playback URL (API.md §4)."""

    @operation(
        "A signed, expiring playback URL for any HLS player",
        params=(schemas.VIDEO_ID,),
        responses={200: schemas.STREAM_URL, 404: "Unknown video, or one the caller may not watch"},
    )
    @authenticated
    async def get(self, raw_id: str) -> None:
        video_id = media.parse_video_id(raw_id)
        if video_id is None:
            raise APIError(404)
        try:
            issued = await playback.issue_stream_url(
                self.config, self.services, video_id, self.current_user, int(time.time())
            )
        except media.VideoNotFound:
            raise APIError(404) from None
        except playback.InvalidStreamToken:
            raise APIError(401, INVALID_TOKEN) from None
        self.write_json({"url": issued.url, "expires_at": issued.expires_at})


# --- routes ---------------------------------------------------------------------------
# Path parts are matched loosely and validated in the handlers (JSON 404s, and the
# same checks whatever the router lets through); Tornado percent-decodes each part
# after matching, so %2F never splits a part and is refused by the name rules.
PART = r"([^/]+)"
VERSION = r"(v[^/]*)"
IFRAMES = re.escape(media.IFRAME_PLAYLIST_NAME)
THUMBS = re.escape(media.THUMBS_DIR)
SUBTITLES = re.escape(media.SUBTITLES_DIR_NAME)


@dataclass(frozen=True)
class Credential:
    """How an HLS path says who may play: what comes before the video id, and the
    handlers that check it (API.md §3: the access cookie or Bearer token; §4: a signed
    stream token in the path, for players without cookies)."""

    prefix: str
    files: type[MediaFileHandler]
    subtitles: type[SubtitleHLSHandler]
    kinds: frozenset[str] | None = None  # the route kinds it opens (None: all)


# A media token opens one version's folder: the versioned kinds alone.
VERSION_FOLDER_KINDS = frozenset({"vplaylist", "vsegment", "iframes", "thumbs", "subtitles", "subsegment"})
CREDENTIALS = (
    Credential("/api/video/", VideoFileHandler, VideoSubtitleHLSHandler),
    Credential(rf"/api/stream/{PART}/", StreamFileHandler, StreamSubtitleHLSHandler),
    Credential(
        rf"{MEDIA_TOKEN_PREFIX}{PART}/", MediaTokenFileHandler, MediaTokenSubtitleHLSHandler, VERSION_FOLDER_KINDS
    ),
)
# Every HLS route, as (the path after <prefix><id>/, its kind in answer.KINDS), and the
# handler family serving it; each becomes one route per credential (`twins`).
FILE_ROUTES = (
    (r"master\.m3u8", "master"),
    (rf"{VERSION}/{PART}/{IFRAMES}", "iframes"),
    (rf"{VERSION}/{THUMBS}/{PART}", "thumbs"),
    (rf"{VERSION}/{PART}/index\.m3u8", "vplaylist"),
    (rf"{PART}/index\.m3u8", "playlist"),
)
SUBTITLE_ROUTES = (
    (rf"{PART}/{SUBTITLES}/{PART}/index\.m3u8", "subtitles"),
    (rf"{PART}/{SUBTITLES}/{PART}/{PART}", "subsegment"),
)
# Segments take any name (and refuse what is not one), with or without a trailing
# slash (API.md §3), so every route naming a file or folder of its own must be matched
# before them, whichever module has it (index.m3u8, iframes.m3u8, thumbs/, and the
# subtitle file at /api/video/<id>/subtitles/<language>/): app.collect_routes puts
# these after every other route.
SEGMENT_ROUTES = (
    (rf"{VERSION}/{PART}/{PART}/?", "vsegment"),
    (rf"{PART}/{PART}/?", "segment"),
)


def twins(table: tuple[tuple[str, str], ...], handler: Callable[[Credential], type]) -> list[Any]:
    """One route per credential for each (path, kind) of `table`, served by `handler`
    of the credential."""
    return [
        (f"{credential.prefix}{PART}/{path}", handler(credential), {"kind": kind})
        for credential in CREDENTIALS
        for path, kind in table
        if credential.kinds is None or kind in credential.kinds
    ]


ROUTES: list[Any] = [
    (rf"/api/video/{PART}/stream/", VideoStreamURLHandler),
    (rf"{MEDIA_TOKEN_PREFIX}{PART}/{PART}/{VERSION}/", MediaTokenCheckHandler),
    *twins(FILE_ROUTES, lambda credential: credential.files),
    *twins(SUBTITLE_ROUTES, lambda credential: credential.subtitles),
    (rf"/media/thumbnail/{PART}", MediaImageHandler, {"kind": "thumbnail"}),
    (rf"/media/poster/{PART}", MediaImageHandler, {"kind": "poster"}),
]
CATCH_ALL_ROUTES: list[Any] = twins(SEGMENT_ROUTES, lambda credential: credential.files)
