"""`GET /api/video/events/`: Server-Sent Events of the caller's videos (API.md §6)."""
from __future__ import annotations

import asyncio

import tornado.iostream

from videoflix.library import events
from videoflix.web.base import APIError, BaseHandler, authenticated

# A comment line this often keeps proxies from timing the stream out and finds
# clients that went away without closing.
HEARTBEAT_SECONDS = 20
# EventSource reconnects after this many milliseconds when the stream ends.
RETRY_MILLISECONDS = 2000


class VideoEventsHandler(BaseHandler):
    subscription: events.Subscription | None = None

    @property
    def hub(self) -> events.EventHub:
        return self.settings["events"]

    @authenticated
    async def get(self) -> None:
        user = self.current_user
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        try:
            self.subscription = await self.hub.subscribe(user.user_id, user.is_admin)
        except asyncio.TimeoutError:
            raise APIError(503) from None
        try:
            initial = await events.snapshot(self.config, self.services, user.user_id, user.is_admin)
            self.write(f"retry: {RETRY_MILLISECONDS}\n\n")
            for detail in reversed(initial):  # oldest first: a client appends in order
                self.write(events.sse_message(events.VIDEO_EVENT, detail))
            self.write(": snapshot done\n\n")
            await self.flush()
            while True:
                try:
                    item = await self.subscription.next(HEARTBEAT_SECONDS)
                except asyncio.TimeoutError:
                    self.write(": keep-alive\n\n")
                else:
                    if item is None:
                        break
                    self.write(events.sse_message(*item))
                await self.flush()
        except tornado.iostream.StreamClosedError:
            return
        finally:
            self.hub.unsubscribe(self.subscription)
        self.finish()

    def on_connection_close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        super().on_connection_close()


ROUTES = [
    (r"/api/video/events/", VideoEventsHandler),
]
