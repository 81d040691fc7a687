"""What every HLS file handler shares (web/media_handlers.py has the credentials and the
routes): finding a file under media/<id>/ and carrying out delivery/answer.py's answer for
it, and a version's subtitle playlists and segments made per request.

- Files are opened component by component with O_NOFOLLOW below media/<id>/
  (mediafiles.open_inside), in `services.file_executor`, never on the loop.
- Bodies on plain connections go by os.sendfile once the headers are flushed
  (zerocopy.py); on TLS they are read in the file executor, FILE_CHUNK_BYTES at a time
  with one read ahead; a plain GET reads its first chunk in the same thread hop as the open.
- Segments' open files are kept a few seconds (openfiles.py).
- With VIDEOFLIX_ACCEL_REDIRECT, playlists and segments are sent by nginx (accel.py).
- A playlist or segment of the version being built that is not written yet is waited for
  up to BUILDING_WAIT_SECONDS, then answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import re
import time
from pathlib import Path
from typing import Any, cast

import tornado.iostream
import tornado.web

from videoflix.accounts import sessions, tokens
from videoflix.delivery import accel, answer, mediafiles, openfiles, playback, tokenforms, zerocopy
from videoflix.delivery.answer import NOSNIFF
from videoflix.library import subtitle_tracks
from videoflix.platform import media
from videoflix.platform.log import AccessRecord
from videoflix.transcode import ladderfile
from videoflix.transcode.playlist import PlaylistError, render_master
from videoflix.web.answer_writer import AnswerWriterMixin
from videoflix.web.base import (
    CORS_EXPOSE_HEADERS,
    INVALID_TOKEN,
    APIError,
    AuthMixin,
    CorsMixin,
    JSONErrorsMixin,
    ServicesMixin,
    cors_headers,
)
from videoflix.web.observe import ObservedMixin

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

    # "<name>=<token>" when the request's media token came in the query (the query form,
    # tokenforms.py): what is served names other files with it on every URI.
    token_query = ""

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
        folder = self.master_folder(video_id, version)
        try:
            tracks = await subtitle_tracks.master_tracks(self.services, video_id)
            body = render_master(ladder, subtitles=tracks, prefix=folder.url).encode()
        except PlaylistError:
            log.error("video %s version %s: unusable %s", video_id, version, path)
            raise APIError(404) from None
        if folder.query:
            body = tokenforms.playlist_with_query(body, folder.query.encode())
        if folder.header is not None:
            self.tell_token_header(*folder.header)
        policy = answer.media_policy(self.kind, served.parts[-1], served.building)
        self.write_answer(answer.answer_rendered(self.request_facts(), policy, body))

    def master_folder(self, video_id: int, version: int) -> playback.MediaFolder:
        """What the master puts before its URIs: "v<N>/", relative to the master's own
        folder (its credential's); VideoFileHandler hands out media tokens instead."""
        return playback.MediaFolder(media.version_prefix(version))

    def tell_token_header(self, name: str, token: str) -> None:
        """The header form: the master's answer tells the token in the header that is to
        carry it, which a browser's player may read (CORS) when the master is ours to it."""
        self.set_header(name, token)
        if cors_headers(self.request.headers.get("Origin"), self.config.cors_origins):
            self.set_header("Access-Control-Expose-Headers", f"{CORS_EXPOSE_HEADERS}, {name}")

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
        rewrite = bool(self.token_query) and tokenforms.rewrites(self.kind, parts[-1])
        if self.config.accel_redirect and self.policy.accel and not wait and not rewrite:
            # (A version still being built is ours: a file not written yet is waited for.)
            location = accel.location(self.config.accel_redirect, self.config.media_dir, root, parts)
            self.write_answer(answer.answer_accel(facts, policy, location))
            return
        try:
            await self._open(root, parts, not facts.head, wait, cache_key)
            if self.file is None:
                raise APIError(404)
            if rewrite:  # (a playlist or track: small, made per request with the token on its URIs)
                data = await asyncio.get_running_loop().run_in_executor(
                    self.services.file_executor, self._with_token_query, self.file.fd, self.file.stat.st_size, parts
                )
                self.write_answer(answer.answer_rendered(facts, policy, data))
                return
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

    def _with_token_query(self, fd: int, size: int, parts: tuple[str, ...]) -> bytes:
        """(In the file executor.) The whole file, the query form's token on its URIs."""
        data = mediafiles.read_chunk(fd, 0, size)
        return tokenforms.with_token_query(self.kind, parts[-1], data, self.token_query)

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
            body = await subtitle_tracks.render_hls(
                self.config, self.services, target.video_id, served.version, language, segment
            )
        except subtitle_tracks.SubtitleUnavailable:
            raise APIError(404) from None
        except subtitle_tracks.SubtitleNotReady:
            raise APIError(
                503, "Not transcoded yet: try again shortly.", headers={"Retry-After": BUILDING_RETRY_AFTER}
            ) from None
        if self.token_query and tokenforms.rewrites(self.kind, target.name):
            body = tokenforms.with_token_query(self.kind, target.name, body, self.token_query)
        self.write_answer(
            answer.answer_rendered(
                self.request_facts(), answer.media_policy(self.kind, target.name, served.building), body
            )
        )
