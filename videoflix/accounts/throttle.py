"""Attempt budgets in Redis: reserved atomically before the work they guard.

A `Limit` is a counter key, a budget and a fixed window that starts with the
first counted attempt. `reserve` checks every limit and, only when none is
exhausted, counts the attempt against all of them: one Lua script, so one Redis
round trip and no interleaving. Of N concurrent requests at most the remaining
budget get through, whatever their timing (a read-then-count scheme lets every
one of a burst pass the read before any is counted). A refused attempt is not
counted: it does no work and must not extend anyone's lock-out.

`release` hands a reserved attempt back (a login that turned out to be the
owner's); `clear` forgets a counter. The callers (accounts.py) pass the keys,
built in rediskeys.py like every other.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio

# KEYS: the counters; ARGV: budget_1, window_1, budget_2, window_2, ...
# Returns 0 when the attempt is counted, else the seconds until the first
# exhausted counter resets.
_RESERVE = """
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then
      redis.call('EXPIRE', key, ARGV[2 * i])
      ttl = tonumber(ARGV[2 * i])
    end
    return ttl
  end
end
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, ARGV[2 * i])
  end
end
return 0
"""
# KEYS: counters to decrement (never below zero, never re-created once expired).
_RELEASE = """
for _, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count > 1 then
    redis.call('DECR', key)
  elseif count == 1 then
    redis.call('DEL', key)
  end
end
return 0
"""


@dataclass(frozen=True)
class Limit:
    key: str
    budget: int
    window_seconds: int


async def reserve(client: redis.asyncio.Redis, limits: list[Limit]) -> int | None:
    """Count one attempt against every limit, or none when one is exhausted:
    None when counted, else the seconds until it may be tried again (>= 1)."""
    args: list[int] = []
    for limit in limits:
        args += [limit.budget, limit.window_seconds]
    wait = int(await client.eval(_RESERVE, len(limits), *(limit.key for limit in limits), *args))
    return None if wait == 0 else max(wait, 1)


async def release(client: redis.asyncio.Redis, limits: list[Limit]) -> None:
    """Give back one reserved attempt on each limit."""
    if limits:
        await client.eval(_RELEASE, len(limits), *(limit.key for limit in limits))


async def clear(client: redis.asyncio.Redis, limits: list[Limit]) -> None:
    if limits:
        await client.delete(*(limit.key for limit in limits))
