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
- With object storage (VIDEOFLIX_STORAGE=s3://...) the same answers come from the bucket
  (delivery/storefiles.py): segments and sprites are streamed from it by range, never
  held whole, and copied into the hot cache on the way (delivery/hotcache.py), whose
  copies are then sent like local files; playlists, tracks and images are read whole.
  The store not answering is a 503 JSON error (Retry-After), never a 500 or a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gzip
import logging
import re
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

import tornado.iostream
import tornado.web

from videoflix.accounts import sessions, tokens
from videoflix.delivery import accel, answer, mediafiles, openfiles, playback, storefiles, tokenforms, zerocopy
from videoflix.delivery.answer import NOSNIFF
from videoflix.library import subtitle_hls
from videoflix.platform import media
from videoflix.platform.log import AccessRecord
from videoflix.platform.storage import StorageError
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
    http1,
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
# The store did not answer (storefiles.StoreUnavailable): the client may try again soon.
STORE_DOWN = "Media storage is unavailable: try again shortly."
STORE_RETRY_AFTER = "5"
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
        # Never changed once written (kept in the hot cache with object storage).
        immutable = self.policy.unchanging or (self.kind == "thumbs" and media.is_sprite_name(served.parts[-1]))
        await self.serve_file(
            root,
            served.parts,
            answer.media_policy(self.kind, served.parts[-1], served.building),
            wait=served.building and self.policy.waits,
            cache_key=cache_key,
            immutable=immutable,
            building=served.building,
        )

    async def serve_master(self, video_id: int, served: playback.ServedFile) -> None:
        """The master of a version, rendered from its ladder.json (one owner of the text:
        playlist.render_master)."""
        version = served.version
        path = media.ladder_path(self.config.media_dir, video_id, version)
        try:
            ladder = await storefiles.read_ladder(self.config, self.services, video_id, version, served.building)
        except storefiles.StoreUnavailable as exc:
            raise self.store_down(exc) from None
        if ladder is None:
            raise APIError(404)
        folder = self.master_folder(video_id, version)
        try:
            tracks = await subtitle_hls.master_tracks(self.services, video_id)
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
        immutable: bool = False,
        building: bool = False,
    ) -> None:
        """Answer with root/<parts...> (validated names, no symlink followed); `wait`:
        the file may still be coming (the version being built); `cache_key`: the
        file never changes, keep it open (openfiles.py); `immutable`: never changes
        once written, `building`: of the version being built (object storage: what
        the hot cache may keep)."""
        facts = self.request_facts()
        rewrite = bool(self.token_query) and tokenforms.rewrites(self.kind, parts[-1])
        if (
            self.config.accel_redirect
            and self.policy.accel
            and not wait
            and not rewrite
            and self.services.storage.is_local
        ):
            # (A version still being built is ours: a file not written yet is waited for.
            # Media in a bucket are not under nginx's /internal-media/: sent from here.)
            location = accel.location(self.config.accel_redirect, self.config.media_dir, root, parts)
            self.write_answer(answer.answer_accel(facts, policy, location))
            return
        try:
            if self.services.storage.is_local:
                await self._open(root, parts, not facts.head, wait, cache_key)
            elif await self._answer_from_store(root, parts, policy, wait, cache_key, immutable, building, rewrite):
                return  # answered from the bucket; else self.file is a hot copy
            if self.file is None:
                raise APIError(404)
            if rewrite:  # (a playlist or track: small, made per request with the token on its URIs)
                data = await asyncio.get_running_loop().run_in_executor(
                    self.services.file_executor, self._with_token_query, self.file.fd, self.file.stat.st_size, parts
                )
                self.write_answer(answer.answer_rendered(facts, policy, data))
                return
            result = mediafiles.answer_open_file(facts, policy, self.file)
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

    # --- object storage (storefiles.py, hotcache.py) ------------------------------------

    def store_down(self: Any, exc: Exception) -> APIError:
        log.debug("media storage unavailable: %s", exc)  # (storefiles logs each outage once)
        return APIError(503, STORE_DOWN, headers={"Retry-After": STORE_RETRY_AFTER})

    async def _answer_from_store(
        self,
        root: Path,
        parts: tuple[str, ...],
        policy: answer.Policy,
        wait: bool,
        cache_key: tuple[Any, ...] | None,
        immutable: bool,
        building: bool,
        rewrite: bool = False,
    ) -> bool:
        """The object root/<parts...> of the bucket: True once answered; False when a
        hot copy was opened instead (self.file, sent as a local file). Immutable objects
        (segments, sprites) are streamed, those of a finished version kept in the hot
        cache; the others are read whole."""
        path = root.joinpath(*parts)
        keep = immutable and not building
        try:
            if not immutable:
                await self._send_small(root, parts, policy, wait, rewrite)
                return True
            hot = storefiles.hot_cache(self.config, self.services)
            key = storefiles.key_of(self.config, path)
            if keep and hot.enabled:
                if cache_key is not None:
                    self.cached = self.open_files.acquire(cache_key)
                    if self.cached is not None:
                        self.file = self.cached.file
                        return False
                copy = hot.lookup(key)
                if copy is not None and hot.needs_check(key):
                    copy = await self._still_stored(hot, key, path, copy)
                if copy is not None:
                    include_body = not self.request_facts().head
                    opened = await asyncio.get_running_loop().run_in_executor(
                        self.services.file_executor,
                        mediafiles.open_inside,
                        hot.root,
                        copy.parts,
                        self._prefetch_bytes(include_body),
                        include_body and zerocopy.usable(self.request),
                    )
                    if opened is not None:
                        self.file = dataclasses.replace(opened, facts=copy.facts)
                        if cache_key is not None:
                            self.cached = self.open_files.add(cache_key, self.file)
                        return False
                    hot.forget(key)
            await self._send_streamed(root, parts, policy, wait, keep, hot if keep else None)
            return True
        except storefiles.StoreUnavailable as exc:
            raise self.store_down(exc) from None

    async def _still_stored(self, hot: Any, key: str, path: Path, copy: Any) -> Any:
        """The hot copy, if its object is still in the bucket unchanged (another host's
        sweeper may have removed an old version); None (copy dropped) otherwise. A store
        that does not answer leaves the copy in use: its bytes were the object's."""
        try:
            info = await storefiles.bounded(self.services, self.services.storage.head(path))
        except storefiles.StoreUnavailable:
            return copy
        if info is None or info.etag != copy.facts.etag:
            hot.forget(key)
            storefiles.forget_facts(self.config, self.services, path)
            return None
        hot.mark_checked(key)
        return copy

    async def _send_small(
        self, root: Path, parts: tuple[str, ...], policy: answer.Policy, wait: bool, rewrite: bool = False
    ) -> None:
        """A mutable small object (a playlist, a track, an image) read whole; `rewrite`:
        with the query form's token on its URIs (tokenforms.py), made per request."""
        path = root.joinpath(*parts)
        read = await storefiles.read_small(self.config, self.services, path)
        if read is None and wait:
            read = await self._wait_in_store(
                root, parts, lambda: storefiles.read_small(self.config, self.services, path, fresh=True)
            )
        if read is None:
            raise APIError(404)
        facts, data = read
        if rewrite:
            data = tokenforms.with_token_query(self.kind, parts[-1], data, self.token_query)
            self.write_answer(answer.answer_rendered(self.request_facts(), policy, data))
            return
        result = answer.answer_object(self.request_facts(), policy, facts)
        if isinstance(result.body, answer.GzippedFile):
            gzipped = await asyncio.get_running_loop().run_in_executor(self.services.file_executor, _gzip, data)
            result = answer.with_gzipped(result, gzipped)
        self.write_answer(result)
        body = result.body
        if result.with_body and isinstance(body, answer.StoreRange):
            self.write(data[body.start : body.end])

    async def _send_streamed(
        self,
        root: Path,
        parts: tuple[str, ...],
        policy: answer.Policy,
        wait: bool,
        keep: bool,
        hot: Any,
    ) -> None:
        """A segment or sprite streamed from the bucket by range (never whole in memory),
        copied into the hot cache on the way when it is all of a keepable object."""
        path = root.joinpath(*parts)
        facts = await storefiles.object_facts(self.config, self.services, path, immutable=keep)
        if facts is None and wait:
            facts = await self._wait_in_store(
                root, parts, lambda: storefiles.object_facts(self.config, self.services, path, immutable=False)
            )
        if facts is None:
            raise APIError(404)
        result = answer.answer_object(self.request_facts(), policy, facts)
        body = result.body
        if not (result.with_body and isinstance(body, answer.StoreRange) and body.end > body.start):
            self.write_answer(result)
            return
        stream = cast(AsyncGenerator[bytes, None], self.services.storage.stream(path, body.start, body.end - 1))
        fill = None
        try:
            try:  # before the first byte an error is still an answer of its own
                first = await storefiles.bounded(self.services, anext(stream, b""))
            except FileNotFoundError:
                storefiles.forget_facts(self.config, self.services, path)
                raise APIError(404) from None
            self.write_answer(result)
            if hot is not None and body.start == 0 and body.end == facts.size:
                fill = await hot.start_fill(storefiles.key_of(self.config, path), facts)
            await self._relay(stream, first, body.end - body.start, fill)
            fill = None  # (committed with the last chunk, or aborted)
        finally:
            if fill is not None:
                await fill.abort()
            await stream.aclose()

    async def _relay(self, stream: Any, first: bytes, length: int, fill: Any) -> bool:
        """Write the object's chunks to the client (and to the hot copy `fill`, committed
        with the last chunk, before it is flushed: once the client has every byte the copy
        is in place; aborted otherwise) as they come; True when all `length` bytes went.
        The client leaving ends it quietly; the store failing mid-body closes the
        connection (the headers are gone)."""
        sent = 0
        chunk = first
        try:
            try:
                while chunk:
                    self.write(chunk)
                    sent += len(chunk)
                    if fill is not None:
                        await fill.write(chunk)
                        if sent == length:
                            await fill.commit()
                            fill = None
                    await self.flush()
                    chunk = await anext(stream, b"")
            finally:
                if fill is not None:
                    await fill.abort()
        except tornado.iostream.StreamClosedError:
            return False
        except (StorageError, OSError, TimeoutError) as exc:
            log.warning("media storage failed mid-body (%s of %s bytes sent): %s", sent, length, exc)
        if sent == length:
            return True
        log.warning("media storage sent %s of %s bytes: connection closed", sent, length)
        http1(self.request).stream.close()
        return False

    async def _wait_in_store(self, root: Path, parts: tuple[str, ...], fetch: Any) -> Any:
        """A file of the version being built not in the bucket yet: polled for up to
        BUILDING_WAIT_SECONDS, then 503 (as on disk). A segment of a rendition whose
        playlist is not in the bucket is no file of the run: None (404)."""
        if len(parts) < 2:
            return None
        if parts[-1] != media.MEDIA_PLAYLIST_NAME:
            playlist = root.joinpath(*parts[:-1], media.MEDIA_PLAYLIST_NAME)
            if await storefiles.read_small(self.config, self.services, playlist) is None:
                return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUILDING_WAIT_SECONDS
        while loop.time() < deadline:
            await asyncio.sleep(BUILDING_POLL_SECONDS)
            found = await fetch()
            if found is not None:
                return found
        self.retry_expected = True
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
            body = await subtitle_hls.render_hls(
                self.config, self.services, target.video_id, served.version, language, segment
            )
        except subtitle_hls.SubtitleUnavailable:
            raise APIError(404) from None
        except subtitle_hls.SubtitleNotReady:
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


def _gzip(data: bytes) -> bytes:
    """gzip of a small object read whole (mtime 0: the same bytes always give the same coding)."""
    return gzip.compress(data, compresslevel=answer.GZIP_LEVEL, mtime=0)
