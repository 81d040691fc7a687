"""`GET /api/video/events/`: Server-Sent Events of the caller's videos (API.md §6)."""

from __future__ import annotations

import time
from typing import Any, cast

import tornado.iostream

from videoflix.library import events
from videoflix.web.base import APIError, BaseHandler, authenticated
from videoflix.web.operation import Response, operation

# A comment line this often keeps proxies from timing the stream out and finds
# clients that went away without closing.
HEARTBEAT_SECONDS = 20
# EventSource reconnects after this many milliseconds when the stream ends.
RETRY_MILLISECONDS = 2000
# What the loop sees when it woke with no event.
IDLE: tuple[str, dict[str, Any]] = ("", {})


class VideoEventsHandler(BaseHandler):
    subscription: events.Subscription | None = None

    @property
    def hub(self) -> events.EventHub:
        return cast(events.EventHub, self.settings["events"])

    @operation(
        "Server-Sent Events: a snapshot of the caller's videos (admins: all), then `video` (the detail) "
        "on every change and progress step, `video-deleted`",
        responses={
            200: Response(
                "An event stream, until the session or its access token ends", media_types=("text/event-stream",)
            ),
            429: f"{events.MAX_STREAMS_PER_USER} streams of the caller open already (Retry-After)",
            503: f"{events.MAX_STREAMS} streams open in this process already (Retry-After)",
        },
    )
    @authenticated
    async def get(self) -> None:
        user = self.current_user
        try:
            self.subscription = await self.hub.subscribe(user)
        except events.TooManyStreams:
            raise APIError(
                429,
                f"At most {events.MAX_STREAMS_PER_USER} event streams per user.",
                headers={"Retry-After": str(RETRY_MILLISECONDS // 1000)},
            ) from None
        except (TimeoutError, events.StreamsFull):
            raise APIError(503, headers={"Retry-After": str(RETRY_MILLISECONDS // 1000)}) from None
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        subscription = self.subscription
        try:
            initial = await events.snapshot(self.config, self.services, user.user_id, user.is_admin)
            self.write(f"retry: {RETRY_MILLISECONDS}\n\n")
            for detail in reversed(initial):  # oldest first: a client appends in order
                self.write(events.sse_message(events.VIDEO_EVENT, detail))
            self.write(": snapshot done\n\n")
            await self.flush()
            quiet_since = time.monotonic()
            while True:
                # Wake for the next event, the next session check, or the access token's end.
                wait = min(events.STREAM_CHECK_SECONDS, max(user.expires_at - time.time(), 0.0))
                try:
                    item = await subscription.next(wait)
                except TimeoutError:
                    item = IDLE
                # Every event and every wake-up re-checks the session (events.py).
                if item is None or not await subscription.still_allowed(self.services, time.time()):
                    break
                if item is IDLE:
                    if time.monotonic() - quiet_since < HEARTBEAT_SECONDS:
                        continue
                    self.write(": keep-alive\n\n")
                else:
                    self.write(events.sse_message(*item))
                await self.flush()
                quiet_since = time.monotonic()
        except tornado.iostream.StreamClosedError:
            return
        finally:
            self.hub.unsubscribe(subscription)
        self.finish()

    def on_connection_close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        super().on_connection_close()


ROUTES = [
    (r"/api/video/events/", VideoEventsHandler),
]
