"""The durable transcode queue: a Redis stream read through one consumer group.

Life of a job:

- `enqueue` XADDs ``{video_id}`` to STREAM; once it returns the job is in Redis
  (and as durable as Redis's persistence: `videoflix dev` runs with the
  append-only file on, `appendfsync everysec`).
- `claim` hands the job to one consumer. The entry then sits in the group's
  pending entries list (PEL) under that consumer: that is the *lease*. A lease
  whose idle time exceeds ``lease_seconds`` is expired, and the next `claim` by
  any consumer takes the job over (XAUTOCLAIM), so a consumer that died does
  not strand its job.
- While it works, the consumer calls `renew` more often than the lease (a third
  of it is a good rhythm); `renew` returning False means the job is no longer
  this consumer's (taken over, acknowledged or removed elsewhere): stop
  working on it and do not acknowledge it.
- `ack` once the outputs are in place and the row says ``ready``; `dead_letter`
  when the job cannot succeed. Both delete the entry, so STREAM only ever holds
  live jobs: not yet delivered, or delivered and pending.

Fairness: a job carries its video's owner. STREAM holds at most USER_SHARE jobs of
one owner (waiting or running); the owner's further jobs wait in a backlog list of
their own, oldest first, and one moves into STREAM each time one of theirs leaves it
(`ack`, `dead_letter`, `remove_video`; `promote_waiting` also catches up after a
crash between the two). So consumers, which take STREAM's oldest job first, serve
the owners in turn: one user's hundred uploads delay another's first one by at most
USER_SHARE jobs. Moves between backlog and STREAM are Lua scripts, atomic: a job is
always in exactly one of them. Jobs enqueued without an owner skip the backlog.

Redelivery limit: `claim` never refuses a job. It returns the job with its
delivery count (1 on first delivery, +1 for each takeover), and the *caller*
dead-letters it when ``job.deliveries > MAX_DELIVERIES`` (and marks the video
``failed``), because only the caller can also update the row.

Every function takes a `redis.asyncio.Redis` created with
``decode_responses=True``. Its ``socket_timeout`` (if any) must be longer than
the ``block_ms`` given to `claim`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError

from videoflix.platform import rediskeys, requestid

log = logging.getLogger(__name__)

# One stream for every pending transcode (names: videoflix/rediskeys.py).
STREAM = rediskeys.TRANSCODE_STREAM
# One group shared by every `serve` and `worker` process: each entry goes to
# exactly one of them, and the group's PEL is what makes leases possible.
GROUP = "transcoders"
# Jobs that failed MAX_DELIVERIES times (or could not be read) end up here with
# the reason, for an operator to look at; nothing reads it automatically.
DEAD_LETTER = rediskeys.TRANSCODE_DEAD_LETTER
# Dead letters are kept for inspection, not forever: the oldest are trimmed
# (approximately, which is O(1)) beyond this many. STREAM itself is never
# trimmed: that would drop jobs not yet done.
DEAD_LETTER_MAXLEN = 10_000
# A job may be delivered this many times; a later delivery is dead-lettered by
# the caller. Three covers a crashed host and a retry after it without letting
# a source that kills ffmpeg every time occupy the workers forever.
MAX_DELIVERIES = 3
# A lease not renewed for this long is taken to belong to a dead consumer. Long
# enough that a busy loop or a Redis failover does not cause false takeovers
# (renewals come every LEASE_SECONDS / 3), short enough that a crashed
# worker's video restarts within about a minute.
LEASE_SECONDS = 60.0
# Jobs of one owner in STREAM at once (see the module docstring): two keep two
# workers busy for a lone uploader, and another user's job waits behind at most two.
USER_SHARE = 2
# Entries read per XRANGE round trip when scanning the whole stream.
SCAN_PAGE = 500
# XAUTOCLAIM's cursor value meaning "scanned the whole PEL".
_CURSOR_DONE = "0-0"

# Renew a lease only if this consumer still holds it. A bare XCLAIM with
# min-idle 0 would also *take* the entry from whoever holds it now, so check
# the owner first, atomically. XCLAIM ... JUSTID resets the idle time without
# counting a delivery; on an entry deleted from the stream it removes the PEL
# entry and returns nothing (Redis 7), which counts as "not ours".
_RENEW_SCRIPT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
return #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
"""

# Hand a job back (graceful shutdown): if this consumer still holds it, make its
# lease look long expired, so the next `claim` by anyone takes it over at once,
# and set its delivery count back by one (that takeover counts it again: a job
# handed back does not use up a delivery).
_RELEASE_SCRIPT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
return #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4],
                   'RETRYCOUNT', ARGV[5], 'JUSTID')
"""
# How many jobs of ARGV[1] (an owner) STREAM (KEYS[1]) holds: a Lua prelude.
_COUNT_MINE = """
local function count_mine(stream, owner)
  local mine = 0
  for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+')) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'owner' and fields[i + 1] == owner then
        mine = mine + 1
      end
    end
  end
  return mine
end
local function dispatch(stream, owner, video_id, request_id)
  if request_id ~= '' then
    return redis.call('XADD', stream, '*', 'video_id', video_id, 'owner', owner, 'request_id', request_id)
  end
  return redis.call('XADD', stream, '*', 'video_id', video_id, 'owner', owner)
end
"""
# Enqueue for an owner: into STREAM when the owner has fewer than ARGV[2] jobs there
# and none waiting (never ahead of its own older jobs), else at the end of its backlog.
# KEYS: STREAM, the owner's backlog, the backlog owners; ARGV: owner, share, video id,
# request id. Returns the entry id, or "" when the job waits in the backlog.
_ENQUEUE_SCRIPT = (
    _COUNT_MINE
    + """
if redis.call('LLEN', KEYS[2]) == 0 and count_mine(KEYS[1], ARGV[1]) < tonumber(ARGV[2]) then
  return dispatch(KEYS[1], ARGV[1], ARGV[3], ARGV[4])
end
redis.call('RPUSH', KEYS[2], cjson.encode({video_id = ARGV[3], request_id = ARGV[4]}))
redis.call('SADD', KEYS[3], ARGV[1])
return ''
"""
)
# Move an owner's oldest waiting jobs into STREAM while it has fewer than ARGV[2] there.
# KEYS: STREAM, the owner's backlog, the backlog owners; ARGV: owner, share. Returns
# how many moved.
_PROMOTE_SCRIPT = (
    _COUNT_MINE
    + """
local mine = count_mine(KEYS[1], ARGV[1])
local moved = 0
while mine < tonumber(ARGV[2]) do
  local item = redis.call('LPOP', KEYS[2])
  if not item then
    break
  end
  local job = cjson.decode(item)
  dispatch(KEYS[1], ARGV[1], tostring(job.video_id), tostring(job.request_id or ''))
  mine = mine + 1
  moved = moved + 1
end
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return moved
"""
)

# The idle time a released job gets: far beyond any lease, well below "now"
# (Redis ignores an IDLE that would date the delivery before the epoch).
_RELEASED_IDLE_MS = 365 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Job:
    entry_id: str
    video_id: int
    # How many times this entry has been delivered: 1 on first delivery.
    deliveries: int
    # The X-Request-ID of the request that enqueued it ("" if none): its logs carry it.
    request_id: str = ""
    # Its video's owner (str of the user id), "" when enqueued without one.
    owner: str = ""


async def ensure_group(r: redis.asyncio.Redis) -> None:
    """Create STREAM and GROUP if missing (idempotent; safe from many processes).

    The group starts at id 0, not "$": entries enqueued before the group
    existed are delivered too.
    """
    try:
        await r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise
    else:
        log.info("transcode queue: created group %s on %s", GROUP, STREAM)


async def enqueue(r: redis.asyncio.Redis, video_id: int, owner_id: int | None = None) -> str:
    """Append a transcode job for `video_id` of the user `owner_id`; return its entry
    id, or "" when it waits in the owner's backlog for its turn (module docstring).

    The job is stored in Redis when this returns. It does not need the group to
    exist yet (see `ensure_group`).
    """
    request_id = requestid.current.get() or ""
    if owner_id is None:
        fields: dict[Any, Any] = {"video_id": str(video_id)}
        if request_id:
            fields["request_id"] = request_id
        entry_id = as_text(await r.xadd(STREAM, fields))
    else:
        owner = str(int(owner_id))
        entry_id = as_text(
            await r.eval(
                _ENQUEUE_SCRIPT,
                3,
                STREAM,
                rediskeys.transcode_backlog(owner),
                rediskeys.TRANSCODE_BACKLOG_OWNERS,
                owner,
                USER_SHARE,
                str(int(video_id)),
                request_id,
            )
        )
    if entry_id:
        log.info("transcode: queued video %s as job %s", video_id, entry_id)
    else:
        log.info("transcode: video %s waits its turn behind user %s's earlier jobs", video_id, owner_id)
    return entry_id


async def promote(r: redis.asyncio.Redis, owner: str) -> int:
    """Move `owner`'s waiting jobs into STREAM while they have room; how many moved."""
    if not owner:
        return 0
    moved = int(
        await r.eval(
            _PROMOTE_SCRIPT,
            3,
            STREAM,
            rediskeys.transcode_backlog(owner),
            rediskeys.TRANSCODE_BACKLOG_OWNERS,
            owner,
            USER_SHARE,
        )
    )
    if moved:
        log.info("transcode: %d waiting job(s) of user %s queued", moved, owner)
    return moved


async def promote_waiting(r: redis.asyncio.Redis) -> int:
    """`promote` every owner with waiting jobs (after a crash between a job's end and
    its owner's promotion, say); how many moved."""
    moved = 0
    for owner in await _owners(r):
        moved += await promote(r, owner)
    return moved


def as_text(value: object) -> str:
    """A Redis reply as text (the clients here decode replies: redis-py types them str | bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def _owners(r: redis.asyncio.Redis) -> list[str]:
    """The owners with waiting jobs."""
    return [as_text(owner) for owner in await r.smembers(rediskeys.TRANSCODE_BACKLOG_OWNERS)]


async def backlog_items(r: redis.asyncio.Redis) -> list[tuple[str, str, int]]:
    """Every waiting job: (owner, its raw list item, video id)."""
    found = []
    for owner in await _owners(r):
        for raw in await r.lrange(rediskeys.transcode_backlog(owner), 0, -1):
            item = as_text(raw)
            try:
                found.append((owner, item, int(json.loads(item)["video_id"])))
            except (ValueError, KeyError, TypeError):
                log.warning("transcode: waiting job %r of user %s is malformed; ignoring it", item, owner)
    return found


async def claim(
    r: redis.asyncio.Redis, consumer: str, block_ms: int, lease_seconds: float = LEASE_SECONDS
) -> Job | None:
    """Take one job for `consumer`, or None if there is none within `block_ms`.

    First a job whose lease expired (idle for `lease_seconds`, whoever held it)
    is taken over, with its delivery count incremented; otherwise a new entry
    is read, waiting up to `block_ms` for one. ``block_ms=0`` does not wait at
    all (it is not Redis's "BLOCK 0 = forever": a consumer must come back
    regularly to take over expired leases, so keep `block_ms` well under the
    lease). Expired leases are only looked for at the start of the call.

    The job is leased to `consumer` from now on: `renew` it, then `ack` or
    `dead_letter` it. The caller dead-letters a job with
    ``deliveries > MAX_DELIVERIES``. If the call is cancelled while waiting, an
    entry Redis delivered at that moment is taken over after its lease.

    A missing stream or group (e.g. Redis lost its data) is recreated.
    """
    try:
        return await _claim(r, consumer, block_ms, lease_seconds)
    except ResponseError as exc:
        if not str(exc).startswith("NOGROUP"):
            raise
    log.warning("transcode queue: group %s on %s is missing; recreating it", GROUP, STREAM)
    await ensure_group(r)
    return await _claim(r, consumer, block_ms, lease_seconds)


async def _claim(r: redis.asyncio.Redis, consumer: str, block_ms: int, lease_seconds: float) -> Job | None:
    job = await _take_over_expired(r, consumer, lease_seconds)
    if job is not None:
        return job
    return await _read_new(r, consumer, block_ms)


async def _take_over_expired(r: redis.asyncio.Redis, consumer: str, lease_seconds: float) -> Job | None:
    min_idle_ms = max(int(lease_seconds * 1000), 0)
    start = _CURSOR_DONE
    while True:
        reply = await r.xautoclaim(STREAM, GROUP, consumer, min_idle_ms, start_id=start, count=1)
        cursor, claimed = reply[0], reply[1]
        # Redis 7 adds the ids of entries deleted from the stream while pending;
        # it has already dropped them from the PEL. Acknowledging them again is
        # a no-op there and clears them on servers that did not.
        deleted = reply[2] if len(reply) > 2 else []
        if deleted:
            log.info("transcode: dropped jobs %s deleted while pending", ", ".join(deleted))
            await r.xack(STREAM, GROUP, *deleted)
        for entry_id, fields in claimed:
            if entry_id is None:  # a deleted entry reported as nil (Redis 6.2)
                continue
            deliveries = await _deliveries(r, entry_id)
            if deliveries is None:  # acknowledged elsewhere in between
                continue
            job = await _job_from_entry(r, entry_id, fields, deliveries)
            if job is not None:
                log.warning(
                    "transcode: video %s job %s taken over by %s after its lease expired (delivery %s)",
                    job.video_id,
                    job.entry_id,
                    consumer,
                    job.deliveries,
                    extra={"request_id": job.request_id or None},
                )
                return job
        if cursor == _CURSOR_DONE:
            return None
        start = cursor


async def _read_new(r: redis.asyncio.Redis, consumer: str, block_ms: int) -> Job | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(block_ms, 0) / 1000
    while True:
        remaining_ms = int((deadline - loop.time()) * 1000)
        reply = await r.xreadgroup(
            GROUP, consumer, {STREAM: ">"}, count=1, block=remaining_ms if remaining_ms > 0 else None
        )
        entries = _stream_entries(reply)
        if not entries:
            return None
        for entry_id, fields in entries:
            # ">" only delivers entries never delivered before.
            job = await _job_from_entry(r, entry_id, fields, deliveries=1)
            if job is not None:
                log.info(
                    "transcode: video %s job %s claimed by %s",
                    job.video_id,
                    job.entry_id,
                    consumer,
                    extra={"request_id": job.request_id or None},
                )
                return job


def _stream_entries(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    """The (id, fields) pairs of an XREADGROUP reply, whatever its shape.

    redis-py returns ``[[stream, entries]]`` (RESP2), ``{stream: entries}``
    (unified responses) or ``{stream: [entries]}`` (RESP3 legacy).
    """
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    found: list[tuple[str, dict[str, str] | None]] = []
    for _stream, entries in pairs:
        for item in entries or []:
            for entry_id, fields in item if isinstance(item, list) else [item]:
                found.append((entry_id, fields))
    return found


async def _deliveries(r: redis.asyncio.Redis, entry_id: str) -> int | None:
    rows = await r.xpending_range(STREAM, GROUP, min=entry_id, max=entry_id, count=1)
    return int(rows[0]["times_delivered"]) if rows else None


async def _job_from_entry(
    r: redis.asyncio.Redis, entry_id: str, fields: dict[str, str] | None, deliveries: int
) -> Job | None:
    """The Job for a delivered entry; None after clearing an unusable one away."""
    if not fields:
        # The entry's data is gone (deleted while we read it): nothing to do.
        log.info("transcode: job %s has no data any more; dropping it", entry_id)
        await _ack_and_delete(r, [entry_id])
        return None
    try:
        return Job(
            entry_id=entry_id,
            video_id=int(fields["video_id"]),
            deliveries=deliveries,
            request_id=fields.get("request_id", ""),
            owner=fields.get("owner", ""),
        )
    except (KeyError, ValueError):
        # Not written by `enqueue`: keep it for an operator instead of retrying it.
        log.error("transcode: job %s is malformed (%r); dead-lettering it", entry_id, fields)
        async with r.pipeline(transaction=True) as pipe:
            pipe.xadd(
                DEAD_LETTER,
                {
                    "video_id": str(fields.get("video_id", "")),
                    "reason": f"malformed entry: {fields!r}",
                    "deliveries": str(deliveries),
                    "entry_id": entry_id,
                },
                maxlen=DEAD_LETTER_MAXLEN,
                approximate=True,
            )
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            await pipe.execute()
        return None


async def renew(r: redis.asyncio.Redis, consumer: str, job: Job) -> bool:
    """Restart `job`'s lease; False if `consumer` no longer holds it.

    False means the entry was taken over by another consumer, acknowledged,
    dead-lettered or removed (video deleted): the caller should abandon the
    job without acknowledging it. Never takes a job from another consumer.
    """
    script = r.register_script(_RENEW_SCRIPT)
    try:
        renewed = await script(keys=[STREAM], args=[GROUP, consumer, job.entry_id])
    except ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        renewed = 0
    if not renewed:
        log.warning("transcode: video %s job %s is no longer held by %s", job.video_id, job.entry_id, consumer)
        return False
    log.debug("transcode: video %s job %s lease renewed by %s", job.video_id, job.entry_id, consumer)
    return True


async def release(r: redis.asyncio.Redis, consumer: str, job: Job) -> bool:
    """Give `job` back to the queue now, for any consumer to claim at once; False
    if `consumer` no longer held it. Its delivery count is not used up by this."""
    script = r.register_script(_RELEASE_SCRIPT)
    try:
        released = await script(
            keys=[STREAM], args=[GROUP, consumer, job.entry_id, _RELEASED_IDLE_MS, max(job.deliveries - 1, 0)]
        )
    except ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        released = 0
    if released:
        log.info("transcode: video %s job %s handed back by %s", job.video_id, job.entry_id, consumer)
    return bool(released)


async def lease_holders(r: redis.asyncio.Redis) -> dict[str, tuple[str, int, int]]:
    """Every delivered, unacknowledged job: entry id -> (consumer, idle ms, deliveries)."""
    holders: dict[str, tuple[str, int, int]] = {}
    start = "-"
    while True:
        rows = await r.xpending_range(STREAM, GROUP, min=start, max="+", count=SCAN_PAGE)
        for row in rows:
            holders[as_text(row["message_id"])] = (
                as_text(row["consumer"]),
                int(row["time_since_delivered"]),
                int(row["times_delivered"]),
            )
        if len(rows) < SCAN_PAGE:
            return holders
        start = "(" + as_text(rows[-1]["message_id"])


async def ack(r: redis.asyncio.Redis, job: Job) -> bool:
    """Mark `job` done and delete its entry; False if it was no longer pending.

    Call it once the outputs are in place and the row says ``ready``. It does
    not check which consumer holds the job: a run that finishes after its
    lease was taken over still completes the job (runs are idempotent).
    """
    acked = await _ack_and_delete(r, [job.entry_id])
    log.info(
        "transcode: video %s job %s acknowledged%s",
        job.video_id,
        job.entry_id,
        "" if acked else " (was no longer pending)",
    )
    await promote(r, job.owner)
    return bool(acked)


async def dead_letter(r: redis.asyncio.Redis, job: Job, reason: str) -> str:
    """Move `job` to DEAD_LETTER with `reason`; return the dead-letter entry id.

    The record holds ``video_id``, ``reason``, ``deliveries`` and the original
    ``entry_id``; the job leaves STREAM in the same transaction.
    """
    async with r.pipeline(transaction=True) as pipe:
        pipe.xadd(
            DEAD_LETTER,
            {
                "video_id": str(job.video_id),
                "reason": reason,
                "deliveries": str(job.deliveries),
                "entry_id": job.entry_id,
            },
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        pipe.xack(STREAM, GROUP, job.entry_id)
        pipe.xdel(STREAM, job.entry_id)
        dead_id, _acked, _deleted = await pipe.execute()
    log.warning(
        "transcode: video %s job %s dead-lettered as %s after %s deliveries: %s",
        job.video_id,
        job.entry_id,
        dead_id,
        job.deliveries,
        reason,
    )
    await promote(r, job.owner)
    return as_text(dead_id)


@dataclass(frozen=True)
class QueueStats:
    length: int  # jobs waiting (in STREAM or a backlog) or running (acknowledged ones are deleted)
    pending: int  # delivered to a consumer and not yet acknowledged
    dead_letters: int


async def stats(r: redis.asyncio.Redis) -> QueueStats:
    """Sizes for /metrics: a few O(1) Redis calls per owner with waiting jobs."""
    owners = await _owners(r)
    async with r.pipeline(transaction=False) as pipe:
        pipe.xlen(STREAM)
        pipe.xpending(STREAM, GROUP)
        pipe.xlen(DEAD_LETTER)
        for owner in owners:
            pipe.llen(rediskeys.transcode_backlog(owner))
        length, pending, dead, *waiting = await pipe.execute(raise_on_error=False)
    if isinstance(pending, ResponseError) and "NOGROUP" in str(pending):
        pending = {"pending": 0}  # no consumer has started yet
    for reply in (length, pending, dead, *waiting):
        if isinstance(reply, Exception):
            raise reply
    return QueueStats(
        length=int(length) + sum(int(count) for count in waiting),
        pending=int(pending["pending"]),
        dead_letters=int(dead),
    )


async def pending_video_ids(r: redis.asyncio.Redis) -> set[int]:
    """Ids of the videos with a live job: waiting its turn, not yet delivered, or
    delivered and pending.

    Every way out of the queue (`ack`, `dead_letter`, `remove_video`) deletes
    the entry in the same transaction as the XACK, so the stream's entries are
    exactly the live jobs. Used at start-up to re-enqueue videos stuck in
    ``queued``/``processing`` without one.
    """
    video_ids: set[int] = set()
    async for entry_id, fields in scan_entries(r):
        try:
            video_ids.add(int(fields["video_id"]))
        except (KeyError, ValueError):
            log.warning("transcode: job %s is malformed (%r); ignoring it", entry_id, fields)
    video_ids.update(video_id for _owner, _item, video_id in await backlog_items(r))
    return video_ids


async def remove_video(r: redis.asyncio.Redis, video_id: int) -> int:
    """Drop every job of `video_id` (waiting its turn, pending or not yet delivered);
    return how many. A consumer working on one learns it at its next `renew`.
    """
    wanted = str(video_id)
    found = [
        (entry_id, fields.get("owner", ""))
        async for entry_id, fields in scan_entries(r)
        if fields.get("video_id") == wanted
    ]
    removed = len(found)
    for owner, item, waiting_id in await backlog_items(r):
        if waiting_id == video_id:
            removed += int(await r.lrem(rediskeys.transcode_backlog(owner), 0, item))
    if found:
        await _ack_and_delete(r, [entry_id for entry_id, _owner in found])
        for owner in {owner for _entry, owner in found}:
            await promote(r, owner)
    if removed:
        log.info("transcode: video %s removed from the queue (%d job(s))", video_id, removed)
    return removed


async def scan_entries(r: redis.asyncio.Redis, stream: str = STREAM) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Every (id, fields) of `stream` (STREAM or DEAD_LETTER), oldest first, a page at a time."""
    start = "-"
    while True:
        page = await r.xrange(stream, min=start, max="+", count=SCAN_PAGE) or []
        for entry_id, fields in page:
            yield as_text(entry_id), {as_text(name): as_text(value) for name, value in (fields or {}).items()}
        if len(page) < SCAN_PAGE:
            return
        start = "(" + as_text(page[-1][0])


async def _ack_and_delete(r: redis.asyncio.Redis, entry_ids: list[str]) -> int:
    """XACK and XDEL together, so an acknowledged entry never lingers in STREAM."""
    async with r.pipeline(transaction=True) as pipe:
        pipe.xack(STREAM, GROUP, *entry_ids)
        pipe.xdel(STREAM, *entry_ids)
        acked, _deleted = await pipe.execute()
    return int(acked)
