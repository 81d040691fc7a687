"""Failed-attempt counters in Redis (fixed window from the first failure)."""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio


@dataclass(frozen=True)
class Limit:
    key: str
    max_failures: int
    window_seconds: int


async def retry_after(client: redis.asyncio.Redis, limits: list[Limit]) -> int | None:
    """Seconds until the first exhausted limit resets; None when none is exhausted."""
    counts = await client.mget([limit.key for limit in limits])
    for limit, count in zip(limits, counts):
        if count is not None and int(count) >= limit.max_failures:
            ttl = await client.ttl(limit.key)
            return max(int(ttl), 1) if ttl > 0 else limit.window_seconds
    return None


async def record_failure(client: redis.asyncio.Redis, limits: list[Limit]) -> None:
    async with client.pipeline(transaction=True) as pipe:
        for limit in limits:
            pipe.incr(limit.key)
            # NX: the window starts at the first failure and is not extended.
            pipe.expire(limit.key, limit.window_seconds, nx=True)
        await pipe.execute()


async def clear(client: redis.asyncio.Redis, limit: Limit) -> None:
    await client.delete(limit.key)
