"""Downloads for offline viewing (delivery/download.py): the MP4 of one rendition, with
the access cookie or under a stream token, and the admins' switch per video."""

from __future__ import annotations

import contextlib
import logging
import re
import time

import tornado.iostream
import tornado.web

from videoflix.accounts import sessions
from videoflix.delivery import download, playback, storefiles
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos as video_rows
from videoflix.web import schemas
from videoflix.web.base import INVALID_TOKEN, APIError, BaseHandler, admin, authenticated, public
from videoflix.web.hls_files import STORE_DOWN, STORE_RETRY_AFTER
from videoflix.web.operation import Response, ResponseValue, Schema, operation

log = logging.getLogger(__name__)

DOWNLOADS_OFF = "Downloads are turned off for this video."
DOWNLOAD_ANSWERS: dict[int, ResponseValue] = {
    200: Response(
        "Fragmented MP4 (no re-encoding), streamed as it is made; Content-Disposition names the title",
        media_types=(download.CONTENT_TYPE,),
    ),
    403: "An admin turned downloads off for this video",
    404: "Unknown video, not watchable by the caller, or no such rendition",
}
DOWNLOADS_SWITCH = Schema(
    "DownloadsSwitch",
    {"type": "object", "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"]},
)
DOWNLOADS_STATE = Schema(
    "DownloadsState",
    {
        "type": "object",
        "properties": {"downloads_enabled": {"type": "boolean"}, "can_download": {"type": "boolean"}},
        "required": ["downloads_enabled", "can_download"],
    },
)


class DownloadHandlerBase(BaseHandler):
    async def send_download(self, video_id: int, served: playback.ServedFile, is_admin: bool) -> None:
        async with cursor(self.services.pool) as cur:
            enabled = await video_rows.downloads_enabled(cur, video_id)
            video = await video_rows.get_video(cur, video_id)
        if enabled is None or video is None:
            raise APIError(404)
        if not enabled and not is_admin:
            raise APIError(403, DOWNLOADS_OFF)
        try:
            parts = await download.segment_parts(
                self.config.media_dir, video_id, served, self.services.file_executor, self.services.storage
            )
        except download.DownloadUnavailable:
            raise APIError(404) from None
        except storefiles.StoreUnavailable:
            raise APIError(503, STORE_DOWN, headers={"Retry-After": STORE_RETRY_AFTER}) from None
        self.set_header("Content-Type", download.CONTENT_TYPE)
        self.set_header("Content-Disposition", download.content_disposition(video.title))
        self.set_header("Cache-Control", "private, no-store")
        chunks = download.remux(
            self.config.media_dir, video_id, served.version, parts, self.services.file_executor, self.services.storage
        )
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                self.write(chunk)
                try:
                    await self.flush()  # the client paces ffmpeg
                except tornado.iostream.StreamClosedError:
                    return
        self.finish()


def _target(raw_id: str, resolution: str) -> playback.HLSTarget:
    try:
        return playback.parse_hls_target("playlist", (raw_id, resolution))
    except (media.VideoNotFound, ValueError):
        raise APIError(404) from None


class VideoDownloadHandler(DownloadHandlerBase):
    @operation(
        "Download one rendition as MP4 for offline viewing",
        params=(schemas.VIDEO_ID, schemas.RESOLUTION),
        description="The access rules of playback; a rendition above the highest produced is the highest.",
        responses=DOWNLOAD_ANSWERS,
    )
    @authenticated
    async def get(self, raw_id: str, resolution: str) -> None:
        target = _target(raw_id, resolution)
        try:
            served = await playback.watchable_file(self.services, target, self.current_user)
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.send_download(target.video_id, served, self.current_user.is_admin)


class StreamDownloadHandler(DownloadHandlerBase):
    @operation(
        "Download one rendition as MP4, under a signed stream URL",
        params=(schemas.STREAM_TOKEN, schemas.VIDEO_ID, schemas.RESOLUTION),
        responses={**DOWNLOAD_ANSWERS, 401: "A bad, expired or revoked stream token"},
    )
    @public
    async def get(self, token: str, raw_id: str, resolution: str) -> None:
        target = _target(raw_id, resolution)
        try:
            served = await playback.streamable_file(self.config, self.services, token, target, int(time.time()))
        except playback.InvalidStreamToken:
            raise APIError(401, INVALID_TOKEN) from None
        except media.VideoNotFound:
            raise APIError(404) from None
        except sessions.Unavailable:
            raise APIError(503) from None
        await self.send_download(target.video_id, served, False)


class DownloadsSwitchHandler(BaseHandler):
    @operation(
        "Whether a video may be downloaded, and by the caller (admins always may)",
        params=(schemas.VIDEO_ID,),
        responses={200: DOWNLOADS_STATE, 404: "Unknown video, or one the caller may not watch"},
    )
    @authenticated
    async def get(self, raw_id: str) -> None:
        user = self.current_user
        video_id = media.parse_video_id(raw_id)
        if video_id is None:
            raise APIError(404)
        try:
            await playback.watchable_video(self.services, video_id, user)
        except media.VideoNotFound:
            raise APIError(404) from None
        async with cursor(self.services.pool) as cur:
            enabled = await video_rows.downloads_enabled(cur, video_id)
        if enabled is None:
            raise APIError(404)
        self.write_json({"downloads_enabled": enabled, "can_download": enabled or bool(user.is_admin)})

    @operation(
        "Turn downloads of a video on or off (admins)",
        params=(schemas.VIDEO_ID,),
        json=DOWNLOADS_SWITCH,
        responses={200: DOWNLOADS_STATE, 400: "`enabled` missing or not a boolean", 404: "Unknown video"},
    )
    @admin
    async def put(self, raw_id: str) -> None:
        video_id = media.parse_video_id(raw_id)
        body = self.json_body(("enabled",))
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise APIError(400, body={"enabled": ["Must be true or false."]})
        if video_id is None:
            raise APIError(404)
        async with cursor(self.services.pool) as cur:
            if not await video_rows.set_downloads_enabled(cur, video_id, enabled):
                raise APIError(404)
        log.info("video %s: downloads %s by user %s", video_id, "on" if enabled else "off", self.current_user.user_id)
        self.write_json({"downloads_enabled": enabled, "can_download": True})


# Matched before the segment routes (app.collect_routes), which would take download.mp4
# for a segment name and refuse it.
PART = r"([^/]+)"
FILE = re.escape(download.DOWNLOAD_NAME)
ROUTES = [
    (rf"/api/video/{PART}/{PART}/{FILE}", VideoDownloadHandler),
    (rf"/api/stream/{PART}/{PART}/{PART}/{FILE}", StreamDownloadHandler),
    (rf"/api/video/{PART}/downloads/", DownloadsSwitchHandler),
]
