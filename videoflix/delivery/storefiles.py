"""Reading media objects from the store for an answer (VIDEOFLIX_STORAGE=s3://...; loop side).

The bucket's counterpart of mediafiles.py: what web/hls_files.py asks of the store
before it answers (answer.answer_object), and the caches in front of it, one of each per
Services:
- `object_facts`: size, ETag and Last-Modified of an object (a HEAD); those of immutable
  objects (segments and sprites of a finished version) are kept (FactsCache), so a
  revalidation or a Range asks the store nothing the second time.
- `read_small`: a mutable small object read whole with its facts from the same GET
  (media and I-frame playlists, a track, an image, ladder.json), kept at most SMALL_CACHE_SECONDS in-process: a playlist a
  hundred players reload costs the store one GET a second, and a change is seen within it.
- `hot_cache`: immutable objects' bytes on local scratch (hotcache.py).
Every call is bounded by STORE_WAIT_SECONDS: an unreachable store is StoreUnavailable (the
handlers' 503), never a hang; for DOWN_HOLD_SECONDS after such a failure the next calls
fail at once (botocore retried already), so an outage costs each request nothing; a
missing object is None.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import cachetools

from videoflix.delivery.answer import ObjectFacts
from videoflix.delivery.hotcache import HotCache
from videoflix.platform import media, storage
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.transcode import ladderfile

log = logging.getLogger(__name__)

# What one call to the store may take on the serving path before the request gets a
# 503 (botocore retries a refused connection within it: s3store.py); a HEAD or a small
# GET takes milliseconds when the store is well.
STORE_WAIT_SECONDS = 4.0
DOWN_HOLD_SECONDS = 2.0
# A mutable object read whole is kept this long (playlists are `max-age=5` anyway).
SMALL_CACHE_SECONDS = 1.0
# ... if at most this large, and at most this many of them.
SMALL_CACHE_MAX_BYTES = 512 * 1024
SMALL_CACHE_ENTRIES = 512
FACTS_CACHE_ENTRIES = 20_000
LADDER_CACHE_ENTRIES = 2_000
MIB = 1024 * 1024


class StoreUnavailable(Exception):
    """The store did not answer (down, refused, timed out): 503 to the client."""


class FactsCache(cachetools.LRUCache[Any, Any]):
    """{key: ObjectFacts} of immutable objects; one per Services."""

    def __init__(self) -> None:
        super().__init__(FACTS_CACHE_ENTRIES)


class SmallCache(cachetools.TTLCache[Any, Any]):
    """{key: (facts, bytes)} of mutable objects read whole, SMALL_CACHE_SECONDS each."""

    def __init__(self) -> None:
        super().__init__(SMALL_CACHE_ENTRIES, SMALL_CACHE_SECONDS, timer=time.monotonic)


class LadderCache(cachetools.LRUCache[Any, Any]):
    """{(video_id, version): ladder} of finished versions read from a bucket; one per Services."""

    def __init__(self) -> None:
        super().__init__(LADDER_CACHE_ENTRIES)


class _HotCacheHolder:
    def __init__(self) -> None:
        self.cache: HotCache | None = None


def hot_cache(config: Config, services: Services) -> HotCache:
    """This process's hot-object cache (made on first use)."""
    holder = services.state(_HotCacheHolder)
    if holder.cache is None:
        holder.cache = HotCache(media.hot_cache_dir(config.media_dir), config.s3_cache_mb * MIB, services.file_executor)
    return holder.cache


def facts_of(info: storage.ObjectInfo) -> ObjectFacts:
    return ObjectFacts(info.size, info.etag or '""', int(info.mtime) if info.mtime > 0 else None)


def key_of(config: Config, path: Path) -> str:
    return storage.media_key(config.media_dir, path)


class StoreHealth:
    """Until when the store is taken for down (one per Services; 0: it answers)."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.reason = ""


async def bounded(services: Services, call: Any) -> Any:
    """`call` (a coroutine on the store) within STORE_WAIT_SECONDS; StoreUnavailable
    when the store fails or does not answer in time, or failed so less than
    DOWN_HOLD_SECONDS ago (then `call` is not run)."""
    health = services.state(StoreHealth)
    if time.monotonic() < health.down_until:
        if hasattr(call, "close"):
            call.close()  # (never awaited: no "never awaited" warning)
        raise StoreUnavailable(health.reason)
    try:
        result = await bounded_call(call)
    except StoreUnavailable as exc:
        if health.down_until == 0.0:  # once per outage, not once per request
            log.warning("media storage unavailable (503s until it answers): %s", exc)
        health.down_until = time.monotonic() + DOWN_HOLD_SECONDS
        health.reason = str(exc)
        raise
    if health.down_until:
        log.info("media storage answers again")
        health.down_until = 0.0
    return result


async def bounded_call(call: Any) -> Any:
    """`call` within STORE_WAIT_SECONDS; StoreUnavailable when it fails or takes longer."""
    try:
        async with asyncio.timeout(STORE_WAIT_SECONDS):
            return await call
    except (TimeoutError, storage.StorageError) as exc:
        raise StoreUnavailable(str(exc) or "timed out") from exc


async def object_facts(config: Config, services: Services, path: Path, immutable: bool) -> ObjectFacts | None:
    """The object's facts (a HEAD), or None when it is missing; kept when `immutable`."""
    key = key_of(config, path)
    cache = services.state(FactsCache)
    if immutable:
        known: ObjectFacts | None = cache.get(key)
        if known is not None:
            return known
    info = await bounded(services, services.storage.head(path))
    if info is None:
        return None
    facts = facts_of(info)
    if immutable:
        cache[key] = facts
    return facts


def forget_facts(config: Config, services: Services, path: Path) -> None:
    """Drop kept facts of an object found missing (removed since: a swept version)."""
    services.state(FactsCache).pop(key_of(config, path), None)


async def read_small(
    config: Config, services: Services, path: Path, fresh: bool = False
) -> tuple[ObjectFacts, bytes] | None:
    """A mutable small object's facts and bytes (None: missing, never kept), at most
    SMALL_CACHE_SECONDS old (`fresh`: read now, as a wait for the version being built does)."""
    key = key_of(config, path)
    cache = services.state(SmallCache)
    if not fresh and key in cache:
        hit: tuple[ObjectFacts, bytes] | None = cache[key]
        return hit
    found = await bounded(services, services.storage.read_object(path))
    if found is None:  # not kept: an object appearing (a run's next playlist) is seen at once
        cache.pop(key, None)
        return None
    read = (facts_of(found[0]), found[1])
    if len(read[1]) <= SMALL_CACHE_MAX_BYTES:
        cache[key] = read
    return read


def ladder_of(data: bytes | None) -> dict[str, Any] | None:
    """A ladder.json's content as ladderfile.read_ladder accepts it (pure); None otherwise."""
    if data is None:
        return None
    try:
        ladder = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return ladder if isinstance(ladder, dict) and isinstance(ladder.get("variants"), list) else None


async def read_ladder(
    config: Config, services: Services, video_id: int, version: int, building: bool = False
) -> dict[str, Any] | None:
    """A version's ladder.json, from the store (None: none, or unreadable); StoreUnavailable
    when the bucket does not answer; a finished version's (`complete`) kept, the others
    read at most SMALL_CACHE_SECONDS apart. `building`: of the version being built, whose
    ladder.json comes last to a bucket: until then its provisional one
    (media.BUILDING_LADDER_NAME, transcode/mirror.py). On MEDIA_DIR: read in the file
    executor, as before."""
    path = media.ladder_path(config.media_dir, video_id, version)
    published = services.state(LadderCache)
    known: dict[str, Any] | None = published.get((video_id, version))
    if known is not None:
        return known
    if services.storage.is_local:
        found: dict[str, Any] | None = await asyncio.get_running_loop().run_in_executor(
            services.file_executor, ladderfile.read_ladder, path
        )
        return found
    read = await read_small(config, services, path)
    if read is None and building:
        read = await read_small(config, services, media.building_ladder_path(config.media_dir, video_id, version))
    ladder = ladder_of(None if read is None else read[1])
    if ladder is not None and ladder.get("complete") is True:  # a finished version's: never rewritten
        published[(video_id, version)] = ladder
    return ladder
