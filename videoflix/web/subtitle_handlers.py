"""Subtitles of a video (API.md §6): upload (multipart), delete, and the whole file.

    POST   /api/video/<id>/subtitles/             file (.vtt/.srt), language, label?  -> 201
    GET    /api/video/<id>/subtitles/<language>/  the canonical WebVTT file (text/vtt)
    DELETE /api/video/<id>/subtitles/<language>/  -> 204

A version's subtitle playlists and segments are HLS files: web/media_handlers.py.

The upload's body is small (subtitle_formats.MAX_FILE_BYTES) and streamed into memory
through a capped parser; before a byte of it is read the caller is authenticated
(401), the content type checked (415), a declared oversize refused (413) and the
video looked up (404 unless owner or admin).
"""

from __future__ import annotations

import asyncio
import logging

import tornado.web

from videoflix.delivery import answer
from videoflix.library import catalog, subtitle_formats, subtitle_tracks, uploads
from videoflix.library.uploads import FileTooLarge, SubtitleUploadReceiver, UploadError
from videoflix.platform import media
from videoflix.web import requestrules, schemas
from videoflix.web.base import APIError, BaseHandler, IdleBodyMixin, authenticated, http1
from videoflix.web.operation import Response, operation

log = logging.getLogger(__name__)

# Multipart framing and the two text fields around a file of the maximum size.
SUBTITLE_BODY_OVERHEAD_BYTES = 16 * 1024
# A 2 MiB body arrives in seconds even on a slow line; a stalled one is cut off.
SUBTITLE_BODY_TIMEOUT_SECONDS = 60.0


@tornado.web.stream_request_body
class SubtitleListHandler(IdleBodyMixin, BaseHandler):
    """POST /api/video/<id>/subtitles/"""

    takes_json = False  # multipart, read below
    receiver: SubtitleUploadReceiver | None = None
    slot_user: int | None = None

    async def prepare(self) -> None:
        super().prepare()  # the origin rule (403)
        if self.request.method != "POST":
            return
        user = await self.authenticate()
        try:
            requestrules.check_multipart_request(self.request.headers)
        except requestrules.RuleViolation as exc:
            raise APIError(exc.status, body=exc.body) from None
        limit = subtitle_formats.MAX_FILE_BYTES + SUBTITLE_BODY_OVERHEAD_BYTES
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            raise APIError(413, f"File too large: the limit is {subtitle_formats.MAX_FILE_BYTES} bytes.")
        video_id = media.parse_video_id(self.path_args[0])
        if video_id is None:
            raise APIError(404)
        try:
            await subtitle_tracks.check_manageable(self.services, video_id, user.user_id, user.is_admin)
        except media.VideoNotFound:
            raise APIError(404) from None
        try:
            await subtitle_tracks.reserve_upload(self.services, user.user_id, user.is_admin)
        except subtitle_tracks.UploadsThrottled as exc:
            raise APIError(
                429,
                f"Too many subtitle uploads: at most {subtitle_tracks.SUBTITLE_UPLOADS_PER_HOUR} an hour.",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        if not uploads.take_upload_slot(self.services, user.user_id, self.config.max_concurrent_uploads):
            raise APIError(
                429, f"Too many uploads at once: at most {self.config.max_concurrent_uploads} in progress per user."
            )
        self.slot_user = user.user_id
        http1(self.request).set_max_body_size(limit)
        http1(self.request).set_body_timeout(SUBTITLE_BODY_TIMEOUT_SECONDS)
        try:
            self.receiver = SubtitleUploadReceiver(self.request.headers, subtitle_formats.MAX_FILE_BYTES)
        except UploadError as exc:
            raise APIError(400, str(exc)) from None
        self.watch_idle()

    def on_idle(self) -> None:
        self.receiver = None
        self.on_finish()

    async def data_received(self, chunk: bytes) -> None:
        receiver = self.receiver
        if receiver is None:
            return
        self.body_arrived()
        limit = subtitle_formats.MAX_FILE_BYTES + SUBTITLE_BODY_OVERHEAD_BYTES
        try:
            if receiver.received_bytes + len(chunk) > limit:
                raise FileTooLarge(f"File too large: the limit is {subtitle_formats.MAX_FILE_BYTES} bytes.")
            await receiver.feed(chunk)
        except FileTooLarge as exc:
            self.refuse(APIError(413, str(exc)))
        except UploadError as exc:
            self.refuse(APIError(400, str(exc)))

    def refuse(self, error: APIError) -> None:
        """Answer now, mid-body; the rest of the body is ignored."""
        self.receiver = None
        self.send_error(error.status, exc_info=(type(error), error, None))

    def on_finish(self) -> None:
        self.stop_watching_idle()
        if self.slot_user is not None:
            uploads.release_upload_slot(self.services, self.slot_user)
            self.slot_user = None

    def on_connection_close(self) -> None:
        self.receiver = None
        self.on_finish()
        super().on_connection_close()

    @operation(
        "Add subtitles in a language (owner or admin): a .vtt or .srt file; an existing track of that "
        "language is replaced",
        params=(schemas.VIDEO_ID,),
        form=schemas.SUBTITLE_UPLOAD,
        responses={
            201: Response("Stored", schemas.SUBTITLE),
            400: "Field errors: the file (the error names the line), the language or the label",
            404: "Unknown video, or not the caller's",
            409: f"A new language on a video with {subtitle_tracks.MAX_TRACKS_PER_VIDEO} tracks",
            413: f"A file over {subtitle_formats.MAX_FILE_BYTES} bytes",
            415: requestrules.EXPECTED_MULTIPART,
            429: lambda config: (
                f"{subtitle_tracks.SUBTITLE_UPLOADS_PER_HOUR} uploads of the caller "
                "this hour (Retry-After; admins are not counted), or "
                f"{config.max_concurrent_uploads} in progress"
            ),
        },
    )
    @authenticated
    async def post(self, raw_id: str) -> None:
        video_id = media.parse_video_id(raw_id)  # checked in prepare already
        assert video_id is not None
        receiver = self.receiver
        if receiver is None:  # refused mid-body: the answer is out
            return
        user = self.current_user
        try:
            fields = receiver.fields()
            data = receiver.file.value if receiver.has_file else None
            filename = receiver.filename if receiver.has_file else None
            answer = await subtitle_tracks.add_from_upload(
                self.config, self.services, video_id, user.user_id, user.is_admin, fields, filename, data
            )
        except UploadError as exc:
            raise APIError(400, str(exc)) from None
        except subtitle_tracks.InvalidSubtitle as exc:
            raise APIError(400, body=exc.errors) from None
        except subtitle_tracks.TooManyTracks:
            raise APIError(
                409,
                f"This video has {subtitle_tracks.MAX_TRACKS_PER_VIDEO} subtitle tracks already: "
                "remove one before adding another language.",
            ) from None
        except media.VideoNotFound:
            raise APIError(404) from None
        self.write_json(answer, 201)


class SubtitleHandler(BaseHandler):
    """GET (the WebVTT file) and DELETE /api/video/<id>/subtitles/<language>/"""

    def video_id(self, raw_id: str) -> int:
        video_id = media.parse_video_id(raw_id)
        if video_id is None:
            raise APIError(404)
        return video_id

    @operation(
        "The WebVTT file of one language (whoever may see the video)",
        params=(schemas.VIDEO_ID, schemas.LANGUAGE),
        responses={
            200: Response("WebVTT", media_types=(answer.VTT_TYPE.split(";")[0],)),
            404: "Unknown video or language, or a video the caller may not see",
        },
    )
    @authenticated
    async def get(self, raw_id: str, language: str) -> None:
        user = self.current_user
        video_id = self.video_id(raw_id)
        try:
            await catalog.get_visible_video(self.services, video_id, user.user_id, user.is_admin)
            tag = await asyncio.get_running_loop().run_in_executor(
                self.services.file_executor, subtitle_formats.check_language, language
            )
            body = await subtitle_tracks.read_canonical(self.config, self.services, video_id, tag)
        except (media.VideoNotFound, subtitle_formats.SubtitleError, ValueError):
            raise APIError(404) from None
        if body is None:
            raise APIError(404)
        self.set_header("Content-Type", answer.VTT_TYPE)
        # Replaced by a new upload under the same URL: revalidate every time.
        self.set_header("Cache-Control", "private, no-cache")
        self.finish(body)

    @operation(
        "Remove the subtitles of one language (owner or admin)",
        responses={204: "Deleted", 404: "Unknown video or language, or not the caller's video"},
    )
    @authenticated
    async def delete(self, raw_id: str, language: str) -> None:
        user = self.current_user
        video_id = self.video_id(raw_id)
        try:
            await subtitle_tracks.remove(self.config, self.services, video_id, user.user_id, user.is_admin, language)
        except media.VideoNotFound:
            raise APIError(404) from None
        except subtitle_tracks.SubtitleNotFound:
            raise APIError(404, "This video has no subtitles in that language.") from None
        self.set_status(204)
        self.finish()


# Parts are matched loosely and validated in the handlers (JSON 404s): a strict id
# pattern here would let /api/video/<19 digits>/subtitles/x/ fall through to the HLS
# segment route (405 instead of 404). (That route comes after these whatever their
# module's place: media_handlers.CATCH_ALL_ROUTES.)
PART = r"([^/]+)"
ROUTES = [
    (rf"/api/video/{PART}/subtitles/", SubtitleListHandler),
    (rf"/api/video/{PART}/subtitles/{PART}/", SubtitleHandler),
]
