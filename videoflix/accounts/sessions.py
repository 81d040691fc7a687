"""Is a session still live? Token versions and revoked sessions, cached in-process.

A session is one login: every access, refresh and stream token it issues carries
its id (`sid`, the refresh-token family of RFC 6819 §5.2.2.3). A token is live
while
- its `token_version` equals the user's (PostgreSQL `users.token_version`; a
  password change bumps it and so ends every session of that user), and
- its session is not revoked (Redis `rediskeys.revoked_session(sid)`, set by
  logout and by the reuse of a spent refresh token; it outlives every token of
  the session).

Every authenticated request asks (`is_live`), HLS segments included, so the
answers are cached in this process (a `SessionCache` per Services, kept here by
the module that fills it):
- Staleness bound: an answer is at most CHECK_SECONDS old. A logout or password
  change made by THIS process updates the cache before it answers (immediate
  here); one made by another process (`videoflix createadmin`, a second server)
  is seen here within CHECK_SECONDS.
- Both facts only move one way (versions grow, revocations stay), so a slow
  lookup that started before a local change can never undo it: lookups are
  merged with max() / or.
- Concurrent misses for one key share one lookup; the hot path (a cached
  answer) is two dict reads and no await that suspends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import cachetools
import psycopg2
import redis

from videoflix.platform import rediskeys
from videoflix.platform.db import cursor
from videoflix.platform.services import Services
from videoflix.tables import users

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
# Bounds the memory a flood of distinct tokens could make the cache take.
MAX_ENTRIES = 20_000  # each (least recently used first out)


class Unavailable(Exception):
    """PostgreSQL or Redis did not answer a session check: 503, never a guess."""


def _bounded() -> cachetools.LRUCache[Any, Any]:
    return cachetools.LRUCache(MAX_ENTRIES)


@dataclass
class SessionCache:
    # user id -> (fresh until (monotonic), token_version or None: no live token)
    versions: cachetools.LRUCache[int, tuple[float, int | None]] = field(default_factory=_bounded)
    # session id -> (fresh until (monotonic), revoked)
    revoked: cachetools.LRUCache[str, tuple[float, bool]] = field(default_factory=_bounded)
    pending: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)

    def store_version(self, user_id: int, fresh_until: float, version: int | None) -> None:
        old = self.versions.get(user_id)
        if old is not None and old[1] is not None and version is not None:
            version = max(old[1], version)
        self.versions[user_id] = (fresh_until, version)

    def store_revoked(self, session_id: str, fresh_until: float, revoked: bool) -> None:
        old = self.revoked.get(session_id)
        revoked = revoked or (old is not None and old[1])
        self.revoked[session_id] = (math.inf if revoked else fresh_until, revoked)


def _cache(services: Services) -> SessionCache:
    return services.state(SessionCache)


@dataclass(frozen=True)
class SessionEnd:
    """Tokens that stop working: one session's (`session_id`), or every token of
    `user_id` older than `token_version` (a password change or reset)."""

    session_id: str | None = None
    user_id: int | None = None
    token_version: int | None = None

    def ends(self, user_id: int, token_version: int, session_id: str | None) -> bool:
        """Whether a token of (user_id, token_version, session_id) is one of them."""
        if self.session_id is not None and session_id == self.session_id:
            return True
        return self.user_id == user_id and self.token_version is not None and token_version < self.token_version


class SessionEnds:
    """Who wants to know at once when sessions end in this process (a logout, a
    password change or reset): the event streams (library/events.py) close theirs.
    Ends made by other processes are found by `is_live` within CHECK_SECONDS."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[SessionEnd], None]] = []

    def add(self, listener: Callable[[SessionEnd], None]) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Callable[[SessionEnd], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def announce(self, end: SessionEnd) -> None:
        for listener in list(self._listeners):
            try:
                listener(end)
            except Exception:  # a listener's fault must not undo the logout that called it
                log.exception("session end listener failed")


async def _shared(cache: SessionCache, key: Any, lookup: Callable[[], Awaitable[Any]]) -> Any:
    """One lookup per key at a time; concurrent callers wait for the same one."""
    pending = cache.pending.get(key)
    if pending is None:
        pending = asyncio.ensure_future(lookup())
        cache.pending[key] = pending
        pending.add_done_callback(lambda _: cache.pending.pop(key, None))
    return await asyncio.shield(pending)


async def _lookup_version(services: Services, user_id: int) -> None:
    started = time.monotonic()
    try:
        async with cursor(services.pool) as cur:
            state = await users.get_session_state(cur, user_id)
    except (TimeoutError, psycopg2.Error, OSError) as exc:
        log.warning("session check: database unavailable: %s", exc)
        raise Unavailable() from None
    version = state["token_version"] if state is not None and state["is_active"] else None
    _cache(services).store_version(user_id, started + CHECK_SECONDS, version)


async def _lookup_revoked(services: Services, session_id: str) -> None:
    started = time.monotonic()
    try:
        revoked = bool(await services.redis.exists(rediskeys.revoked_session(session_id)))
    except (TimeoutError, redis.RedisError, OSError) as exc:
        log.warning("session check: redis unavailable: %s", exc)
        raise Unavailable() from None
    _cache(services).store_revoked(session_id, started + CHECK_SECONDS, revoked)


def cached_liveness(
    services: Services, user_id: int, token_version: int, session_id: str | None, now: float | None = None
) -> bool | None:
    """is_live from the cache alone, without waiting: None when it would have to ask
    PostgreSQL or Redis (web/segment_lane.py then leaves the request to the full path)."""
    cache = _cache(services)
    now = time.monotonic() if now is None else now
    version = cache.versions.get(user_id)
    if version is None or _stale(version, now):
        return None
    if version[1] != token_version:
        return False
    if session_id is None:
        return True
    revoked = cache.revoked.get(session_id)
    if revoked is None or _stale(revoked, now):
        return None
    return not revoked[1]


def _stale(entry: tuple[float, Any] | None, now: float) -> bool:
    return entry is None or entry[0] <= now


async def is_live(services: Services, user_id: int, token_version: int, session_id: str | None) -> bool:
    """True while a token of (user, version, session) may be used; see the module
    docstring. `session_id` None: a token bound to no session (none are issued
    now), judged by its version alone. Unavailable when a store is down."""
    cache = _cache(services)
    now = time.monotonic()
    # At most two lookups (the user's version, then the session's revocation); an
    # entry looked up now is fresh at `now` however long the lookup took.
    while (known := cached_liveness(services, user_id, token_version, session_id, now)) is None:
        if _stale(cache.versions.get(user_id), now):
            await _shared(cache, ("v", user_id), lambda: _lookup_version(services, user_id))
        else:
            assert session_id is not None  # (a token without a session is judged by its version alone)
            await _shared(cache, ("s", session_id), lambda: _lookup_revoked(services, session_id))
    return known


async def revoke(services: Services, session_id: str, lifetime_seconds: int) -> bool:
    """End a session everywhere: this process at once, others within CHECK_SECONDS.
    `lifetime_seconds` must cover the longest-lived token the session may have
    issued. False when it already was revoked."""
    _cache(services).store_revoked(session_id, math.inf, True)
    services.state(SessionEnds).announce(SessionEnd(session_id=session_id))
    return bool(await services.redis.set(rediskeys.revoked_session(session_id), 1, nx=True, ex=lifetime_seconds))


async def is_revoked(services: Services, session_id: str) -> bool:
    """The uncached answer (for refresh: a rare request that must not be stale)."""
    revoked = bool(await services.redis.exists(rediskeys.revoked_session(session_id)))
    if revoked:
        _cache(services).store_revoked(session_id, math.inf, True)
    return revoked


def version_changed(services: Services, user_id: int, token_version: int) -> None:
    """The user's token_version is now `token_version` (committed): older tokens
    stop working in this process at once."""
    _cache(services).store_version(user_id, time.monotonic() + CHECK_SECONDS, token_version)
    services.state(SessionEnds).announce(SessionEnd(user_id=user_id, token_version=token_version))
