"""The transcode queue, for admins: what is queued (waiting its owner's turn, or in
the stream), running (on which host and worker process, how far, how long since its
lease was renewed, how many deliveries), failed (the video's reason) and
dead-lettered (the queue's reason); retry a failed or dead-lettered job, discard a
dead letter, cancel a queued or running job.

A job is named by its video's id (a video has at most one live job), a dead letter
by its entry id in the dead-letter stream (`<ms>-<seq>`).

Cancelling marks the video `failed` ("Cancelled by an administrator.") and drops
its queue entry in the transaction that writes the audit entry; a running job's
child sees the cancel flag at its next progress report (every half second) and kills
its ffmpeg; its version folder is removed and nothing is published (the row is no
longer `processing` with that building version, so runner.mark_ready refuses it).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from videoflix.console import audit, queries
from videoflix.console.audit import Actor
from videoflix.library import lifecycle
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.services import Services
from videoflix.tables import videos as video_rows
from videoflix.tables.videos import Video
from videoflix.transcode import progress, queue, queue_view

log = logging.getLogger(__name__)

CANCELLED_REASON = "Cancelled by an administrator."
# Failed videos the listing shows, newest failure first.
FAILED_PAGE = 100
# A job id: a video id, or a dead letter's stream entry id.
JOB_ID_PATTERN = r"[0-9]{1,18}(?:-[0-9]{1,18})?"
# What a route takes as one (a plain character class, for the OpenAPI path); anything
# it lets through that is not a JOB_ID_PATTERN is an unknown job.
JOB_ID_ROUTE = r"[0-9][0-9-]{0,37}"


class JobNotFound(Exception):
    pass


class JobConflict(Exception):
    """The job is not in a state that allows the action (409); str() says why."""


def is_dead_letter_id(job_id: str) -> bool:
    """A dead letter's id; JobNotFound for text that is no job id at all."""
    if not re.fullmatch(JOB_ID_PATTERN, job_id):
        raise JobNotFound()
    return "-" in job_id


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def _video_part(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"title": None, "owner_id": None, "owner_email": None, "status": None, "error": None}
    return {
        "title": row["title"],
        "owner_id": row["owner_id"],
        "owner_email": row["owner_email"],
        "status": row["status"],
        "error": row["error"],
    }


def _host_and_pid(consumer: str) -> tuple[str, int | None]:
    """runner.TranscodeRunner names its consumer "<hostname>-<pid>"."""
    host, _, pid = consumer.rpartition("-")
    if host and pid.isdigit():
        return host, int(pid)
    return consumer, None


async def list_jobs(services: Services) -> dict[str, Any]:
    """{"counts", "queued", "running", "failed", "dead_letters"} (see the module docstring)."""
    r = services.redis
    live = await queue_view.list_jobs(r)
    dead = await queue_view.dead_letters(r)
    stats = await queue.stats(r)
    percents = {job.video_id: await progress.read(r, job.video_id) for job in live if job.state == "running"}
    ids = [job.video_id for job in live] + [letter.video_id for letter in dead if letter.video_id is not None]
    async with cursor(services.pool) as cur:
        rows = await video_rows.admin_rows(cur, ids)
        failed_count, failed = await video_rows.list_for_admin(
            cur,
            status="failed",
            visibility=None,
            owner_id=None,
            title_like=None,
            order="-updated",
            limit=FAILED_PAGE,
            offset=0,
        )
    queued = []
    running = []
    for job in live:
        item = {"id": str(job.video_id), "video_id": job.video_id, **_video_part(rows.get(job.video_id))}
        if job.state == "running":
            host, pid = _host_and_pid(job.consumer)
            running.append(
                {
                    **item,
                    "host": host,
                    "worker_pid": pid,
                    "consumer": job.consumer,
                    "progress": percents.get(job.video_id),
                    "lease_age_seconds": round(job.idle_ms / 1000, 1),
                    "deliveries": job.deliveries,
                }
            )
        else:
            queued.append({**item, "waiting_turn": job.state == "waiting"})
    return {
        "counts": {
            "queued": len(queued),
            "running": len(running),
            "failed": failed_count,
            "dead_letters": stats.dead_letters,
        },
        "queued": queued,
        "running": running,
        "failed": [
            {
                "id": str(row["id"]),
                "video_id": row["id"],
                **_video_part(row),
                "attempts": row["attempts"],
                "failed_at": _iso(row["updated_at"]),
            }
            for row in failed
        ],
        "dead_letters": [
            {
                "id": letter.dead_id,
                "video_id": letter.video_id,
                **_video_part(rows.get(letter.video_id) if letter.video_id is not None else None),
                "reason": letter.reason,
                "deliveries": letter.deliveries,
            }
            for letter in dead
        ],
    }


async def count_failed(services: Services) -> int:
    """Failed videos (GET /metrics: videoflix_videos_failed)."""
    async with cursor(services.pool) as cur:
        return await video_rows.count_failed(cur)


async def _retry_video(
    config: Config, services: Services, actor: Actor, video_id: int, details: dict[str, Any]
) -> Video:
    async def check_and_record(cur: Any, video: Video) -> None:
        if video.status != "failed":
            raise JobConflict(f"The video is {video.status}, not failed: nothing to retry.")
        await audit.record(cur, actor, "job.retry", "job", video_id, video.title, {**details, "error": video.error})

    try:
        return await lifecycle.retranscode(config, services, video_id, before_commit=check_and_record)
    except media.VideoNotFound:
        raise JobNotFound() from None
    except lifecycle.VideoBusy:
        raise JobConflict("The video is already queued or processing.") from None


async def retry(config: Config, services: Services, actor: Actor, job_id: str) -> dict[str, Any]:
    """Queue a failed video again (a job id), or the video of a dead letter (a dead
    letter id, which goes). {"video_id", "status"}. JobNotFound, JobConflict."""
    r = services.redis
    if is_dead_letter_id(job_id):
        letter = await queue_view.get_dead_letter(r, job_id)
        if letter is None or letter.video_id is None:
            raise JobNotFound()
        video = await _retry_video(config, services, actor, letter.video_id, {"dead_letter": job_id})
    else:
        video = await _retry_video(config, services, actor, int(job_id), {})
    # The video runs again: its dead letters are answered.
    await queue_view.discard_dead_letters(r, await queue_view.dead_letter_ids_of(r, video.id))
    log.info("job of video %s retried by %s (%s)", video.id, actor.email, actor.address)
    return {"video_id": video.id, "status": video.status}


async def cancel(services: Services, actor: Actor, job_id: str) -> dict[str, Any]:
    """Stop a queued or running job (module docstring). JobNotFound, JobConflict."""
    if is_dead_letter_id(job_id):
        raise JobConflict("A dead letter is not running: discard it (DELETE) instead.")
    video_id = int(job_id)
    async with transaction(services.pool) as cur:
        video = await video_rows.get_video(cur, video_id)
        if video is None:
            raise JobNotFound()
        if not await video_rows.mark_failed(cur, video_id, CANCELLED_REASON):
            raise JobConflict(f"The video is {video.status}: no job to cancel.")
        await audit.record(cur, actor, "job.cancel", "job", video_id, video.title, {"status": video.status})
        # Before the commit: if Redis refuses, nothing changes and the entry goes too.
        await progress.request_cancel(services.redis, video_id)
        await queue.remove_video(services.redis, video_id)
    await lifecycle.video_changed(services, video_id, video.owner_id)
    log.info("job of video %s (%s) cancelled by %s (%s)", video_id, video.status, actor.email, actor.address)
    return {"video_id": video_id, "status": "failed", "error": CANCELLED_REASON}


async def discard(services: Services, actor: Actor, job_id: str) -> None:
    """Delete a dead letter (its video stays as it is, `failed`). JobNotFound, JobConflict."""
    if not is_dead_letter_id(job_id):
        raise JobConflict("Only a dead letter can be discarded: cancel a live job instead.")
    letter = await queue_view.get_dead_letter(services.redis, job_id)
    if letter is None:
        raise JobNotFound()
    async with transaction(services.pool) as cur:
        await audit.record(
            cur,
            actor,
            "job.discard",
            "job",
            job_id,
            "",
            {"video_id": letter.video_id, "reason": letter.reason, "deliveries": letter.deliveries},
        )
        if not await queue_view.discard_dead_letters(services.redis, [job_id]):
            raise JobNotFound()  # discarded meanwhile: roll the entry back
    log.info("dead letter %s discarded by %s (%s)", job_id, actor.email, actor.address)


def parse_job_id(raw: str) -> str:
    """A job id from the command line; QueryError when it is none."""
    if not re.fullmatch(JOB_ID_PATTERN, raw):
        raise queries.QueryError({"job": ["A video id (e.g. 12) or a dead letter id (e.g. 1733580000000-0)."]})
    return raw
