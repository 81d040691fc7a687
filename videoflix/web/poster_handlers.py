"""Custom posters (library/posters.py), owner or admin:

    POST /api/video/<id>/poster/         multipart `file`: a JPEG, PNG or WebP image -> 200
    PUT  /api/video/<id>/poster/frame/   {"time": <seconds>}: the frame at that time  -> 200

Both answer {"poster_url", "thumbnail_url"}. The image body is small (posters.MAX_IMAGE_BYTES)
and streamed into memory through the capped multipart parser, after the caller, the content
type and the video were checked.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import tornado.web

from videoflix.delivery import playback
from videoflix.library import images, posters
from videoflix.library.uploads import FileTooLarge, MemoryFileTarget, MultipartForm, UploadError
from videoflix.platform import media
from videoflix.tables.videos import PlaybackVideo
from videoflix.web import requestrules, schemas
from videoflix.web.base import APIError, BaseHandler, IdleBodyMixin, authenticated, http1
from videoflix.web.operation import Schema, operation

log = logging.getLogger(__name__)

POSTER_BODY_OVERHEAD_BYTES = 16 * 1024
POSTER_BODY_TIMEOUT_SECONDS = 120.0
POSTER_UPLOAD = Schema(
    "PosterUpload",
    {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP"}},
        "required": ["file"],
    },
)
POSTER_FRAME = Schema(
    "PosterFrame",
    {"type": "object", "properties": {"time": {"type": "number", "minimum": 0}}, "required": ["time"]},
)
POSTER_URLS = Schema(
    "PosterURLs",
    {
        "type": "object",
        "properties": {"poster_url": {"type": "string"}, "thumbnail_url": {"type": "string"}},
        "required": ["poster_url", "thumbnail_url"],
    },
)


async def managed_video(handler: BaseHandler, raw_id: str) -> PlaybackVideo:
    """The video if the caller is its owner or an admin; 404 otherwise (as a missing one)."""
    user = handler.current_user
    video_id = media.parse_video_id(raw_id)
    if video_id is None:
        raise APIError(404)
    try:
        video = await playback.watchable_video(handler.services, video_id, user)
    except media.VideoNotFound:
        raise APIError(404) from None
    if not media.can_manage(video, user.user_id, user.is_admin):
        raise APIError(404)
    return video


def answer_urls(handler: BaseHandler, video: PlaybackVideo) -> None:
    row: Any = video  # (image_url reads id and visibility, which a playback row has)
    handler.write_json(
        {
            "poster_url": images.image_url(handler.config, row, images.POSTER_KIND),
            "thumbnail_url": images.image_url(handler.config, row, images.THUMBNAIL_KIND),
        }
    )


@tornado.web.stream_request_body
class PosterHandler(IdleBodyMixin, BaseHandler):
    takes_json = False  # multipart, read below
    form: MultipartForm | None = None
    video: PlaybackVideo | None = None

    async def prepare(self) -> None:
        super().prepare()  # the origin rule (403)
        if self.request.method != "POST":
            return
        await self.authenticate()
        try:
            requestrules.check_multipart_request(self.request.headers)
        except requestrules.RuleViolation as exc:
            raise APIError(exc.status, body=exc.body) from None
        limit = posters.MAX_IMAGE_BYTES + POSTER_BODY_OVERHEAD_BYTES
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            raise APIError(413, f"Image too large: at most {posters.MAX_IMAGE_BYTES} bytes.")
        self.video = await managed_video(self, self.path_args[0])
        http1(self.request).set_max_body_size(limit)
        http1(self.request).set_body_timeout(POSTER_BODY_TIMEOUT_SECONDS)
        try:
            self.form = MultipartForm(
                self.request.headers, {}, lambda counter: MemoryFileTarget(posters.MAX_IMAGE_BYTES, counter)
            )
        except UploadError as exc:
            raise APIError(400, str(exc)) from None
        self.watch_idle()

    def on_idle(self) -> None:
        self.form = None

    def on_finish(self) -> None:
        self.stop_watching_idle()

    async def data_received(self, chunk: bytes) -> None:
        form = self.form
        if form is None:
            return
        self.body_arrived()
        try:
            if form.received_bytes + len(chunk) > posters.MAX_IMAGE_BYTES + POSTER_BODY_OVERHEAD_BYTES:
                raise FileTooLarge(f"Image too large: at most {posters.MAX_IMAGE_BYTES} bytes.")
            await form.feed(chunk)
        except FileTooLarge as exc:
            self.refuse(APIError(413, str(exc)))
        except UploadError as exc:
            self.refuse(APIError(400, str(exc)))

    def refuse(self, error: APIError) -> None:
        self.form = None
        self.stop_watching_idle()
        self.send_error(error.status, exc_info=(type(error), error, None))

    @operation(
        "Replace the poster and thumbnail with an uploaded image (owner or admin)",
        params=(schemas.VIDEO_ID,),
        form=POSTER_UPLOAD,
        description=lambda config: (
            f"Checked by decoding it (JPEG, PNG or WebP, at most {config.max_video_width}x"
            f"{config.max_video_height} and {config.max_video_pixels} pixels), re-encoded at both sizes; "
            "kept across re-transcodes."
        ),
        responses={
            200: POSTER_URLS,
            400: "Not an image this server takes, undecodable, too many pixels, or no file",
            404: "Unknown video, not ready, or not the caller's",
            413: f"An image over {posters.MAX_IMAGE_BYTES} bytes",
            415: requestrules.EXPECTED_MULTIPART,
        },
    )
    @authenticated
    async def post(self, raw_id: str) -> None:
        self.stop_watching_idle()
        form, video = self.form, self.video
        if form is None or video is None:  # (answered mid-body)
            return
        target = form.file
        assert isinstance(target, MemoryFileTarget)
        if not (target.received and target.complete) or not target.size:
            raise APIError(400, body={"file": ["No file was submitted."]})
        try:
            await posters.set_from_image(self.config, self.services, video, target.value)
        except posters.PosterRefused as exc:
            raise APIError(400, body={"file": [str(exc)]}) from None
        answer_urls(self, video)


class PosterFrameHandler(BaseHandler):
    @operation(
        "Make the frame at a time the poster and thumbnail (owner or admin)",
        params=(schemas.VIDEO_ID,),
        json=POSTER_FRAME,
        description="From the live version's highest rendition; kept across re-transcodes.",
        responses={
            200: POSTER_URLS,
            400: "`time` missing, not a number, negative, or past the end",
            404: "Unknown video, not ready, or not the caller's",
        },
    )
    @authenticated
    async def put(self, raw_id: str) -> None:
        body = self.json_body(("time",))
        seconds = body.get("time")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise APIError(400, body={"time": ["A number of seconds is required."]})
        if seconds < 0:
            raise APIError(400, body={"time": ["Must be 0 or more."]})
        video = await managed_video(self, raw_id)
        try:
            await posters.set_from_frame(self.config, self.services, video, float(seconds))
        except posters.PosterRefused as exc:
            raise APIError(400, body={"time": [str(exc)]}) from None
        answer_urls(self, video)


PART = r"([^/]+)"
ROUTES = [
    (rf"/api/video/{PART}/poster/", PosterHandler),
    (rf"/api/video/{PART}/poster/frame/", PosterFrameHandler),
]
