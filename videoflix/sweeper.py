"""Removing what crashed runs leave in MEDIA_DIR, at start-up and periodically.

- media/.incoming/*.part: an upload whose process died (a live upload that sends
  nothing for upload_idle_seconds is cut off anyway): removed once unchanged for
  upload_idle_seconds, unless this process is receiving it.
- media/.work/<id>-<job>-<delivery>[.lease]: a transcode whose run died: removed
  once unchanged for the lease and no consumer holds that delivery of that job
  under a live lease (queue.lease_holders), unless this process runs it. When
  Redis cannot be asked, work folders wait for the next round.

Each removal is logged with what it was.
"""
from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from videoflix import media, uploads
from videoflix.config import Config
from videoflix.services import Services
from videoflix.transcode import queue

log = logging.getLogger(__name__)

# <video id>-<stream entry id>-<delivery>, as runner.run_job names it.
_WORK_NAME = re.compile(r"(?P<video>[0-9]+)-(?P<entry>[0-9]+-[0-9]+)-(?P<delivery>[0-9]+)")
# Never sweep more often than this.
MIN_INTERVAL_SECONDS = 1.0


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return -1.0


def sweep_incoming(media_dir: str, idle_seconds: float, live: set[str]) -> list[str]:
    """Remove orphaned upload files; return their names (blocking)."""
    incoming = media.incoming_dir(media_dir)
    if not incoming.is_dir():
        return []
    removed = []
    now = time.time()
    for path in incoming.iterdir():
        if path.name in live or _age(path, now) < idle_seconds:
            continue
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def sweep_work(media_dir: str, lease_seconds: float, keep: Callable[[str], bool]) -> list[str]:
    """Remove orphaned work folders (and their fences) `keep` does not claim (blocking)."""
    root = media.work_dir(media_dir)
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for path in root.iterdir():
        name = path.name
        for suffix in (media.LEASE_FENCE_SUFFIX + ".tmp", media.LEASE_FENCE_SUFFIX):
            name = name.removesuffix(suffix)
        if keep(name) or _age(path, now) < lease_seconds:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


class Sweeper:
    """Runs `sweep` once now and then every `interval` seconds until stopped."""

    def __init__(self, config: Config, services: Services, active_work: Callable[[], set[str]]) -> None:
        self.config = config
        self.services = services
        self.active_work = active_work
        self.interval = max(MIN_INTERVAL_SECONDS,
                            min(config.upload_idle_seconds, config.transcode_lease_seconds) / 2)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.sweep()
        self._task = asyncio.create_task(self._periodically(), name="sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _periodically(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", self.interval)

    async def sweep(self) -> list[str]:
        loop = asyncio.get_running_loop()
        executor = self.services.file_executor
        config = self.config
        removed = await loop.run_in_executor(executor, sweep_incoming, config.media_dir,
                                             float(config.upload_idle_seconds), uploads.live_uploads())
        for name in removed:
            log.warning("sweep: removed %s, an upload nobody is receiving (idle over %ss)",
                        media.incoming_dir(config.media_dir) / name, config.upload_idle_seconds)
        try:
            holders = await queue.lease_holders(self.services.redis)
        except Exception as exc:  # Redis down: work folders wait for the next round
            log.info("sweep: work folders not checked (%s)", exc)
            return removed
        lease_ms = config.transcode_lease_seconds * 1000
        active = self.active_work()

        def keep(name: str) -> bool:
            if name in active:
                return True
            match = _WORK_NAME.fullmatch(name)
            if match is None:
                return False
            holder = holders.get(match["entry"])
            return holder is not None and holder[1] < lease_ms and holder[2] == int(match["delivery"])

        swept = await loop.run_in_executor(executor, sweep_work, config.media_dir,
                                           float(config.transcode_lease_seconds), keep)
        for name in swept:
            log.warning("sweep: removed %s, left by a transcode run that is no longer alive",
                        media.work_dir(config.media_dir) / name)
        return removed + swept
