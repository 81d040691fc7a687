"""The transcode consumer, loop side: claim -> process pool -> record the outcome.

Each of `TRANSCODE_WORKERS` consumer tasks takes one job at a time from the
Redis stream, marks the row `processing`, and runs the whole job in a child of
a forkserver ProcessPoolExecutor while it renews the job's lease. Outputs are
written to media/.work/... and renamed into media/<id>/ only on success; the
row then says `ready` and only then is the entry acknowledged.

Failures:
- ffmpeg/ffprobe refuse the file (TranscodeError): the video is `failed` with
  the reason and the entry is acknowledged (a re-run would fail the same way).
- the child process dies (killed, OOM) or the server dies: nothing is
  acknowledged and the lease stops being renewed, so the entry is reclaimed
  after the lease and run again from scratch; past MAX_DELIVERIES it goes to
  the dead-letter stream and the video to `failed`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import select
import shutil
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import redis

from videoflix import media
from videoflix.config import Config
from videoflix.db import cursor, transaction
from videoflix.services import Services
from videoflix.tables import videos
from videoflix.transcode import progress, queue
from videoflix.transcode.ffmpeg import TranscodeError, TranscodeSettings, public_reason, transcode
from videoflix.transcode.limits import caps_from_config

log = logging.getLogger(__name__)

# How long claim() blocks on an empty stream before looking again (and noticing shutdown).
CLAIM_BLOCK_MS = 2000
# Progress is written to Redis at most this often per job.
PROGRESS_INTERVAL_SECONDS = 0.5


class JobCancelled(Exception):
    """The video was deleted while its job ran."""


@dataclass(frozen=True)
class ChildJob:
    """Everything the child process needs (picklable)."""

    video_id: int
    source: str
    work_dir: str
    redis_url: str
    settings: TranscodeSettings


def _exit_with_server(server_pid: int) -> None:
    """Thread body in a pool worker: SIGKILL ourselves once the server is gone.

    The forkserver outlives a killed server while any worker holds its "alive"
    pipe, so the worker watches the server itself; its ffmpeg (spawned with a
    parent-death signal) goes with it: no orphan encode after a crash.
    """
    try:
        pidfd = os.pidfd_open(server_pid)
        select.select([pidfd], [], [])  # readable once the process has exited
    except OSError:
        while True:
            time.sleep(1)
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
    os.kill(os.getpid(), signal.SIGKILL)


def _child_init(server_pid: int) -> None:
    threading.Thread(target=_exit_with_server, args=(server_pid,), name="server-watch", daemon=True).start()


def run_child_job(job: ChildJob) -> dict:
    """Runs in a pool process: the whole transcode, progress into Redis."""
    client = redis.Redis.from_url(job.redis_url, socket_timeout=10)
    last = [0.0]

    def on_progress(percent: float) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL_SECONDS and percent < 100.0:
            return
        last[0] = now
        try:
            progress.record(client, job.video_id, percent)
            cancelled = progress.cancel_requested(client, job.video_id)
        except redis.RedisError as exc:
            logging.getLogger(__name__).warning("video %s: progress not recorded: %s", job.video_id, exc)
            return
        if cancelled:
            raise JobCancelled(f"video {job.video_id} was deleted")

    try:
        result = transcode(job.source, job.work_dir, job.settings, on_progress)
    finally:
        client.close()
    return dataclasses.asdict(result)


def _prepare_work_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _publish(work: Path, target: Path) -> None:
    """Rename the finished outputs into place; an older set is swapped out, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}-{time.monotonic_ns()}")
        target.rename(old)
    work.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def make_process_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    # forkserver: forking a process that runs threads (executor, redis) is unsafe.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("forkserver"), initializer=_child_init,
        initargs=(os.getpid(),),
    )


def settings_from_config(config: Config) -> TranscodeSettings:
    return TranscodeSettings(preset=config.x264_preset, stall_seconds=float(config.transcode_stall_seconds),
                             caps=caps_from_config(config), memory_mb=config.transcode_memory_mb,
                             cpu_factor=config.transcode_cpu_factor)


class TranscodeRunner:
    def __init__(self, config: Config, services: Services, consumer: str | None = None) -> None:
        self.config = config
        self.services = services
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_seconds = config.transcode_lease_seconds
        self.pool = make_process_pool(config.transcode_workers)
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        # Called as callback(video_id, outcome) when a job ends: "ready", "failed",
        # "cancelled" (video deleted mid-job) or "discarded" (row gone at the end).
        self.on_job_done: list = []
        # Awaited as hook(video_id, owner_id) after a job changed a video's row
        # (ready or failed); app.py connects it to videos.video_changed.
        self.on_video_changed: list[Callable[[int, int], Awaitable[None]]] = []

    async def start(self) -> None:
        await queue.ensure_group(self.services.redis)
        await self.recover()
        for index in range(self.config.transcode_workers):
            self._tasks.append(asyncio.create_task(self._consume(), name=f"transcode-consumer-{index}"))
        log.info("transcode consumer %s started (%d worker(s), lease %ss)",
                 self.consumer, self.config.transcode_workers, self.lease_seconds)

    async def recover(self) -> list[int]:
        """Re-enqueue rows stuck in queued/processing that have no stream entry."""
        async with cursor(self.services.pool) as cur:
            unfinished = await videos.unfinished_video_ids(cur)
        if not unfinished:
            return []
        in_stream = await queue.pending_video_ids(self.services.redis)
        lost = [video_id for video_id in unfinished if video_id not in in_stream]
        for video_id in lost:
            await queue.enqueue(self.services.redis, video_id)
            log.warning("video %s: no queue entry for an unfinished row; enqueued again", video_id)
        return lost

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._kill_pool()

    def _kill_pool(self) -> None:
        # Running jobs stay unacknowledged and are reclaimed after their lease.
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()

    async def _consume(self) -> None:
        while not self._stopping:
            try:
                job = await queue.claim(self.services.redis, self.consumer, CLAIM_BLOCK_MS,
                                        lease_seconds=self.lease_seconds)
                if job is not None:
                    await self.run_job(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis or PostgreSQL hiccup: log, breathe, go on (the job, if
                # any, stays pending and will be reclaimed).
                log.exception("transcode consumer %s: unexpected error", self.consumer)
                await asyncio.sleep(1)

    async def _keep_lease(self, job: queue.Job) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not await queue.renew(self.services.redis, self.consumer, job):
                log.info("video %s job %s: lease lost (entry removed)", job.video_id, job.entry_id)
                return

    async def _changed(self, video_id: int, owner_id: int) -> None:
        for hook in self.on_video_changed:
            await hook(video_id, owner_id)

    def _notify(self, video_id: int, status: str) -> None:
        for callback in self.on_job_done:
            callback(video_id, status)

    async def _fail(self, job: queue.Job, reason: str) -> None:
        async with transaction(self.services.pool) as cur:
            video = await videos.get_video(cur, job.video_id)
            await videos.mark_failed(cur, job.video_id, reason)
        if video is not None:
            await self._changed(job.video_id, video["owner_id"])
        self._notify(job.video_id, "failed")

    async def _handle_failure(self, job: queue.Job, pool: concurrent.futures.Executor,
                              exc: BaseException) -> None:
        video_id = job.video_id
        if isinstance(exc, JobCancelled):
            log.info("video %s job %s: cancelled (video deleted)", video_id, job.entry_id)
            await queue.ack(self.services.redis, job)
            self._notify(video_id, "cancelled")
        elif isinstance(exc, TranscodeError):
            log.warning("video %s job %s: failed: %s", video_id, job.entry_id, exc)
            await self._fail(job, public_reason(str(exc)))
            await queue.ack(self.services.redis, job)
        elif isinstance(exc, BrokenProcessPool):
            log.error("video %s job %s: worker process died; the job will be reclaimed after its lease",
                      video_id, job.entry_id)
            if self.pool is pool and not self._stopping:
                self.pool = make_process_pool(self.config.transcode_workers)
        else:
            # Shutdown (CancelledError) or a bug: leave the entry pending.
            raise exc

    async def run_job(self, job: queue.Job) -> None:
        video_id = job.video_id
        redis_client = self.services.redis
        if job.deliveries > queue.MAX_DELIVERIES:
            reason = (f"Transcoding was interrupted {job.deliveries - 1} times "
                      "(worker process died or the server stopped); giving up.")
            log.error("video %s job %s: %s", video_id, job.entry_id, reason)
            await self._fail(job, reason)
            await queue.dead_letter(redis_client, job, reason)
            return
        async with cursor(self.services.pool) as cur:
            row = await videos.mark_processing(cur, video_id)
        if row is None:
            log.info("video %s job %s: row gone or settled; dropping the job", video_id, job.entry_id)
            await queue.ack(redis_client, job)
            return
        loop = asyncio.get_running_loop()
        executor = self.services.file_executor
        work = media.work_dir(self.config.media_dir) / f"{video_id}-{job.entry_id}-{job.deliveries}"
        await loop.run_in_executor(executor, _prepare_work_dir, work)
        child_job = ChildJob(video_id, str(media.source_path(self.config.media_dir, video_id)), str(work),
                             self.config.redis_url, settings_from_config(self.config))
        log.info("video %s job %s: transcoding (delivery %d)", video_id, job.entry_id, job.deliveries)
        lease = asyncio.create_task(self._keep_lease(job))
        pool = self.pool
        try:
            result = await loop.run_in_executor(pool, run_child_job, child_job)
        except BaseException as exc:
            await loop.run_in_executor(executor, shutil.rmtree, work, True)
            await self._handle_failure(job, pool, exc)
            return
        finally:
            lease.cancel()
        target = media.video_dir(self.config.media_dir, video_id)
        await loop.run_in_executor(executor, _publish, work, target)
        async with cursor(self.services.pool) as cur:
            ready = await videos.mark_ready(cur, video_id, duration=result["duration"], width=result["width"],
                                            height=result["height"], fps=result["fps"],
                                            has_audio=result["has_audio"], resolutions=result["resolutions"])
        if not ready:
            # Deleted (or re-queued) while we worked: our outputs must not linger.
            log.info("video %s job %s: row changed during the job; discarding outputs", video_id, job.entry_id)
            async with cursor(self.services.pool) as cur:
                still_there = await videos.get_video(cur, video_id)
            if still_there is None:
                await loop.run_in_executor(executor, shutil.rmtree, target, True)
            await queue.ack(redis_client, job)
            self._notify(video_id, "discarded")
            return
        await queue.ack(redis_client, job)
        await progress.clear_progress(redis_client, video_id)
        await self._changed(video_id, row["owner_id"])
        log.info("video %s job %s: ready (%s)", video_id, job.entry_id, ", ".join(result["resolutions"]))
        self._notify(video_id, "ready")
