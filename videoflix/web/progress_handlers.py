"""Watch progress and "Continue watching" (API.md §6)."""

from __future__ import annotations

from videoflix.library import watching
from videoflix.platform import media
from videoflix.web import schemas
from videoflix.web.base import APIError, BaseHandler, authenticated
from videoflix.web.operation import operation
from videoflix.web.video_handlers import VIDEO_ID


class VideoProgressHandler(BaseHandler):
    @operation(
        "Store the caller's position in the video (POST too, for navigator.sendBeacon)",
        params=(schemas.VIDEO_ID,),
        json=schemas.POSITION,
        responses={204: "Stored", 400: "Not a number in range", 404: "Unknown video, or one the caller may not see"},
    )
    @authenticated
    async def put(self, video_id: str) -> None:
        user = self.current_user
        try:
            position = watching.parse_position(self.json_body(("position",)))
            await watching.save_position(self.services, int(video_id), user.user_id, user.is_admin, position)
        except watching.InvalidPosition as exc:
            raise APIError(400, body={"position": [str(exc)]}) from None
        except media.VideoNotFound:
            raise APIError(404) from None
        self.set_status(204)
        self.finish()

    # navigator.sendBeacon (the page being left) can only POST: same body, same rules.
    post = put


class ContinueWatchingHandler(BaseHandler):
    @operation(
        "Started and unfinished videos, most recently watched first",
        responses={200: {"type": "array", "items": schemas.CONTINUE_ITEM}},
    )
    @authenticated
    async def get(self) -> None:
        user = self.current_user
        self.write_json(await watching.list_continue(self.config, self.services, user.user_id, user.is_admin))


ROUTES = [
    (r"/api/video/continue/", ContinueWatchingHandler),
    (rf"/api/video/{VIDEO_ID}/progress/", VideoProgressHandler),
]
