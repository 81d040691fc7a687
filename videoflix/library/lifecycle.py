"""A video's lifecycle: create it from an upload, delete it, run it again, and
"a video changed" (which drops what is cached about it).

`create_from_upload` is the one upload use case: validate -> probe -> move ->
enqueue, raising InvalidUpload / UploadRejected for the handler to map.

Handlers call these; app.py subscribes `job_finished` to the transcode runner's
outcomes. Listing and the JSON shape are catalog.py's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from videoflix.delivery import playback
from videoflix.library import catalog, uploads
from videoflix.library.uploads import FIELD_LIMITS, UploadError, UploadReceiver
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.services import Services
from videoflix.platform.storage import StorageError
from videoflix.tables import users
from videoflix.tables import videos as video_rows
from videoflix.tables.videos import Video
from videoflix.transcode import notify, progress, queue
from videoflix.transcode.limits import caps_from_config
from videoflix.transcode.probe import Probe, ProbeError, probe_file
from videoflix.transcode.runner import JobOutcome

log = logging.getLogger(__name__)


class VideoBusy(Exception):
    """The video is queued or processing: it cannot be re-run now."""


class InvalidUpload(Exception):
    """Field errors of an upload: {field: [message, ...]} (or {"detail": message})."""

    def __init__(self, errors: dict[str, list[str]] | dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


class UploadRejected(Exception):
    """The upload cannot become a video; str() says why."""


class QuotaExceeded(Exception):
    """An upload past the owner's quota: `status` 429 (videos waiting to be transcoded)
    or 413 (bytes stored), `detail` says which and how much."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"


async def check_quota(
    config: Config, services: Services, owner_id: int, is_admin: bool, incoming_bytes: int, cur: object | None = None
) -> None:
    """QuotaExceeded when one more upload of `incoming_bytes` would take the owner past
    VIDEOFLIX_MAX_QUEUED_PER_USER videos waiting to be transcoded or past
    VIDEOFLIX_MAX_USER_BYTES of sources stored (0: no limit). Admins have none."""
    if is_admin:
        return
    if cur is None:
        async with cursor(services.pool) as own:
            unfinished, stored = await video_rows.usage(own, owner_id)
    else:
        unfinished, stored = await video_rows.usage(cur, owner_id)
    if config.max_queued_per_user and unfinished >= config.max_queued_per_user:
        raise QuotaExceeded(
            429,
            f"You have {unfinished} videos waiting to be transcoded (at most "
            f"{config.max_queued_per_user}): upload more once they are ready.",
        )
    if config.max_user_bytes and stored + incoming_bytes > config.max_user_bytes:
        raise QuotaExceeded(
            413,
            f"This upload would pass your storage quota of {_gib(config.max_user_bytes)} "
            f"({_gib(stored)} used): delete videos to make room.",
        )


async def video_changed(services: Services, video_id: int, owner_id: int) -> None:
    """Call after any change to a video (state, visibility, renditions, deletion):
    drops its cached catalog scopes and its cached playback row."""
    playback.forget_video(services, video_id)
    await catalog.forget_scopes(services, owner_id)
    await services.redis.publish(notify.CHANNEL, notify.changed_message(video_id, owner_id))


async def job_finished(services: Services, outcome: JobOutcome) -> None:
    """The transcode runner's outcome subscriber (app.make_runner): a job that changed
    a video's row (ready, failed) changed the video."""
    if outcome.owner_id is not None:
        await video_changed(services, outcome.video_id, outcome.owner_id)


def check_upload_fields(fields: dict[str, str], is_admin: bool, allow_public: bool) -> tuple[dict[str, str], str]:
    """Validated title/description/category and the visibility to store (the
    publish rule: only admins publish to everyone, unless the server allows it)."""
    clean = {name: fields.get(name, "").strip() for name in ("title", "description", "category")}
    errors: dict[str, list[str]] = {}
    if not clean["title"]:
        errors["title"] = ["This field is required."]
    for name in ("title", "description", "category"):
        limit = FIELD_LIMITS[name]
        if len(clean[name]) > limit:
            errors[name] = [f"Ensure this field has no more than {limit} characters."]
    requested = fields.get("visibility", "").strip().lower()
    if requested and requested not in ("public", "private"):
        errors["visibility"] = ['Must be "public" or "private".']
    elif requested == "public" and not (is_admin or allow_public):
        errors["visibility"] = ["Only admins can publish videos to everyone on this server."]
    if errors:
        raise InvalidUpload(errors)
    visibility = requested or ("public" if is_admin else "private")
    return clean, visibility


# What PATCH /api/video/<id>/ may change (API.md §6).
EDITABLE_FIELDS = ("title", "description", "category", "visibility")


def check_changes(body: dict[str, Any], is_admin: bool, allow_public: bool) -> dict[str, str]:
    """The changes of a PATCH, checked by the upload's own rules (check_upload_fields):
    only the fields sent, each a string; InvalidUpload otherwise."""
    given = {name: body[name] for name in EDITABLE_FIELDS if name in body}
    errors: dict[str, list[str]] = {
        name: ["Not a valid string."] for name, value in given.items() if not isinstance(value, str)
    }
    if "visibility" in given and not errors.get("visibility") and not given["visibility"].strip():
        errors["visibility"] = ['Must be "public" or "private".']
    if errors:
        raise InvalidUpload(errors)
    if not given:
        raise InvalidUpload({"detail": "Nothing to change: send title, description, category or visibility."})
    # Fields not sent are stood in for by valid values, so only the sent ones can fail.
    clean, visibility = check_upload_fields({"title": "-", **given}, is_admin, allow_public)
    changes: dict[str, str] = {name: clean[name] for name in ("title", "description", "category") if name in given}
    if "visibility" in given:
        changes["visibility"] = visibility
    return changes


async def update_video(
    services: Services, video_id: int, user_id: int, is_admin: bool, changes: dict[str, str]
) -> Video:
    """Apply checked changes (check_changes) for the owner or an admin; returns the
    updated row; media.VideoNotFound otherwise."""
    async with transaction(services.pool) as cur:
        video = await video_rows.get_video(cur, video_id)
        if video is None or not media.can_manage(video, user_id, is_admin):
            raise media.VideoNotFound()
        updated = await video_rows.update_fields(cur, video_id, changes)
    if updated is None:
        raise media.VideoNotFound()
    await video_changed(services, video_id, updated.owner_id)
    log.info("video %s edited by user %s (%s)", video_id, user_id, ", ".join(sorted(changes)))
    return updated


async def create_from_upload(
    config: Config,
    services: Services,
    upload: UploadReceiver,
    owner_id: int,
    is_admin: bool,
    client_gone: Callable[[], bool],
) -> Video:
    """A received upload becomes a queued video: validate -> probe -> quota -> move -> enqueue.

    Returns the row as queued. InvalidUpload / UploadRejected / QuotaExceeded when it
    cannot be; on any failure the received file is removed.
    """
    try:
        if not upload.has_file:
            raise InvalidUpload({"file": ["No file was submitted."]})
        fields, visibility = check_upload_fields(upload.fields(), is_admin, config.allow_public_user_uploads)
        try:
            probe = await probe_file(upload.temp_path, caps=caps_from_config(config))
        except ProbeError as exc:
            raise UploadRejected(str(exc)) from None
        if client_gone():
            raise UploadRejected("Client went away.")
        return await _store(config, services, upload, owner_id, is_admin, fields, visibility, probe)
    except UploadError as exc:
        upload.discard()
        raise UploadRejected(str(exc)) from None
    except BaseException:
        upload.discard()
        raise


class ReceivedFile(Protocol):
    """A whole upload on disk: the multipart one (UploadReceiver) or a resumable one."""

    @property
    def temp_path(self) -> Path: ...
    @property
    def size(self) -> int: ...
    @property
    def filename(self) -> str: ...


class StoreHooks(Protocol):
    """What a resumable upload adds to _store's transaction (library/resumable.py):
    `claim` runs first (it locks the upload's row and raises AlreadyStored when a video
    was made of it already), `bind` after the video row is inserted."""

    async def claim(self, cur: Any) -> None: ...
    async def bind(self, cur: Any, video_id: int) -> None: ...


class AlreadyStored(Exception):
    """The upload became a video before (finishing twice makes one video)."""

    def __init__(self, video_id: int | None) -> None:
        super().__init__(video_id)
        self.video_id = video_id


async def _insert_uploaded(
    config: Config,
    services: Services,
    cur: Any,
    upload: ReceivedFile,
    owner_id: int,
    is_admin: bool,
    fields: dict[str, str],
    visibility: str,
    probe: Probe,
    hooks: StoreHooks | None,
    video_id: int | None = None,
) -> Video:
    """In the upload's transaction: claim it (resumable), check the quota again with the
    real size and the owner's row locked (two uploads of one user finishing together cannot
    both pass it), insert the row (under `video_id` when the bucket already holds its
    source) and read it back before enqueueing (the answer says "queued" even if a consumer
    picks the job up at once)."""
    if hooks is not None:
        await hooks.claim(cur)
    await users.lock_user(cur, owner_id)
    await check_quota(config, services, owner_id, is_admin, upload.size, cur)
    made = await video_rows.insert_video(
        cur,
        owner_id=owner_id,
        title=fields["title"],
        description=fields["description"],
        category=fields["category"],
        visibility=visibility,
        status="queued",
        source_name=upload.filename,
        source_size=upload.size,
        duration=probe.duration,
        width=probe.width,
        height=probe.height,
        video_id=video_id,
    )
    video = await video_rows.get_video(cur, made)
    assert video is not None  # (read in the transaction that inserted it)
    return video


async def _store(
    config: Config,
    services: Services,
    upload: ReceivedFile,
    owner_id: int,
    is_admin: bool,
    fields: dict[str, str],
    visibility: str,
    probe: Probe,
    hooks: StoreHooks | None = None,
) -> Video:
    """Row + source file + queue entry, all in place before this returns (the job is durable).

    With `hooks` (a resumable upload) the file is hard-linked to the source inside the
    transaction and unlinked after it commits: a crash at any point leaves either the
    upload as it was (to finish again) or the video with its source, never neither.

    With a bucket (VIDEOFLIX_STORAGE=s3://...) the source goes up first: _store_in_bucket."""
    if not services.storage.is_local:
        return await _store_in_bucket(config, services, upload, owner_id, is_admin, fields, visibility, probe, hooks)
    loop = asyncio.get_running_loop()
    async with transaction(services.pool) as cur:
        video = await _insert_uploaded(
            config, services, cur, upload, owner_id, is_admin, fields, visibility, probe, hooks
        )
        video_id = video.id
        target = media.source_path(config.media_dir, video_id)
        if hooks is not None:
            await hooks.bind(cur, video_id)
            try:
                await loop.run_in_executor(services.file_executor, _link_into_place, upload.temp_path, target)
            except BaseException:
                await loop.run_in_executor(services.file_executor, _remove_files, config.media_dir, video_id)
                raise
    if hooks is not None:
        # Committed: the video exists with its source. Should the enqueue fail, the
        # queued row is enqueued again at start-up (the runner's reconcile), as a crash
        # here would leave it; the upload answers with this video from now on.
        await loop.run_in_executor(services.file_executor, _unlink_quietly, upload.temp_path)
        await queue.enqueue(services.redis, video_id, owner_id)
    try:
        if hooks is None:
            await loop.run_in_executor(services.file_executor, _move_into_place, upload.temp_path, target)
            await queue.enqueue(services.redis, video_id, owner_id)
    except BaseException:
        async with cursor(services.pool) as cur:
            await video_rows.delete_video(cur, video_id)
        await loop.run_in_executor(services.file_executor, _remove_files, config.media_dir, video_id)
        raise
    log.info("video %s uploaded by user %s (%s bytes), queued", video_id, owner_id, upload.size)
    return video


async def _store_in_bucket(
    config: Config,
    services: Services,
    upload: ReceivedFile,
    owner_id: int,
    is_admin: bool,
    fields: dict[str, str],
    visibility: str,
    probe: Probe,
    hooks: StoreHooks | None,
) -> Video:
    """_store with a bucket: the source is uploaded (S3 multipart: parts in parallel,
    retried, aborted on failure) as sources/<id> under an id taken from the sequence
    *before* the row exists, then the row is inserted with that id. So no row ever
    points at a source that is not in the bucket: a failed upload leaves no row (and
    no part: s3store aborts it), a failed transaction removes the object, and a crash
    in between leaves at most an object without a row. A multipart upload's scratch
    file is consumed by the upload; a resumable one's is unlinked after the commit,
    as on disk (until then the upload can be finished again).
    StorageError (the store is down) reaches the handler: 503."""
    loop = asyncio.get_running_loop()
    # Refused before gigabytes go up (and again under the owner's lock below).
    await check_quota(config, services, owner_id, is_admin, upload.size)
    async with cursor(services.pool) as cur:
        video_id = await video_rows.next_video_id(cur)
    target = media.source_path(config.media_dir, video_id)
    started = time.monotonic()
    try:
        await services.storage.put_file(target, upload.temp_path, move=hooks is None)
    finally:
        if hooks is None:
            uploads.forget_upload(upload.temp_path)
    log.info(
        "video %s: source (%s bytes) stored in the bucket in %.1f s", video_id, upload.size, time.monotonic() - started
    )
    try:
        async with transaction(services.pool) as cur:
            video = await _insert_uploaded(
                config, services, cur, upload, owner_id, is_admin, fields, visibility, probe, hooks, video_id
            )
            if hooks is not None:
                await hooks.bind(cur, video_id)
    except BaseException:
        await _delete_objects_quietly(services, video_id, target)
        raise
    if hooks is not None:
        await loop.run_in_executor(services.file_executor, _unlink_quietly, upload.temp_path)
        await queue.enqueue(services.redis, video_id, owner_id)  # (else: the runner's reconcile)
    else:
        try:
            await queue.enqueue(services.redis, video_id, owner_id)
        except BaseException:
            async with cursor(services.pool) as cur:
                await video_rows.delete_video(cur, video_id)
            await _delete_objects_quietly(services, video_id, target)
            raise
    log.info("video %s uploaded by user %s (%s bytes), queued", video_id, owner_id, upload.size)
    return video


async def _delete_objects_quietly(services: Services, video_id: int, source: Path) -> None:
    """A source uploaded for a row that was not made (or was taken back): removed, or
    logged when the store refuses (an object without a row serves nobody)."""
    try:
        await services.storage.delete(source)
    except StorageError as exc:
        log.warning("video %s: its source could not be removed from the bucket: %s", video_id, exc)


def _move_into_place(temp_path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp_path.rename(target)
    uploads.forget_upload(temp_path)


def _link_into_place(temp_path: Path, target: Path) -> None:
    """The source as a second name of the upload's file, durable before the commit."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(temp_path, target)
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _unlink_quietly(path: Path) -> None:
    path.unlink(missing_ok=True)


def _remove_files(media_dir: str, video_id: int) -> None:
    shutil.rmtree(media.video_dir(media_dir, video_id), ignore_errors=True)
    media.source_path(media_dir, video_id).unlink(missing_ok=True)
    work = media.work_dir(media_dir)
    if work.is_dir():
        for leftover in work.glob(f"{int(video_id)}-*"):  # lease fences (media.lease_fence)
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


async def create_from_resumable(
    config: Config,
    services: Services,
    upload: ReceivedFile,
    fields: dict[str, str],
    owner_id: int,
    is_admin: bool,
    hooks: StoreHooks,
) -> Video:
    """A whole resumable upload becomes a queued video the way a multipart one does
    (create_from_upload): the same field rules, probe, caps, quotas and row; `hooks`
    make it happen once. InvalidUpload / UploadRejected / QuotaExceeded when it cannot
    be; AlreadyStored when it was. The file is left to the caller on failure."""
    clean, visibility = check_upload_fields(fields, is_admin, config.allow_public_user_uploads)
    try:
        probe = await probe_file(upload.temp_path, caps=caps_from_config(config))
    except ProbeError as exc:
        raise UploadRejected(str(exc)) from None
    return await _store(config, services, upload, owner_id, is_admin, clean, visibility, probe, hooks)


async def delete_video(config: Config, services: Services, video_id: int, user_id: int, is_admin: bool) -> None:
    """Row, queue entries, source, renditions and pictures; a running job is told to stop."""
    async with transaction(services.pool) as cur:
        video = await video_rows.get_video(cur, video_id)
        if video is None or not media.can_manage(video, user_id, is_admin):
            raise media.VideoNotFound()
        if not services.storage.is_local:
            await services.storage.list_tree(media.video_dir(config.media_dir, video_id))  # store down: 503 here
        if not await video_rows.delete_video(cur, video_id):
            raise media.VideoNotFound()
    await remove_deleted(config, services, video_id, video.owner_id)
    log.info("video %s deleted by user %s", video_id, user_id)


async def remove_deleted(config: Config, services: Services, video_id: int, owner_id: int) -> None:
    """After a video's row was deleted (committed): its queue entries, its source,
    versions, images and subtitles (on disk, and with a bucket its objects and this
    host's scratch), and what is cached about it."""
    # The running child polls this flag and kills ffmpeg; the runner also
    # discards any output whose row is gone.
    await progress.request_cancel(services.redis, video_id)
    await queue.remove_video(services.redis, video_id)
    await asyncio.get_running_loop().run_in_executor(services.file_executor, _remove_files, config.media_dir, video_id)
    if not services.storage.is_local:
        try:
            await remove_objects(config, services, video_id)
        except StorageError as exc:
            # The row is gone (nothing serves these any more); the store failed between the
            # listing before the delete (which answers 503 while it is down) and now.
            log.warning("video %s: objects left in the bucket (the store failed): %s", video_id, exc)
    await video_changed(services, video_id, owner_id)


async def remove_objects(config: Config, services: Services, video_id: int) -> int:
    """Every object of a video in the store: media/<id>/ (versions, images, subtitles)
    and its source. How many there were."""
    removed = await services.storage.delete_tree(media.video_dir(config.media_dir, video_id))
    source = media.source_path(config.media_dir, video_id)
    if await services.storage.head(source) is not None:
        await services.storage.delete(source)
        removed += 1
    return removed


async def count_files(config: Config, services: Services, video_ids: list[int]) -> int:
    """The stored files (objects) of these videos: media/<id>/ and the sources. With a
    bucket this also proves the store answers before anything is deleted (StorageError:
    503, nothing changed)."""
    if services.storage.is_local:
        return await asyncio.get_running_loop().run_in_executor(
            services.file_executor, _count_files, config.media_dir, video_ids
        )
    count = 0
    for video_id in video_ids:
        count += len(await services.storage.list_tree(media.video_dir(config.media_dir, video_id)))
        if await services.storage.head(media.source_path(config.media_dir, video_id)) is not None:
            count += 1
    return count


def _count_files(media_dir: str, video_ids: list[int]) -> int:
    """Files on disk of these videos (executor only)."""
    count = 0
    for video_id in video_ids:
        folder = media.video_dir(media_dir, video_id)
        if folder.is_dir():
            count += sum(1 for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
        source: Path = media.source_path(media_dir, video_id)
        if source.is_file():
            count += 1
    return count


async def retranscode(
    config: Config,
    services: Services,
    video_id: int,
    before_commit: Callable[[Any, Video], Awaitable[None]] | None = None,
) -> Video:
    """Queue a ready or failed video again; returns the row as queued.
    `before_commit(cur, video as it was)` runs inside the transaction that queues it
    (the console writes its audit entry there, or refuses by raising)."""
    async with transaction(services.pool) as cur:
        video = await video_rows.get_video(cur, video_id)
        if video is None:
            raise media.VideoNotFound()
        if not await video_rows.mark_queued(cur, video_id):
            raise VideoBusy()
        if before_commit is not None:
            await before_commit(cur, video)
        queued = await video_rows.get_video(cur, video_id)
    assert queued is not None  # (read in the transaction that marked it)
    await progress.reset(services.redis, video_id)
    await queue.enqueue(services.redis, video_id, video.owner_id)
    await video_changed(services, video_id, video.owner_id)
    log.info("video %s queued again", video_id)
    return queued
