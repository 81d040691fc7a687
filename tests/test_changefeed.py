"""The process's one subscription to video changes (changefeed.py) and the playback
row cache it keeps honest: a change announced on Redis by any other process drops
the row here at once; a Redis reconnect drops every row (messages may be lost).

"Another process" is a second, independent Redis client publishing what
videos.video_changed publishes; tests/faults/test_many_hosts.py does the same with
two real server processes.
"""
from __future__ import annotations

import pytest
import redis.asyncio

from videoflix.delivery import playback
from videoflix.platform.db import cursor
from videoflix.transcode import notify

from helpers import make_ready_video, wait_until

# Well inside playback.VIDEO_CACHE_SECONDS: only the feed can make the row go this fast.
PROMPT_SECONDS = 4.0
assert PROMPT_SECONDS < playback.VIDEO_CACHE_SECONDS / 2


@pytest.fixture
def feed(app, io_loop):
    """The app's feed, started as app.serve starts it, and subscribed."""
    made = app.settings["video_feed"]

    async def start() -> None:
        made.start()
        await made.wait_listening(10)
    io_loop.run_sync(start)
    return made


@pytest.fixture
def other_process(io_loop, config):
    client = redis.asyncio.Redis.from_url(config.redis_url, decode_responses=True)
    yield client
    io_loop.run_sync(client.aclose)


async def cached_ready_video(services, owner_id: int) -> int:
    """A ready video whose row is now in this process's cache, then deleted in
    PostgreSQL behind the cache's back (as another process would)."""
    video_id = await make_ready_video(services, owner_id)
    assert await playback.ready_video(services, video_id) is not None
    async with cursor(services.pool) as cur:  # gone, as a delete by another process leaves it
        await cur.execute("DELETE FROM videos WHERE id = %s", (video_id,))
    assert await playback.ready_video(services, video_id) is not None, "not cached"
    return video_id


async def is_forgotten(services, video_id: int) -> bool:
    return await playback.ready_video(services, video_id) is None


@pytest.mark.gen_test(timeout=60)
async def test_change_published_by_another_process_drops_cached_row(feed, other_process, make_user, services):
    user = await make_user()
    video_id = await cached_ready_video(services, user["id"])
    await other_process.publish(notify.CHANNEL, notify.changed_message(video_id, user["id"]))
    await wait_until(lambda: is_forgotten(services, video_id), "the row to be dropped", PROMPT_SECONDS)


@pytest.mark.gen_test(timeout=60)
async def test_change_of_one_video_keeps_other_rows_and_progress_ticks_drop_nothing(
        feed, other_process, make_user, services):
    user = await make_user()
    kept = await cached_ready_video(services, user["id"])
    dropped = await cached_ready_video(services, user["id"])
    await other_process.publish(notify.CHANNEL, notify.progress_message(kept, 40))
    await other_process.publish(notify.CHANNEL, "not json")
    await other_process.publish(notify.CHANNEL, notify.changed_message(dropped, user["id"]))
    await wait_until(lambda: is_forgotten(services, dropped), "the changed row to be dropped", PROMPT_SECONDS)
    # Pub/sub keeps order: the tick and the junk were handled before, and left `kept` alone.
    assert await playback.ready_video(services, kept) is not None


@pytest.mark.gen_test(timeout=60)
async def test_redis_reconnect_drops_every_cached_row(feed, other_process, make_user, services):
    user = await make_user()
    first = await cached_ready_video(services, user["id"])
    second = await cached_ready_video(services, user["id"])
    assert feed.subscriptions == 1
    # Redis drops the subscriber connection (a restart, a failover, a network cut):
    # whatever was published meanwhile is lost to this process.
    await other_process.client_kill_filter(_type="pubsub")
    await wait_until(lambda: feed.subscriptions >= 2 and feed.listening, "the feed to subscribe again", 10)
    assert await is_forgotten(services, first) and await is_forgotten(services, second)
    # ... and it follows the channel again.
    third = await cached_ready_video(services, user["id"])
    await other_process.publish(notify.CHANNEL, notify.changed_message(third, user["id"]))
    await wait_until(lambda: is_forgotten(services, third), "the row to be dropped", PROMPT_SECONDS)


@pytest.mark.gen_test(timeout=60)
async def test_own_change_drops_cached_row_without_the_feed(app, make_user, services):
    """A change made here forgets the row at once even before the feed runs (videos.video_changed)."""
    user = await make_user()
    video_id = await cached_ready_video(services, user["id"])
    assert not app.settings["video_feed"].listening
    from videoflix.library import lifecycle
    await lifecycle.video_changed(services, video_id, user["id"])
    assert await is_forgotten(services, video_id)
