"""Watch progress and "Continue watching" (API.md §6)."""
from __future__ import annotations

from videoflix.library import watching
from videoflix.platform import media
from videoflix.web.base import APIError, BaseHandler, authenticated
from videoflix.web.video_handlers import VIDEO_ID


class VideoProgressHandler(BaseHandler):
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
    @authenticated
    async def get(self) -> None:
        user = self.current_user
        self.write_json(await watching.list_continue(self.config, self.services, user.user_id, user.is_admin))


ROUTES = [
    (r"/api/video/continue/", ContinueWatchingHandler),
    (rf"/api/video/{VIDEO_ID}/progress/", VideoProgressHandler),
]
