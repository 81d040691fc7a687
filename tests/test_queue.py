"""The transcode queue against the session's real redis-server."""
from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from videoflix.transcode import queue
from videoflix.transcode.queue import DEAD_LETTER, GROUP, MAX_DELIVERIES, STREAM, Job

from helpers import wait_until

# Short leases keep the takeover tests quick; the polls below wait for a
# takeover up to DEADLINE_SECONDS rather than sleeping a fixed time.
LEASE = 1.0
SHORT_LEASE = 0.3
DEADLINE_SECONDS = 10.0
POLL_BLOCK_MS = 50


def connect(redis_server) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture
def r(io_loop, redis_server):
    client = connect(redis_server)

    async def reset() -> None:
        await client.flushdb()
        await queue.ensure_group(client)

    io_loop.run_sync(reset)
    yield client
    io_loop.run_sync(client.aclose)


async def wait_for_claim(client: redis.asyncio.Redis, consumer: str,
                         lease_seconds: float = LEASE) -> Job:
    """Poll `claim` until it returns a job; fail after DEADLINE_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while loop.time() < deadline:
        job = await queue.claim(client, consumer, POLL_BLOCK_MS, lease_seconds=lease_seconds)
        if job is not None:
            return job
    pytest.fail(f"{consumer} claimed nothing within {DEADLINE_SECONDS} s")


async def blocked_clients(client: redis.asyncio.Redis) -> int:
    """Clients Redis holds in a blocking command right now."""
    return int((await client.info("clients"))["blocked_clients"])


async def pending(client: redis.asyncio.Redis) -> list[dict]:
    return await client.xpending_range(STREAM, GROUP, min="-", max="+", count=100)


@pytest.mark.gen_test
async def test_enqueue_claim_ack_leaves_nothing_pending(r):
    entry_id = await queue.enqueue(r, 42)

    job = await queue.claim(r, "A", 0)
    assert job == Job(entry_id=entry_id, video_id=42, deliveries=1)
    assert [row["consumer"] for row in await pending(r)] == ["A"]

    assert await queue.ack(r, job) is True
    assert await pending(r) == []
    assert await r.xlen(STREAM) == 0
    assert await queue.claim(r, "A", 0) is None


@pytest.mark.gen_test
async def test_jobs_are_claimed_oldest_first_one_per_claim(r):
    first = await queue.enqueue(r, 1)
    second = await queue.enqueue(r, 2)

    assert (await queue.claim(r, "A", 0)).entry_id == first
    assert (await queue.claim(r, "B", 0)).entry_id == second
    assert await queue.claim(r, "C", 0) is None


@pytest.mark.gen_test
async def test_unrenewed_job_is_reclaimed_by_another_consumer(r):
    await queue.enqueue(r, 7)
    taken = await queue.claim(r, "A", 0, lease_seconds=LEASE)
    assert await queue.claim(r, "B", 0, lease_seconds=LEASE) is None  # lease still fresh

    job = await wait_for_claim(r, "B", LEASE)

    assert job == Job(entry_id=taken.entry_id, video_id=7, deliveries=2)
    assert [row["consumer"] for row in await pending(r)] == ["B"]


@pytest.mark.gen_test
async def test_renewed_job_is_not_reclaimed(r):
    await queue.enqueue(r, 7)
    job = await queue.claim(r, "A", 0, lease_seconds=LEASE)

    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * LEASE
    while loop.time() < until:
        assert await queue.renew(r, "A", job) is True
        assert await queue.claim(r, "B", 200, lease_seconds=LEASE) is None

    [row] = await pending(r)
    assert (row["consumer"], row["times_delivered"]) == ("A", 1)


@pytest.mark.gen_test
async def test_renew_after_takeover_returns_false_and_does_not_take_the_job_back(r):
    await queue.enqueue(r, 7)
    job_a = await queue.claim(r, "A", 0, lease_seconds=SHORT_LEASE)
    job_b = await wait_for_claim(r, "B", SHORT_LEASE)

    assert await queue.renew(r, "A", job_a) is False
    assert [row["consumer"] for row in await pending(r)] == ["B"]
    assert await queue.renew(r, "B", job_b) is True


@pytest.mark.gen_test
async def test_renew_returns_false_once_the_job_is_acked_elsewhere(r):
    await queue.enqueue(r, 7)
    job = await queue.claim(r, "A", 0)

    await queue.ack(r, job)

    assert await queue.renew(r, "A", job) is False


@pytest.mark.gen_test
async def test_renew_returns_false_when_the_stream_is_gone(r):
    await queue.enqueue(r, 7)
    job = await queue.claim(r, "A", 0)

    await r.flushdb()

    assert await queue.renew(r, "A", job) is False


@pytest.mark.gen_test
async def test_delivery_count_grows_with_each_reclaim_until_dead_lettered(r):
    await queue.enqueue(r, 9)
    job = await queue.claim(r, "A", 0, lease_seconds=SHORT_LEASE)
    counts = [job.deliveries]
    consumers = ["B", "A", "B"]
    for consumer in consumers:
        job = await wait_for_claim(r, consumer, SHORT_LEASE)
        counts.append(job.deliveries)

    assert counts == [1, 2, 3, 4]
    assert job.deliveries > MAX_DELIVERIES  # the caller's cue to dead-letter it
    await queue.dead_letter(r, job, "ffmpeg crashed 4 times")
    assert await pending(r) == []
    assert await r.xlen(STREAM) == 0


@pytest.mark.gen_test
async def test_dead_letter_moves_job_to_dead_letter_stream_with_reason(r):
    entry_id = await queue.enqueue(r, 5)
    job = await queue.claim(r, "A", 0)

    dead_id = await queue.dead_letter(r, job, "unsupported codec")

    [(found_id, fields)] = await r.xrange(DEAD_LETTER)
    assert found_id == dead_id
    assert fields == {"video_id": "5", "reason": "unsupported codec", "deliveries": "1",
                      "entry_id": entry_id}
    assert await pending(r) == []
    assert await r.xlen(STREAM) == 0
    assert await queue.pending_video_ids(r) == set()


@pytest.mark.gen_test
async def test_pending_video_ids_sees_queued_and_in_flight_jobs_but_not_acked_ones(r):
    await queue.enqueue(r, 1)
    await queue.enqueue(r, 2)
    await queue.enqueue(r, 3)
    in_flight = await queue.claim(r, "A", 0)
    done = await queue.claim(r, "A", 0)
    await queue.ack(r, done)

    assert (in_flight.video_id, done.video_id) == (1, 2)
    assert await queue.pending_video_ids(r) == {1, 3}


@pytest.mark.gen_test
async def test_pending_video_ids_reads_past_one_scan_page(r):
    count = queue.SCAN_PAGE + 3
    async with r.pipeline(transaction=False) as pipe:
        for video_id in range(count):
            pipe.xadd(STREAM, {"video_id": str(video_id)})
        await pipe.execute()

    assert await queue.pending_video_ids(r) == set(range(count))


@pytest.mark.gen_test
async def test_remove_video_removes_pending_and_undelivered_jobs(r):
    await queue.enqueue(r, 1)
    await queue.enqueue(r, 2)
    await queue.enqueue(r, 1)
    in_flight = await queue.claim(r, "A", 0)
    assert in_flight.video_id == 1

    assert await queue.remove_video(r, 1) == 2

    assert await queue.pending_video_ids(r) == {2}
    assert await pending(r) == []
    assert await queue.renew(r, "A", in_flight) is False
    assert (await queue.claim(r, "B", 0)).video_id == 2
    assert await queue.claim(r, "B", 0) is None


@pytest.mark.gen_test
async def test_entry_deleted_while_pending_is_dropped_not_redelivered(r):
    entry_id = await queue.enqueue(r, 1)
    await queue.claim(r, "A", 0, lease_seconds=SHORT_LEASE)
    await r.xdel(STREAM, entry_id)  # e.g. removed by hand while A worked
    await queue.enqueue(r, 2)
    second = await queue.claim(r, "A", 0, lease_seconds=SHORT_LEASE)

    job = await wait_for_claim(r, "B", SHORT_LEASE)

    assert job == Job(entry_id=second.entry_id, video_id=2, deliveries=2)
    assert [row["message_id"] for row in await pending(r)] == [second.entry_id]


@pytest.mark.gen_test
async def test_malformed_entry_is_dead_lettered_and_the_next_job_is_claimed(r):
    bad = await r.xadd(STREAM, {"video": "not-ours"})
    good = await queue.enqueue(r, 3)

    job = await queue.claim(r, "A", 0)

    assert job.entry_id == good
    [(_id, fields)] = await r.xrange(DEAD_LETTER)
    assert fields["entry_id"] == bad
    assert fields["reason"].startswith("malformed entry")
    assert [row["message_id"] for row in await pending(r)] == [good]


@pytest.mark.gen_test
async def test_claim_on_empty_stream_returns_none_within_block_time(r, redis_server):
    observer = connect(redis_server)
    try:
        waiting = asyncio.ensure_future(queue.claim(r, "A", 1000))
        # It waits at Redis (XREADGROUP BLOCK), not in a busy loop or not at all ...
        await wait_until(lambda: waiting.done() or blocked_clients(observer), "the claim to block at Redis")
        assert not waiting.done()
        # ... and gives up by itself, with nothing to show.
        assert await asyncio.wait_for(waiting, DEADLINE_SECONDS) is None
        assert await blocked_clients(observer) == 0
    finally:
        await observer.aclose()


@pytest.mark.gen_test
async def test_blocked_claim_wakes_up_for_a_job_enqueued_meanwhile(r, redis_server):
    producer = connect(redis_server)
    try:
        waiting = asyncio.ensure_future(queue.claim(r, "A", 5000))
        await wait_until(lambda: blocked_clients(producer), "the claim to reach XREADGROUP BLOCK")
        entry_id = await queue.enqueue(producer, 11)
        job = await asyncio.wait_for(waiting, 2.0)
    finally:
        await producer.aclose()

    assert job == Job(entry_id=entry_id, video_id=11, deliveries=1)


@pytest.mark.gen_test
async def test_jobs_enqueued_before_the_group_exists_are_delivered(r):
    await r.flushdb()
    entry_id = await queue.enqueue(r, 4)
    await queue.ensure_group(r)
    await queue.ensure_group(r)  # idempotent

    assert (await queue.claim(r, "A", 0)).entry_id == entry_id


@pytest.mark.gen_test
async def test_claim_recreates_a_lost_group(r):
    await r.flushdb()

    assert await queue.claim(r, "A", 0) is None
    entry_id = await queue.enqueue(r, 6)
    assert (await queue.claim(r, "A", 0)).entry_id == entry_id


@pytest.mark.gen_test
async def test_pending_job_survives_a_client_reconnect(r, redis_server):
    first = connect(redis_server)
    entry_id = await queue.enqueue(first, 8)
    job = await queue.claim(first, "A", 0, lease_seconds=LEASE)
    await first.aclose()

    second = connect(redis_server)
    try:
        assert await queue.pending_video_ids(second) == {8}
        assert await queue.renew(second, "A", job) is True  # the lease belongs to the name
        taken = await wait_for_claim(second, "B", LEASE)
        assert taken == Job(entry_id=entry_id, video_id=8, deliveries=2)
    finally:
        await second.aclose()


# --- fairness: one owner's jobs do not starve another's (issue 18 item 10) ---------------------

async def serve_in_order(r: redis.asyncio.Redis) -> list[int]:
    """Claim and acknowledge one job at a time until none is left: the video ids in the
    order a lone worker would transcode them."""
    served = []
    while (job := await queue.claim(r, "worker", 0)) is not None:
        served.append(job.video_id)
        await queue.ack(r, job)
    return served


@pytest.mark.gen_test
async def test_a_users_first_job_waits_behind_at_most_a_share_of_anothers_hundred(r):
    for video_id in range(1, 101):
        await queue.enqueue(r, video_id, owner_id=7)
    await queue.enqueue(r, 1000, owner_id=8)
    order = await serve_in_order(r)
    assert sorted(order) == [*range(1, 101), 1000]  # nothing lost, nothing twice
    assert order.index(1000) <= queue.USER_SHARE
    assert [video_id for video_id in order if video_id != 1000] == list(range(1, 101))  # each owner's own order


@pytest.mark.gen_test
async def test_owners_are_served_in_turn(r):
    for owner in (1, 2, 3):
        for n in range(5):
            await queue.enqueue(r, owner * 100 + n, owner_id=owner)
    order = await serve_in_order(r)
    owners = [video_id // 100 for video_id in order]
    assert sorted(order) == sorted(owner * 100 + n for owner in (1, 2, 3) for n in range(5))
    # Every window of three consecutive jobs after the first shares holds no one owner's
    # whole batch: no owner ever waits for another's five.
    firsts = {owner: owners.index(owner) for owner in (1, 2, 3)}
    assert max(firsts.values()) <= 2 * queue.USER_SHARE
    for owner in (1, 2, 3):
        assert [v for v in order if v // 100 == owner] == [owner * 100 + n for n in range(5)]


@pytest.mark.gen_test
async def test_waiting_jobs_are_counted_found_and_removable(r):
    for video_id in range(1, 6):
        await queue.enqueue(r, video_id, owner_id=7)
    assert await r.xlen(STREAM) == queue.USER_SHARE  # the rest wait their turn
    assert await queue.pending_video_ids(r) == {1, 2, 3, 4, 5}
    assert (await queue.stats(r)).length == 5
    assert await queue.remove_video(r, 4) == 1  # a waiting one
    assert await queue.remove_video(r, 1) == 1  # one in the stream: the next waiting one moves up
    assert await queue.pending_video_ids(r) == {2, 3, 5}
    assert await serve_in_order(r) == [2, 3, 5]
    assert (await queue.stats(r)).length == 0


@pytest.mark.gen_test
async def test_a_turn_lost_in_a_crash_is_given_by_the_next_reconciliation(r):
    for video_id in range(1, 5):
        await queue.enqueue(r, video_id, owner_id=7)
    job = await queue.claim(r, "worker", 0)
    # The job is done and its entry deleted, and the process dies before moving the next
    # waiting job up: the owner now has room in the stream and jobs still waiting.
    async with r.pipeline(transaction=True) as pipe:
        pipe.xack(STREAM, GROUP, job.entry_id)
        pipe.xdel(STREAM, job.entry_id)
        await pipe.execute()
    assert await r.xlen(STREAM) == queue.USER_SHARE - 1
    assert await queue.promote_waiting(r) == 1
    assert await serve_in_order(r) == [2, 3, 4]


@pytest.mark.gen_test
async def test_a_dead_lettered_job_makes_room_for_the_owners_next(r):
    for video_id in range(1, 4):
        await queue.enqueue(r, video_id, owner_id=7)
    job = await queue.claim(r, "worker", 0)
    await queue.dead_letter(r, job, "it kept crashing")
    assert await queue.pending_video_ids(r) == {2, 3}
    assert await r.xlen(STREAM) == queue.USER_SHARE
