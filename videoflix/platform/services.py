"""The long-lived clients every handler and job uses, created on the running loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiopg
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from videoflix.platform import db
from videoflix.platform.config import Config
from videoflix.platform.mail import Mailer
from videoflix.platform.storage import LocalStorage, Storage

log = logging.getLogger(__name__)

# Three thread executors, one per purpose, so one kind of work never waits
# behind another: a mail server that accepts and never answers holds mail threads
# for SMTP_TIMEOUT_SECONDS, not the threads logins need.
# bcrypt (passwords.py): CPU-bound by design (cost 12: a quarter second or more per
# check); a few threads keep a burst of logins from queueing behind each other.
CPU_THREAD_WORKERS = 4
# Those threads run at a lower CPU priority (nice is per thread on Linux): a burst
# of logins then slows the logins, not the loop serving segments (bench/serve.py
# measures the segment GET p99 during 20 concurrent logins). 10 is also ffmpeg's
# nice (TranscodeSettings.nice): logins and transcodes share what the loop leaves.
CPU_THREAD_NICE = 10
# Files: HLS reads (mediafiles.py), upload writes, moves and removals.
FILE_THREAD_WORKERS = 4
# SMTP deliveries and outbox writes (mail.py); mail is sent in the background, so
# two threads suffice and a hanging server can hold no more than two.
MAIL_THREAD_WORKERS = 2
# The request path's Redis client fails fast when Redis is down (a JSON 503 within
# a second, web/base.py), instead of redis-py's default 10 retries with
# backoff and 5 s timeouts: one immediate retry replaces a connection Redis
# closed (a restart), a refused connection fails in milliseconds. Blocking
# readers need longer: the transcode consumer has its own client (runner.py), and
# pub/sub reads are not bound by socket_timeout.
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRIES = 1


def _executor(
    workers: int, name: str, initializer: Callable[[], None] | None = None
) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix=f"videoflix-{name}", initializer=initializer
    )


T = TypeVar("T")


@dataclass(eq=False)
class Services:
    pool: aiopg.Pool
    redis: redis.asyncio.Redis
    mailer: Mailer
    cpu_executor: concurrent.futures.ThreadPoolExecutor
    file_executor: concurrent.futures.ThreadPoolExecutor
    mail_executor: concurrent.futures.ThreadPoolExecutor
    # Where media objects live (platform/storage.py): MEDIA_DIR, or a bucket.
    storage: Storage
    _states: dict[type, Any] = field(default_factory=dict, init=False, repr=False)

    def state(self, kind: type[T]) -> T:
        """The one `kind()` of these services, made on first use: in-process state
        that lives as long as they do (a session cache, the metrics registry, uploads
        in flight). It lives here, not in module globals, so each Services (one per
        server process; the tests make one per test) has its own, and it goes with them."""
        found = self._states.get(kind)
        if found is None:
            found = self._states[kind] = kind()
        return found

    async def close(self) -> None:
        await self.mailer.drain()
        self.pool.close()
        await self.pool.wait_closed()
        await self.redis.aclose()
        await self.storage.close()
        for executor in (self.cpu_executor, self.file_executor, self.mail_executor):
            executor.shutdown(wait=True)


def _lower_thread_priority() -> None:
    """Executor initializer: this thread only, CPU_THREAD_NICE steps nicer."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CPU_THREAD_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: normal priority
        log.debug("could not lower the priority of %s: %s", threading.current_thread().name, exc)


async def create_services(config: Config) -> Services:
    cpu = _executor(CPU_THREAD_WORKERS, "cpu", _lower_thread_priority)
    mail = _executor(MAIL_THREAD_WORKERS, "mail")
    pool = await db.create_pool(config.database_url)
    client = redis.asyncio.Redis.from_url(
        config.redis_url,
        decode_responses=True,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), REDIS_RETRIES),
        health_check_interval=30,
    )
    files = _executor(FILE_THREAD_WORKERS, "files")
    return Services(
        pool=pool,
        redis=client,
        mailer=Mailer(config, mail, store_executor=files),
        cpu_executor=cpu,
        file_executor=files,
        mail_executor=mail,
        storage=open_storage(config, files),
    )


def open_storage(config: Config, executor: concurrent.futures.Executor) -> Storage:
    """The store VIDEOFLIX_STORAGE names (embedded-s3 is turned into s3:// by `videoflix dev`).
    The S3 client (botocore, aiobotocore, aiohttp: a quarter of a process's start-up
    imports) is imported only when there is a bucket."""
    if config.storage_location.is_local:
        return LocalStorage(config.media_dir, executor)
    from videoflix.platform.s3store import S3Storage, s3_settings

    return S3Storage(s3_settings(config), config.media_dir, executor)


# A health probe must answer quickly even when a dependency hangs.
HEALTH_TIMEOUT_SECONDS = 2.0


async def check_health(services: Services) -> dict[str, str]:
    async def database() -> None:
        async with db.cursor(services.pool) as cur:
            await cur.execute("SELECT 1")

    report = {"status": "ok"}
    for name, probe in (("database", database), ("redis", services.redis.ping)):
        try:
            await asyncio.wait_for(probe(), HEALTH_TIMEOUT_SECONDS)
            report[name] = "ok"
        except Exception as exc:  # any failure of the dependency means "down"
            log.warning("health: %s is down: %s", name, exc)
            report[name] = "error"
            report["status"] = "error"
    return report
