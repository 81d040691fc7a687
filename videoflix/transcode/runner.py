"""The transcode consumer, server side: claim -> process pool -> record the outcome.

Everything here runs on the server's loop (or its file executor). Each of
`TRANSCODE_WORKERS` consumer tasks takes one job at a time from the Redis stream,
marks the row `processing`, and runs the whole job (job.run_child_job) in a child
of the forkserver process pool (pool.py) while it renews the job's lease. Each delivery
gets a new version N (videos.mark_processing: the row's building_version) and
writes media/<id>/v<N>/ in place, where the owner can already watch it
(README, Architecture: Transcode); on success one UPDATE makes N the live version (the row says
`ready`) and only then is the entry acknowledged. The version that was live
stays on disk for the sweeper to remove after VIDEOFLIX_VERSION_GRACE_SECONDS.

Failures:
- ffmpeg/ffprobe refuse the file (TranscodeError): the video is `failed` with
  the reason and the entry is acknowledged (a re-run would fail the same way).
- the child process dies (killed, OOM) or the server dies: nothing is
  acknowledged and the lease stops being renewed, so the entry is reclaimed
  after the lease and run again from scratch; past MAX_DELIVERIES it goes to
  the dead-letter stream and the video to `failed`.

The lease is fenced: after each renewal the keeper writes into the job's fence
file (media.lease_fence, fence.py) the monotonic time by which the run must stop unless
renewed again, FENCE_FRACTION of the lease after the renewal was sent, so
before any other consumer can take the job over. The child checks it at every
progress report and kills its ffmpeg once it has passed (also when this loop is
frozen or Redis is unreachable); the keeper retries Redis errors with backoff
until then, and writes 0 at once when the lease is lost. A run publishes only
after a last renewal proved the job still ours.

With object storage (VIDEOFLIX_STORAGE=s3://..., mirror.py) the version folder is
this host's scratch: the child fetches its input from the bucket and copies the folder
there as it grows; after before_publish the runner writes ladder.json into the bucket
last, while the lease is still kept, then switches the row and removes the scratch
copy. A run that ends without publishing removes its objects from the bucket (or the
sweeper does, when the store is unreachable). An unreachable store is waited for.

`stop` hands running jobs back (queue.release): the next claim anywhere takes
them over at once. A periodic reconciliation re-enqueues unfinished rows whose
stream entry is gone (e.g. lost with Redis's last second before a crash).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from videoflix.platform import media, rediskeys, requestid
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.services import Services
from videoflix.platform.storage import StorageError
from videoflix.tables import videos
from videoflix.transcode import mirror, originals, progress, queue
from videoflix.transcode.command import TranscodeSettings
from videoflix.transcode.errors import TranscodeError, public_reason
from videoflix.transcode.fence import write_fence
from videoflix.transcode.job import ChildJob, JobCancelled, JobResult, LeaseLost, run_child_job
from videoflix.transcode.limits import caps_from_config
from videoflix.transcode.pool import TranscodePool

if TYPE_CHECKING:  # the S3 client is imported only with a bucket (services.open_storage)
    from videoflix.platform.s3store import S3Storage

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long claim() blocks on an empty stream before looking again (and noticing shutdown).
CLAIM_BLOCK_MS = 2000
# Renewals come every RENEW_FRACTION of the lease; a run must stop by
# FENCE_FRACTION of the lease after the last renewal was sent (takeover is
# possible only after the whole lease).
RENEW_FRACTION = 1 / 3
FENCE_FRACTION = 0.75
# A failed renewal is retried after this long, doubling up to a sixth of the lease.
RENEW_RETRY_FIRST_SECONDS = 0.1
# Rows queued/processing with no stream entry are looked for this often (at least),
# and only once unchanged this long (an upload's row exists a moment before its entry).
RECONCILE_MIN_SECONDS = 1.0
RECONCILE_ROW_AGE_SECONDS = 5.0
# With object storage, removing an abandoned run's objects waits at most this long (else
# the sweeper removes them later).
FORGET_TIMEOUT_SECONDS = 30.0

# How a job ended (JobOutcome.kind); the metrics count jobs by it, so the set is closed.
OutcomeKind = Literal["ready", "failed", "cancelled", "discarded", "abandoned"]


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended, told once to every `TranscodeRunner.on_outcome` subscriber.

    ready      the version is live (the row says ready)
    failed     the video is `failed` with the reason (refused, or delivered too many times)
    cancelled  the video was deleted while the job ran
    discarded  the run finished but the row had changed meanwhile (deleted or re-queued)
    abandoned  the lease ended: another consumer has or will have the job
    A job whose worker died does not end here: it is reclaimed after its lease.
    """

    kind: OutcomeKind
    video_id: int
    version: int | None = None  # the version the run wrote (None: it never started)
    owner_id: int | None = None  # the owner of the row this job changed (ready, failed); None: no row changed
    wall_seconds: float | None = None  # how long the child ran, when it finished (ready, discarded)
    result: JobResult | None = None  # what it made, when it finished
    original_dropped_bytes: int = 0  # the original's size when VIDEOFLIX_ORIGINALS removed it (ready)

    @property
    def media_seconds(self) -> float:
        """Seconds of video transcoded (0 when the child did not finish)."""
        return float(self.result.duration or 0.0) if self.result is not None else 0.0


def _prepare_work_dir(path: Path, fence: Path, deadline: float) -> None:
    shutil.rmtree(path, ignore_errors=True)  # a new version: nothing there, unless a bug
    path.mkdir(parents=True)
    fence.parent.mkdir(parents=True, exist_ok=True)
    write_fence(fence, deadline)


def _remove_work(path: Path | None, fence: Path) -> None:
    """The run's version folder (None: keep it, it is published) and its fence."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):  # media/<id>/ goes when nothing else is in it
            path.parent.rmdir()
    fence.unlink(missing_ok=True)


@dataclass
class _Running:
    """A job this process runs right now, as its keeper sees it."""

    job: queue.Job
    work: Path  # the version folder it writes
    fence: Path
    lost: bool = False
    keeper: asyncio.Task[None] | None = None  # the task renewing its lease

    def stop_keeping(self) -> None:
        if self.keeper is not None:
            self.keeper.cancel()


def settings_from_config(config: Config) -> TranscodeSettings:
    return TranscodeSettings(
        preset=config.x264_preset,
        copy_when_fits=config.transcode_copy,
        stall_seconds=float(config.transcode_stall_seconds),
        caps=caps_from_config(config),
        memory_mb=config.transcode_memory_mb,
        cpu_factor=config.transcode_cpu_factor,
    )


def _live_top_rung(config: Config, row: videos.Video) -> str:
    """The live version's top rung folder: what a run reads when the original is gone
    (originals.py); "" when nothing is live."""
    if row.live_version is None or not row.resolutions:
        return ""
    return str(media.version_dir(config.media_dir, row.id, row.live_version) / row.resolutions[0])


def _remove_original(path: Path) -> int:
    """Its size, 0 if it was gone already (blocking: the file executor only)."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def redis_client(url: str) -> redis.asyncio.Redis:
    """The consumer's own client: its reads block for CLAIM_BLOCK_MS, so its socket
    timeout is longer than the request path's; one quick retry, no long backoff."""
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=1,
        socket_timeout=CLAIM_BLOCK_MS / 1000 + 3,
        retry=AsyncRetry(NoBackoff(), 1),
        health_check_interval=30,
    )


class TranscodeRunner:
    def __init__(self, config: Config, services: Services, consumer: str | None = None) -> None:
        self.config = config
        self.services = services
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_seconds = config.transcode_lease_seconds
        self.reconcile_seconds = max(RECONCILE_MIN_SECONDS, float(self.lease_seconds))
        self.redis = redis_client(config.redis_url)
        self.pool = TranscodePool(config.transcode_workers)
        self._tasks: list[asyncio.Task[Any]] = []
        self._running: dict[str, _Running] = {}
        self._stopping = False
        # Called with the JobOutcome of every job that ends here, once, in the order
        # appended (and awaited when it returns an awaitable): app.py subscribes the
        # library's lifecycle (a row the job changed), then the metrics.
        self.on_outcome: list[Callable[[JobOutcome], Awaitable[None] | None]] = []
        # Awaited as before_publish(video_id, version_dir, result) once a run's outputs are
        # in place, before the row says ready: app.py has the library import the extracted
        # subtitle tracks (their checks are the library's, and the switch must see them).
        self.before_publish: Callable[[int, Path, JobResult], Awaitable[object]] | None = None
        # Jobs running in the process pool right now.
        self.busy = 0

    def active_work(self) -> set[str]:
        """Names (without suffix) of the fences of the jobs this process runs now (the sweeper keeps them)."""
        return {running.fence.name.removesuffix(media.LEASE_FENCE_SUFFIX) for running in self._running.values()}

    async def start(self) -> None:
        await queue.ensure_group(self.redis)
        await self.recover()
        for index in range(self.config.transcode_workers):
            self._tasks.append(asyncio.create_task(self._consume(), name=f"transcode-consumer-{index}"))
        self._tasks.append(asyncio.create_task(self._reconcile_periodically(), name="transcode-reconcile"))
        log.info(
            "transcode consumer %s started (%d worker(s), lease %ss)",
            self.consumer,
            self.config.transcode_workers,
            self.lease_seconds,
        )

    async def recover(self, unchanged_for_seconds: float = 0.0) -> list[int]:
        """Re-enqueue rows stuck in queued/processing that have no stream entry."""
        async with cursor(self.services.pool) as cur:
            unfinished = await videos.unfinished_videos(cur, unchanged_for_seconds)
        await queue.promote_waiting(self.redis)  # jobs whose turn came while a process died
        if not unfinished:
            return []
        in_stream = await queue.pending_video_ids(self.redis)
        lost = [(video_id, owner_id) for video_id, owner_id in unfinished if video_id not in in_stream]
        for video_id, owner_id in lost:
            await queue.enqueue(self.redis, video_id, owner_id)
            log.warning("video %s: no queue entry for an unfinished row; enqueued again", video_id)
        return [video_id for video_id, _owner in lost]

    async def _reconcile_periodically(self) -> None:
        """`recover` every reconcile_seconds, by one process at a time (a Redis lock),
        for rows unchanged a while; survives Redis and PostgreSQL outages."""
        while not self._stopping:
            await asyncio.sleep(self.reconcile_seconds)
            try:
                if await self.redis.set(
                    rediskeys.TRANSCODE_RECONCILE_LOCK,
                    self.consumer,
                    nx=True,
                    px=max(int(self.reconcile_seconds * 900), 100),
                ):
                    await self.recover(RECONCILE_ROW_AGE_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage: the next round tries again
                log.warning("transcode: reconciliation skipped: %s", exc)

    async def stop(self) -> None:
        """Stop consuming; running jobs are stopped and handed back to the queue at once."""
        self._stopping = True
        running = list(self._running.values())
        for task in self._tasks:
            task.cancel()
        self._kill_pool()  # each worker's ffmpeg dies with it (PR_SET_PDEATHSIG)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for item in running:
            try:
                await queue.release(self.redis, self.consumer, item.job)
            except (redis.RedisError, OSError) as exc:
                log.warning(
                    "video %s job %s: not handed back (%s); it is reclaimed after its lease",
                    item.job.video_id,
                    item.job.entry_id,
                    exc,
                )
        await self.redis.aclose()

    def _kill_pool(self) -> None:
        pids = self.pool.worker_pids()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def _consume(self) -> None:
        while not self._stopping:
            try:
                job = await queue.claim(self.redis, self.consumer, CLAIM_BLOCK_MS, lease_seconds=self.lease_seconds)
                if job is not None:
                    with requestid.bound(job.request_id):  # its logs carry the uploader's request id
                        await self.run_job(job)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                # Redis is down or restarting: the job, if any, stays pending and
                # will be reclaimed; try again shortly, without a traceback per second.
                log.warning("transcode consumer %s: Redis unavailable (%s); retrying", self.consumer, exc)
                await asyncio.sleep(1)
            except Exception:
                # PostgreSQL hiccup or a bug: log, breathe, go on.
                log.exception("transcode consumer %s: unexpected error", self.consumer)
                await asyncio.sleep(1)

    async def _renew(self, job: queue.Job) -> bool:
        """One renewal, bounded in time; raises on Redis errors (and timeouts)."""
        return await asyncio.wait_for(queue.renew(self.redis, self.consumer, job), self.lease_seconds * RENEW_FRACTION)

    async def _set_fence(self, running: _Running, deadline: float) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self.services.file_executor, write_fence, running.fence, deadline
        )

    async def _keep_lease(self, running: _Running, deadline: float) -> None:
        """Renew every RENEW_FRACTION of the lease, moving the fence on; retry Redis
        errors with backoff while the fence allows; on loss, fence at 0 and return."""
        loop = asyncio.get_running_loop()
        job = running.job
        while True:
            await asyncio.sleep(self.lease_seconds * RENEW_FRACTION)
            backoff = RENEW_RETRY_FIRST_SECONDS
            while True:
                sent = loop.time()
                try:
                    held = await self._renew(job)
                except (redis.RedisError, OSError, TimeoutError) as exc:
                    if loop.time() + backoff < deadline:
                        log.warning(
                            "video %s job %s: lease not renewed (%s); retrying in %.1f s",
                            job.video_id,
                            job.entry_id,
                            exc or type(exc).__name__,
                            backoff,
                        )
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.lease_seconds / 6)
                        continue
                    log.error(
                        "video %s job %s: lease not renewable before its fence (%s)",
                        job.video_id,
                        job.entry_id,
                        exc or type(exc).__name__,
                    )
                    held = False
                if held:
                    deadline = sent + self.lease_seconds * FENCE_FRACTION
                    await self._set_fence(running, deadline)
                    break
                running.lost = True
                await self._set_fence(running, 0.0)
                log.warning(
                    "video %s job %s: lease lost; the run stops its ffmpeg and publishes nothing",
                    job.video_id,
                    job.entry_id,
                )
                return

    async def _still_ours(self, running: _Running) -> bool:
        """A last renewal before publishing: proof the job is still this consumer's."""
        if running.lost:
            return False
        try:
            return await self._renew(running.job)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "video %s job %s: lease not confirmed (%s)",
                running.job.video_id,
                running.job.entry_id,
                exc or type(exc).__name__,
            )
            return False

    async def _tell(self, outcome: JobOutcome) -> None:
        for subscriber in self.on_outcome:
            returned = subscriber(outcome)
            if inspect.isawaitable(returned):
                await returned

    async def _fail(self, job: queue.Job, reason: str, version: int | None = None) -> None:
        async with transaction(self.services.pool) as cur:
            video = await videos.get_video(cur, job.video_id)
            await videos.mark_failed(cur, job.video_id, reason)
        await self._tell(
            JobOutcome("failed", job.video_id, version, owner_id=video.owner_id if video is not None else None)
        )

    async def _handle_failure(
        self, job: queue.Job, version: int, pool: concurrent.futures.Executor, exc: BaseException
    ) -> None:
        video_id = job.video_id
        if isinstance(exc, JobCancelled):
            log.info("video %s job %s: cancelled (video deleted)", video_id, job.entry_id)
            await queue.ack(self.redis, job)
            await self._tell(JobOutcome("cancelled", video_id, version))
        elif isinstance(exc, LeaseLost):
            log.warning("video %s job %s: abandoned, nothing published (%s)", video_id, job.entry_id, exc)
            try:  # if nobody took it over yet (this loop stalled), it can run again at once
                await queue.release(self.redis, self.consumer, job)
            except (redis.RedisError, OSError) as error:
                log.warning("video %s job %s: not handed back (%s)", video_id, job.entry_id, error)
            await self._tell(JobOutcome("abandoned", video_id, version))
        elif isinstance(exc, TranscodeError):
            log.warning("video %s job %s: failed: %s", video_id, job.entry_id, exc)
            await self._fail(job, public_reason(str(exc)), version)
            await queue.ack(self.redis, job)
        elif isinstance(exc, BrokenProcessPool):
            log.error(
                "video %s job %s: worker process died; the job will be reclaimed after its lease",
                video_id,
                job.entry_id,
            )
            if self.pool is pool and not self._stopping:
                self.pool = TranscodePool(self.config.transcode_workers)
        else:
            # Shutdown (CancelledError) or a bug: leave the entry pending.
            raise exc

    @property
    def _bucket(self) -> S3Storage | None:
        """The bucket when media live in object storage (None: MEDIA_DIR is the library)."""
        storage = self.services.storage
        return None if storage.is_local else cast("S3Storage", storage)

    async def _in_store(self, running: _Running, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """`operation()` against the bucket, retried while the store is unreachable and the
        job still ours (the keeper renews its lease meanwhile); TranscodeError after
        mirror.STORE_WAIT_SECONDS of failures, LeaseLost once the lease is."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        backoff = mirror.RETRY_FIRST_SECONDS
        while True:
            if running.lost:
                raise LeaseLost(f"{what}: the lease ended while the store was unreachable")
            try:
                return await operation()
            except StorageError as exc:
                waited = loop.time() - started
                if waited + backoff > mirror.STORE_WAIT_SECONDS:
                    raise TranscodeError(mirror.STORE_UNREACHABLE % round(waited + backoff)) from exc
                log.warning("%s: the store is unreachable (%s); retrying in %.1f s", what, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, mirror.RETRY_MAX_SECONDS)

    async def _forget_objects(self, folder: Path) -> None:
        """With object storage: remove what a run that will never be published (or a
        deleted video) left in the bucket under `folder`; the sweeper does it later when
        the store cannot be reached now."""
        bucket = self._bucket
        if bucket is None:
            return
        try:
            removed = await asyncio.wait_for(bucket.delete_tree(folder), FORGET_TIMEOUT_SECONDS)
        except (StorageError, TimeoutError) as exc:
            log.warning("%s: not removed from the store now (%s); the sweeper will", bucket.key(folder), exc)
            return
        if removed:
            log.info("%s: removed %d objects from the store", bucket.key(folder), removed)

    async def run_job(self, job: queue.Job) -> None:
        video_id = job.video_id
        redis_client = self.redis
        if job.deliveries > queue.MAX_DELIVERIES:
            reason = (
                f"Transcoding was interrupted {job.deliveries - 1} times "
                "(worker process died or the server stopped); giving up."
            )
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
        version = row.building_version
        assert version is not None  # allocated by mark_processing's own UPDATE
        work = media.version_dir(self.config.media_dir, video_id, version)
        fence = media.lease_fence(self.config.media_dir, video_id, version)
        # The lease clock starts at a known moment: a renewal sent now.
        sent = loop.time()
        if not await self._renew(job):
            log.info("video %s job %s: no longer ours before it started", video_id, job.entry_id)
            return
        deadline = sent + self.lease_seconds * FENCE_FRACTION
        await loop.run_in_executor(executor, _prepare_work_dir, work, fence, deadline)
        bucket = self._bucket
        child_job = ChildJob(
            video_id,
            str(media.source_path(self.config.media_dir, video_id)),
            str(work),
            self.config.redis_url,
            settings_from_config(self.config),
            fence=str(fence),
            max_file_bytes=self.config.transcode_max_file_bytes,
            version=version,
            source_rung=_live_top_rung(self.config, row),
            store=bucket.settings if bucket is not None else None,
            media_dir=self.config.media_dir,
        )
        log.info(
            "video %s job %s: transcoding into version %d (delivery %d)%s",
            video_id,
            job.entry_id,
            version,
            job.deliveries,
            "" if bucket is None else f", uploading to {bucket.key(work)}/",
        )
        running = _Running(job, work, fence)
        self._running[job.entry_id] = running
        # The lease is kept until the row says ready: with object storage, publishing
        # (before_publish, ladder.json) waits for the store, maybe longer than a lease.
        running.keeper = asyncio.create_task(self._keep_lease(running, deadline))
        try:
            await self._run_and_publish(running, row, version, child_job)
        finally:
            running.stop_keeping()
            self._running.pop(job.entry_id, None)

    async def _run_and_publish(self, running: _Running, row: videos.Video, version: int, child_job: ChildJob) -> None:
        job, work, fence = running.job, running.work, running.fence
        video_id = job.video_id
        redis_client = self.redis
        loop = asyncio.get_running_loop()
        executor = self.services.file_executor
        bucket = self._bucket
        pool = self.pool
        started = time.monotonic()
        self.busy += 1
        try:
            try:
                result: JobResult = await loop.run_in_executor(pool, run_child_job, child_job)
            finally:
                self.busy -= 1
            if not await self._still_ours(running):
                raise LeaseLost("the lease ended while the job ran")
            wall_seconds = time.monotonic() - started
            if self.before_publish is not None:  # e.g. the extracted subtitle tracks, before the switch
                await self.before_publish(video_id, work, result)
            if bucket is not None:
                # ladder.json last: every other object of the version is in the bucket.
                if running.lost:
                    raise LeaseLost("the lease ended before ladder.json was written")
                ladder = media.ladder_path(self.config.media_dir, video_id, version)
                await self._in_store(
                    running,
                    f"video {video_id} job {job.entry_id}: ladder.json",
                    lambda: bucket.put_file(ladder, work / media.LADDER_NAME),
                )
                # Readers prefer ladder.json, so the provisional one can go now: a version
                # that is live never has one beside it.
                try:
                    await bucket.delete(media.building_ladder_path(self.config.media_dir, video_id, version))
                except StorageError as exc:
                    log.warning("video %s: provisional ladder not removed from the store: %s", video_id, exc)
        except BaseException as exc:
            running.stop_keeping()
            # A later delivery writes a new version: this one will never be published.
            await loop.run_in_executor(executor, _remove_work, work, fence)
            if not isinstance(exc, asyncio.CancelledError):
                await self._forget_objects(work)
            await self._handle_failure(job, version, pool, exc)
            return
        # Publish: one UPDATE makes the version live (only if it is still the row's building one).
        async with cursor(self.services.pool) as cur:
            ready = await videos.mark_ready(
                cur,
                video_id,
                version=version,
                duration=result.duration,
                width=result.width,
                height=result.height,
                fps=result.fps,
                has_audio=result.has_audio,
                resolutions=result.resolutions,
            )
        running.stop_keeping()
        if not ready:
            # Deleted (or re-queued) while we worked: our outputs must not linger.
            log.info("video %s job %s: row changed during the job; discarding outputs", video_id, job.entry_id)
            async with cursor(self.services.pool) as cur:
                still_there = await videos.get_video(cur, video_id)
            target = work if still_there is not None else media.video_dir(self.config.media_dir, video_id)
            await loop.run_in_executor(executor, _remove_work, target, fence)
            await self._forget_objects(target)
            await queue.ack(redis_client, job)
            await self._tell(JobOutcome("discarded", video_id, version, wall_seconds=wall_seconds, result=result))
            return
        # With object storage the scratch copy goes too: the bucket has the version.
        await loop.run_in_executor(executor, _remove_work, None if bucket is None else work, fence)
        dropped = 0
        if originals.drop_original(self.config.originals, result.copy, result.has_audio):
            source = media.source_path(self.config.media_dir, video_id)
            dropped = await loop.run_in_executor(executor, _remove_original, source)
            if bucket is not None:
                dropped = await self._drop_stored_original(source)
            log.info("video %s: original removed (VIDEOFLIX_ORIGINALS=%s)", video_id, self.config.originals)
        await queue.ack(redis_client, job)
        await progress.clear_progress(redis_client, video_id)
        log.info("video %s job %s: ready (%s)", video_id, job.entry_id, ", ".join(result.resolutions))
        await self._tell(
            JobOutcome(
                "ready",
                video_id,
                version,
                owner_id=row.owner_id,
                wall_seconds=wall_seconds,
                result=result,
                original_dropped_bytes=dropped,
            )
        )

    async def _drop_stored_original(self, source: Path) -> int:
        """The original's object removed from the bucket; its size (0: it was gone, or the
        store is unreachable and it stays, logged)."""
        bucket = self._bucket
        assert bucket is not None
        try:
            info = await bucket.head(source)
            if info is None:
                return 0
            await bucket.delete(source)
        except StorageError as exc:
            log.warning("%s: the original was not removed from the store: %s", bucket.key(source), exc)
            return 0
        return info.size
