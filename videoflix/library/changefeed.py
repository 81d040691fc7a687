"""The one subscription of a server process to the video-changes channel.

transcode/notify.py owns the channel and the message shapes; every process that
changes a video publishes there (videos.video_changed: this server, another
server, a `videoflix worker` on another host). A VideoFeed listens with one
Redis connection per process and hands each parsed message to its listeners, in
the order they were added:

- the playback row cache (app.py connects playback.forget_video / forget_all), so
  a change made by any process is seen by every server at once;
- the studio's event streams (events.EventHub), while someone is subscribed.

Pub/sub is fire-and-forget: messages published while the connection was down are
lost. So on every confirmed (re)subscription, including the ones redis-py makes
by itself when it reconnects, the feed calls its resubscribed listeners (the row
cache drops everything) before it hands on the messages that follow. After an
error it subscribes again, RETRY_SECONDS apart, until closed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from videoflix.platform.services import Services
from videoflix.transcode import notify

log = logging.getLogger(__name__)

# After a Redis error the feed waits this long before subscribing again.
RETRY_SECONDS = 1.0

MessageListener = Callable[[notify.VideoMessage], "Awaitable[None] | None"]


class VideoFeed:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._message_listeners: list[MessageListener] = []
        self._resubscribed_listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[Any] | None = None
        self._listening = asyncio.Event()
        # How many times the subscription was made (1 after the first): tests and logs.
        self.subscriptions = 0

    # --- listeners ------------------------------------------------------------

    def add_message_listener(self, listener: MessageListener) -> None:
        """`listener(message)` for every well-formed message (sync or async)."""
        self._message_listeners.append(listener)

    def remove_message_listener(self, listener: MessageListener) -> None:
        if listener in self._message_listeners:
            self._message_listeners.remove(listener)

    def add_resubscribed_listener(self, listener: Callable[[], None]) -> None:
        """`listener()` each time the subscription is (re)made: messages may have been missed."""
        self._resubscribed_listeners.append(listener)

    # --- life cycle -----------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def start(self) -> None:
        """Start listening (idempotent; needs the running loop). Returns at once:
        `wait_listening` waits for the subscription."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="video-feed")

    async def wait_listening(self, timeout: float) -> None:
        """Return once subscribed; TimeoutError after `timeout` seconds (Redis down)."""
        await asyncio.wait_for(self._listening.wait(), timeout)

    async def close(self) -> None:
        task, self._task = self._task, None
        self._listening.clear()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- the subscription -----------------------------------------------------

    async def _run(self) -> None:
        while True:
            # Subscribe confirmations are kept: redis-py subscribes again by itself
            # when a read fails and its retry reconnects, and the confirmation is
            # the one sign of it that the feed sees.
            pubsub = self.services.redis.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.subscribe(notify.CHANNEL)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "subscribe":
                        self._subscribed()
                    elif kind == "message":
                        await self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: subscribe again
                log.warning(
                    "video feed: listener error (%s); subscribing again in %ss",
                    exc or type(exc).__name__,
                    RETRY_SECONDS,
                )
            finally:
                self._listening.clear()
                await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(RETRY_SECONDS)

    def _subscribed(self) -> None:
        """A (re)subscription is confirmed: what came before it may be lost."""
        self.subscriptions += 1
        if self.subscriptions > 1:
            log.info("video feed: subscribed again; dropping what may have been missed")
        for listener in list(self._resubscribed_listeners):
            try:
                listener()
            except Exception:
                log.exception("video feed: a resubscription listener failed")
        self._listening.set()

    async def _dispatch(self, raw: str) -> None:
        try:
            message = notify.parse_message(raw)
        except ValueError as exc:
            log.warning("video feed: ignoring a malformed message (%s)", exc)
            return
        for listener in list(self._message_listeners):
            try:
                result = listener(message)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one listener's bug must not stop the others or the feed
                log.exception("video feed: a listener failed on video %s", message.video_id)
