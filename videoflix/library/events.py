"""Live video events for the studio (API.md §6, `GET /api/video/events/`).

One EventHub per server process listens to the process's VideoFeed (changefeed.py:
the one subscription to the channel of transcode/notify.py, however many browsers
are connected), reads the changed row once per message, and hands the detail
object to every subscriber allowed to see it: the owner, and admins. The hub
listens only while someone is subscribed.

A stream starts with a snapshot of the caller's videos in every state (read after
the subscription is live, so nothing falls between the two), then follows changes;
a client that reconnects gets a fresh snapshot, so missed messages never matter.

A stream lives only as long as the session that opened it (API.md §6; SECURITY.md):
it carries the access token's claims and is ended when that session ends — at once
for a logout, password change or reset made in this process (sessions.SessionEnds),
and within STREAM_CHECK_SECONDS (+ sessions.CHECK_SECONDS) for one made elsewhere
or a deactivation, or when the access token expires. A user may hold at most
MAX_STREAMS_PER_USER streams and the process MAX_STREAMS.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any

from videoflix.accounts import sessions, tokens
from videoflix.library import catalog, encoding, ledger, trickplay
from videoflix.library.changefeed import VideoFeed
from videoflix.platform.config import Config
from videoflix.platform.db import cursor
from videoflix.platform.services import Services
from videoflix.tables import videos
from videoflix.transcode import notify, progress

log = logging.getLogger(__name__)

# The studio lists this many of the caller's (an admin's: everyone's) newest videos.
SNAPSHOT_LIMIT = 200
# Events a slow client may have waiting; past that its stream is ended (it
# reconnects and starts again from a snapshot) instead of growing without bound.
SUBSCRIBER_QUEUE = 256
# A stream that cannot start listening within this long is refused (Redis down).
SUBSCRIBE_TIMEOUT_SECONDS = 5.0
# Open streams: a studio tab holds one, a player page one; past these a new one is
# refused (429 per user, 503 for the process) instead of holding sockets and tasks
# without bound (CWE-770).
MAX_STREAMS_PER_USER = 8
MAX_STREAMS = 2000
# A stream re-checks its session this often even when nothing happens (a logout or
# deactivation made by another process ends it within this plus sessions.CHECK_SECONDS).
STREAM_CHECK_SECONDS = 5.0

# Event names on the stream (SSE `event:` lines).
VIDEO_EVENT = "video"
DELETED_EVENT = "video-deleted"


def sse_message(event: str, data: Any) -> str:
    """One Server-Sent Events message (one `data:` line: JSON has no raw newlines)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


class TooManyStreams(Exception):
    """The user holds MAX_STREAMS_PER_USER streams already (429)."""


class StreamsFull(Exception):
    """The process holds MAX_STREAMS streams already (503)."""


class Subscription:
    """One connected stream: its viewer (the access token's claims) and the events
    waiting for it."""

    def __init__(self, claims: tokens.SessionClaims) -> None:
        self.claims = claims
        self.user_id = claims.user_id
        self.is_admin = claims.is_admin
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(SUBSCRIBER_QUEUE + 1)
        self.closed = False

    async def still_allowed(self, services: Services, now: float) -> bool:
        """The session may still read: the access token has not expired, the session
        is live (not logged out, no newer token version, user active). False also
        when that cannot be checked (fail closed: the client reconnects)."""
        claims = self.claims
        if self.closed or now >= claims.expires_at:
            return False
        try:
            return await sessions.is_live(services, claims.user_id, claims.token_version, claims.session_id)
        except sessions.Unavailable:
            return False

    def may_see(self, owner_id: int) -> bool:
        return self.is_admin or owner_id == self.user_id

    def put(self, event: str, data: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= SUBSCRIBER_QUEUE:
            log.info("event stream of user %s fell behind; ending it", self.user_id)
            self.close()
            return
        self.queue.put_nowait((event, data))

    def close(self) -> None:
        """End the stream: the reader gets None next (the queue keeps one slot for it)."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    async def next(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        """The next event; None once closed; TimeoutError when nothing came in `timeout`."""
        return await asyncio.wait_for(self.queue.get(), timeout)


class EventHub:
    def __init__(self, config: Config, services: Services, feed: VideoFeed) -> None:
        self.config = config
        self.services = services
        self.feed = feed
        self._subscribers: set[Subscription] = set()
        self._per_user: collections.Counter[int] = collections.Counter()
        self._listening = False
        services.state(sessions.SessionEnds).add(self._session_ended)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def listening(self) -> bool:
        """Whether the hub follows the feed (only while someone is subscribed)."""
        return self._listening

    async def subscribe(self, claims: tokens.SessionClaims) -> Subscription:
        """A live subscription for the bearer of `claims`: returns once the channel is
        being listened to; TimeoutError when that does not happen within
        SUBSCRIBE_TIMEOUT_SECONDS; TooManyStreams / StreamsFull past the caps."""
        if self._per_user[claims.user_id] >= MAX_STREAMS_PER_USER:
            raise TooManyStreams()
        if len(self._subscribers) >= MAX_STREAMS:
            raise StreamsFull()
        subscription = Subscription(claims)
        self._subscribers.add(subscription)
        self._per_user[claims.user_id] += 1
        if not self._listening:
            self._listening = True
            self.feed.add_message_listener(self._dispatch)
        self.feed.start()  # running already in a server (app.serve); a no-op then
        try:
            await self.feed.wait_listening(SUBSCRIBE_TIMEOUT_SECONDS)
        except TimeoutError:
            self.unsubscribe(subscription)
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        if subscription in self._subscribers:
            self._subscribers.discard(subscription)
            self._per_user[subscription.user_id] -= 1
            if self._per_user[subscription.user_id] <= 0:
                del self._per_user[subscription.user_id]
        if not self._subscribers and self._listening:
            self._listening = False
            self.feed.remove_message_listener(self._dispatch)

    async def close(self) -> None:
        """Shutdown: end every stream and stop listening (the feed is closed by its owner)."""
        for subscription in list(self._subscribers):
            self.unsubscribe(subscription)
        self.services.state(sessions.SessionEnds).remove(self._session_ended)

    def _session_ended(self, end: sessions.SessionEnd) -> None:
        """A logout, password change or reset in this process: its streams end now."""
        for subscription in list(self._subscribers):
            claims = subscription.claims
            if end.ends(claims.user_id, claims.token_version, claims.session_id):
                log.info("event stream of user %s ended with its session", claims.user_id)
                subscription.close()

    async def _dispatch(self, message: notify.VideoMessage) -> None:
        if not self._subscribers:
            return
        try:
            async with cursor(self.services.pool) as cur:
                row = await videos.get_video(cur, message.video_id)
            if row is None:
                if message.owner_id is None:
                    return  # late progress of a deleted video: the deletion was announced
                event, data, owner_id = DELETED_EVENT, {"id": message.video_id}, message.owner_id
            else:
                percent = message.progress
                if percent is None:
                    percent = await progress.read(self.services.redis, message.video_id)
                playable = await catalog.get_playable_version(self.services, row)
                track = await trickplay.thumbnails_vtt(self.config, self.services, row)
                how = await encoding.encoding(self.config, self.services, row)
                # Studio streams are the owner's and admins': the ledger, once there is one.
                row_ledger = await ledger.detail_storage(self.services, row.id) if row.status == "ready" else None
                event, data, owner_id = (
                    VIDEO_EVENT,
                    catalog.detail_item(
                        self.config,
                        row,
                        percent,
                        None,
                        playable,
                        thumbnails_vtt=track,
                        encoding=how,
                        show_storage=True,
                        storage=row_ledger,
                    ),
                    row.owner_id,
                )
        except Exception:
            log.exception("video events: could not read video %s", message.video_id)
            return
        for subscription in list(self._subscribers):
            if subscription.may_see(owner_id):
                subscription.put(event, data)


async def snapshot(config: Config, services: Services, user_id: int, is_admin: bool) -> list[dict[str, Any]]:
    """Detail objects of the caller's videos in every state (admins: everyone's), newest first."""
    async with cursor(services.pool) as cur:
        rows = await videos.list_managed(cur, None if is_admin else user_id, SNAPSHOT_LIMIT)
    unfinished = [row for row in rows if row.status in ("queued", "processing")]
    percents = {row.id: await progress.read(services.redis, row.id) for row in unfinished}
    playable = {row.id: await catalog.get_playable_version(services, row) for row in unfinished}
    tracks = {row.id: await trickplay.thumbnails_vtt(config, services, row) for row in rows}
    hows = {row.id: await encoding.encoding(config, services, row) for row in rows}
    ledgers = await ledger.many_storage(services, [row.id for row in rows])
    return [
        catalog.detail_item(
            config,
            row,
            percents.get(row.id),
            None,
            playable.get(row.id),
            thumbnails_vtt=tracks[row.id],
            encoding=hows[row.id],
            show_storage=True,
            storage=ledgers.get(row.id),
        )
        for row in rows
    ]
