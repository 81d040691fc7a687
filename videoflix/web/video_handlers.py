"""Catalog, detail, upload, delete, re-run (API.md §2 and §4)."""

from __future__ import annotations

import errno
import logging

import tornado.web

from videoflix.library import catalog, encoding, ledger, lifecycle, subtitle_tracks, trickplay, uploads, watching
from videoflix.library.uploads import UploadError, UploadReceiver
from videoflix.platform import media
from videoflix.tables.videos import Video
from videoflix.web import schemas
from videoflix.web.base import APIError, BaseHandler, IdleBodyMixin, admin, authenticated, http1
from videoflix.web.operation import Response, operation

log = logging.getLogger(__name__)

# Room for the multipart framing and text fields around a file of the maximum size.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


# The slowest upload rate a whole upload may average (a stall is cut off sooner, by
# the idle limit): bounds how long any upload can hold its connection.
MIN_UPLOAD_BYTES_PER_SECOND = 16 * 1024


@tornado.web.stream_request_body
class VideoListHandler(IdleBodyMixin, BaseHandler):
    receiver: UploadReceiver | None = None
    takes_json = False  # multipart, streamed to disk below
    slot_user: int | None = None  # holds an upload slot of this user

    async def prepare(self) -> None:
        super().prepare()
        if self.request.method != "POST":
            return
        # Authenticate before a single body byte is accepted.
        await self.authenticate()
        limit = self.config.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise APIError(413, f"File too large: the limit is {self.config.max_upload_bytes} bytes.")
        http1(self.request).set_max_body_size(limit)
        # The server's body deadline is for small bodies; an upload may take hours, and a
        # stalled one is cut off by watch_idle instead.
        http1(self.request).set_body_timeout(limit / MIN_UPLOAD_BYTES_PER_SECOND)
        user = self.current_user
        try:  # before a byte of the body: the declared size counts (the real one is checked at the end)
            await lifecycle.check_quota(
                self.config, self.services, user.user_id, user.is_admin, int(length) if length is not None else 0
            )
        except lifecycle.QuotaExceeded as exc:
            raise APIError(exc.status, exc.detail) from None
        if not uploads.take_upload_slot(self.services, user.user_id, self.config.max_concurrent_uploads):
            raise APIError(
                429, f"Too many uploads at once: at most {self.config.max_concurrent_uploads} in progress per user."
            )
        self.slot_user = user.user_id
        try:
            self.receiver = UploadReceiver(self.request.headers, self.config.media_dir, self.services.file_executor)
        except UploadError as exc:
            raise APIError(400, str(exc)) from None
        self.watch_idle()

    def on_idle(self) -> None:
        if self.receiver is not None:
            self.receiver.discard()
            self.receiver = None
        self.release_upload()

    def release_upload(self) -> None:
        self.stop_watching_idle()
        if self.slot_user is not None:
            uploads.release_upload_slot(self.services, self.slot_user)
            self.slot_user = None

    def on_finish(self) -> None:
        self.release_upload()

    async def data_received(self, chunk: bytes) -> None:
        receiver = self.receiver
        if receiver is None:
            return
        self.body_arrived()
        try:
            if receiver.received_bytes + len(chunk) > self.config.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
                raise APIError(413, f"File too large: the limit is {self.config.max_upload_bytes} bytes.")
            await receiver.feed(chunk)
        except (APIError, UploadError) as exc:
            self.refuse_upload(exc if isinstance(exc, APIError) else APIError(400, str(exc)))
        except OSError as exc:
            # Disk full or unwritable media dir: a JSON answer, not a dropped connection.
            log.error("upload to %s failed: %s", receiver.temp_path, exc)
            status = 507 if exc.errno == errno.ENOSPC else 500
            self.refuse_upload(
                APIError(
                    status, "Not enough storage to receive the upload." if status == 507 else "Internal server error."
                )
            )

    def refuse_upload(self, error: APIError) -> None:
        """Answer now, mid-body; the rest of the body is ignored."""
        assert self.receiver is not None
        self.receiver.discard()
        self.receiver = None
        self.send_error(error.status, exc_info=(type(error), error, None))

    def on_connection_close(self) -> None:
        # A client that goes away mid-upload leaves no file behind (and no row:
        # rows are created only once the body is complete).
        if self.receiver is not None and self.request.method == "POST":
            self.receiver.discard()
        self.release_upload()
        super().on_connection_close()

    @operation(
        "Catalog: ready videos the caller may watch, newest first",
        responses={200: {"type": "array", "items": schemas.CATALOG_ITEM}},
    )
    @authenticated
    async def get(self) -> None:
        user = self.current_user
        items = await catalog.list_catalog(self.config, self.services, user.user_id, user.is_admin)
        self.write_json(items)

    @operation(
        "Upload a video (multipart, streamed to disk); queued for transcoding",
        form=schemas.UPLOAD,
        responses={
            201: Response("Queued", schemas.VIDEO_DETAIL),
            400: "Field errors, or a file that is not a video this server takes",
            413: lambda config: (
                f"A file over {config.max_upload_bytes} bytes, or one past the "
                f"caller's storage quota ({config.max_user_bytes} bytes; admins "
                "exempt)"
            ),
            429: lambda config: (
                f"{config.max_concurrent_uploads} uploads of the caller in progress, "
                f"or {config.max_queued_per_user} of their videos waiting to be "
                "transcoded (admins exempt)"
            ),
            507: "Not enough storage to receive it",
        },
    )
    @authenticated
    async def post(self) -> None:
        if self.idle_timer is not None:  # the body is complete
            self.idle_timer.cancel()
            self.idle_timer = None
        user = self.current_user
        try:
            assert self.receiver is not None  # (the body is complete: prepare made it)
            video = await lifecycle.create_from_upload(
                self.config, self.services, self.receiver, user.user_id, user.is_admin, self.client_gone
            )
        except lifecycle.InvalidUpload as exc:
            raise APIError(400, body=exc.errors) from None
        except lifecycle.UploadRejected as exc:
            raise APIError(400, str(exc)) from None
        except lifecycle.QuotaExceeded as exc:
            raise APIError(exc.status, exc.detail) from None
        self.write_json(catalog.detail_item(self.config, video, None, subtitles=[]), 201)

    def client_gone(self) -> bool:
        stream = http1(self.request).stream
        return stream is None or stream.closed()


class VideoDetailHandler(BaseHandler):
    async def write_detail(self, video: Video, user_id: int) -> None:
        """The detail object (API.md §4, §6) with the caller's progress and position."""
        progress = await catalog.get_progress(self.services, video.id)
        position = await watching.get_position(self.services, video.id, user_id)
        playable = await catalog.get_playable_version(self.services, video)
        tracks = await subtitle_tracks.list_items(self.config, self.services, video.id)
        thumbnails = await trickplay.thumbnails_vtt(self.config, self.services, video)
        how = await encoding.encoding(self.config, self.services, video)
        # The storage ledger: for the owner and admins only (issue 23 item 5).
        mine = video.owner_id == user_id or self.current_user.is_admin
        row_ledger = await ledger.detail_storage(self.services, video.id) if mine else None
        self.write_json(
            catalog.detail_item(
                self.config,
                video,
                progress,
                position,
                playable,
                tracks,
                thumbnails_vtt=thumbnails,
                encoding=how,
                show_storage=mine,
                storage=row_ledger,
            )
        )

    @operation(
        "Detail of a video the caller may see",
        params=(schemas.VIDEO_ID,),
        responses={200: schemas.VIDEO_DETAIL, 404: "Unknown video, or one the caller may not see"},
    )
    @authenticated
    async def get(self, video_id: str) -> None:
        user = self.current_user
        try:
            video = await catalog.get_visible_video(self.services, int(video_id), user.user_id, user.is_admin)
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.write_detail(video, user.user_id)

    @operation(
        "Edit title, description, category or visibility (owner or admin)",
        json=schemas.VIDEO_CHANGES,
        responses={
            200: schemas.VIDEO_DETAIL,
            400: "Field errors (the upload's rules), or nothing to change",
            404: "Unknown video, or not the caller's",
        },
    )
    @authenticated
    async def patch(self, video_id: str) -> None:
        user = self.current_user
        try:
            changes = lifecycle.check_changes(
                self.json_body(lifecycle.EDITABLE_FIELDS), user.is_admin, self.config.allow_public_user_uploads
            )
            video = await lifecycle.update_video(self.services, int(video_id), user.user_id, user.is_admin, changes)
        except lifecycle.InvalidUpload as exc:
            raise APIError(400, body=exc.errors) from None
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.write_detail(video, user.user_id)

    @operation(
        "Delete a video (owner or admin): row, source, renditions, images",
        responses={204: "Deleted", 404: "Unknown video, or not the caller's"},
    )
    @authenticated
    async def delete(self, video_id: str) -> None:
        user = self.current_user
        try:
            await lifecycle.delete_video(self.config, self.services, int(video_id), user.user_id, user.is_admin)
        except media.VideoNotFound:
            raise APIError(404) from None
        self.set_status(204)
        self.finish()


class VideoRetranscodeHandler(BaseHandler):
    @operation(
        "Transcode again",
        params=(schemas.VIDEO_ID,),
        responses={
            202: Response("Queued again", schemas.VIDEO_DETAIL),
            404: "Unknown video",
            409: "Already queued or processing",
        },
    )
    @admin
    async def post(self, video_id: str) -> None:
        try:
            video = await lifecycle.retranscode(self.config, self.services, int(video_id))
        except media.VideoNotFound:
            raise APIError(404) from None
        except lifecycle.VideoBusy:
            raise APIError(409, "The video is already queued or processing.") from None
        self.write_json(catalog.detail_item(self.config, video, None), 202)


class StorageHandler(BaseHandler):
    @operation(
        "The storage ledger: the caller's bytes on disk; admins also the total and each user's",
        responses={200: schemas.STORAGE_SUMMARY},
    )
    @authenticated
    async def get(self) -> None:
        user = self.current_user
        self.write_json(await ledger.summary(self.services, user.user_id, user.is_admin))


# Ids are validated by the route: anything but a media.VIDEO_ID_PATTERN never reaches a handler (404).
VIDEO_ID = rf"({media.VIDEO_ID_PATTERN})"
ROUTES = [
    (r"/api/video/", VideoListHandler),
    (rf"/api/video/{VIDEO_ID}/", VideoDetailHandler),
    (rf"/api/video/{VIDEO_ID}/retranscode/", VideoRetranscodeHandler),
    (r"/api/storage/", StorageHandler),
]
