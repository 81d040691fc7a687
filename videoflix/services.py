"""The long-lived clients every handler and job uses, created on the running loop."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import threading
from dataclasses import dataclass, field

import aiopg
import redis.asyncio

from videoflix import db, passwords
from videoflix.config import Config
from videoflix.mail import Mailer

log = logging.getLogger(__name__)

# bcrypt, file work and SMTP are short blocking calls; a few threads keep a
# burst of logins from queueing behind each other without starving the loop.
THREAD_WORKERS = 4
# bcrypt is CPU-bound by design (cost 12: a quarter second or more per check), so
# those threads run at a lower CPU priority (nice is per thread on Linux): a burst
# of logins then slows the logins, not the loop serving segments (bench/serve.py
# measures the segment GET p99 during 20 concurrent logins). 10 is also ffmpeg's
# nice (TranscodeSettings.nice): logins and transcodes share what the loop leaves.
THREAD_NICE = 10
# Reads of HLS segments and playlists (handlers/hls.py) get threads of their own,
# so a burst of bcrypt logins on `executor` never queues a segment read behind it.
FILE_THREAD_WORKERS = 4


@dataclass
class Services:
    pool: aiopg.Pool
    redis: redis.asyncio.Redis
    executor: concurrent.futures.ThreadPoolExecutor
    mailer: Mailer
    # A real bcrypt hash (same cost) checked for unknown emails, so a login for
    # an unknown address takes as long as one with a wrong password (CWE-208).
    dummy_password_hash: str
    file_executor: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            FILE_THREAD_WORKERS, thread_name_prefix="videoflix-files"))
    # Ready video rows by id for HLS requests (videoflix/playback.py); call
    # playback.forget_video(services, video_id) when a row changes or goes.
    video_cache: dict = field(default_factory=dict)

    async def close(self) -> None:
        await self.mailer.drain()
        self.pool.close()
        await self.pool.wait_closed()
        await self.redis.aclose()
        self.executor.shutdown(wait=True)
        self.file_executor.shutdown(wait=True)


def _lower_thread_priority() -> None:
    """Executor initializer: this thread only, THREAD_NICE steps nicer."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), THREAD_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: normal priority
        log.debug("could not lower the priority of %s: %s", threading.current_thread().name, exc)


async def create_services(config: Config) -> Services:
    executor = concurrent.futures.ThreadPoolExecutor(THREAD_WORKERS, thread_name_prefix="videoflix-io",
                                                     initializer=_lower_thread_priority)
    pool = await db.create_pool(config.database_url)
    client = redis.asyncio.Redis.from_url(config.redis_url, decode_responses=True,
                                          socket_connect_timeout=5, health_check_interval=30)
    dummy = await passwords.hash_password(executor, secrets.token_urlsafe(16), config.bcrypt_rounds)
    return Services(pool=pool, redis=client, executor=executor, mailer=Mailer(config, executor),
                    dummy_password_hash=dummy)


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
