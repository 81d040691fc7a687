"""Removing what crashed runs leave in MEDIA_DIR, at start-up and periodically.

- media/.incoming/*.part: an upload whose process died (a live upload that sends
  nothing for upload_idle_seconds is cut off anyway): removed once unchanged for
  upload_idle_seconds, unless this process is receiving it. Whichever process
  receives an upload writes what arrived at least every uploads.LIVENESS_WRITE_SECONDS,
  so a live upload's file is never that old, even a trickle received by another
  process on the same media directory.
- media/.resumable/<upload id>: a resumable upload's file, once it expired (no
  progress for VIDEOFLIX_UPLOAD_EXPIRY_SECONDS), became a video, or has no row
  (library/resumable.sweep; the row goes with it).
- media/.work/<id>-v<N>.lease (and anything else there, e.g. wave-1 work folders):
  the fence of a run that died: removed once unchanged for the lease (a live run's
  keeper rewrites it every third of the lease, wherever it runs), unless this
  process runs it.
- media/<id>/v<N>/ that is neither the row's live nor its building version:
  - older than the live version (it was live, or a run before it): removed
    VIDEOFLIX_VERSION_GRACE_SECONDS after the live version was published, so a
    player that loaded it before the switch plays on meanwhile;
  - newer (a run that died or was superseded, never published): removed once
    unchanged for the lease.
  Folders are listed before the rows are read: a version allocated after the read
  cannot have a folder in the listing. (The wave-1 layout is not a version:
  library/version_zero.py moves and removes it at start-up.)

With object storage (VIDEOFLIX_STORAGE=s3://..., issue 21) MEDIA_DIR is this host's scratch
and the bucket holds the versions:
- scratch media/<id>/v<N>/ (a run's working copy, removed by the runner when it ends) is
  removed once neither this process runs it nor its fence was renewed within the lease
  and nothing in it changed for the lease (a run that died, or a crash after publishing);
- in the bucket, <id>/v<N>/ that is neither the row's live nor its building version goes
  by the rules above, "unchanged" read from the objects' LastModified (a prefix without
  ladder.json is a run in progress or a dead run's leftovers: never published). The rows
  are read first: version numbers only grow, so a version allocated after the read is
  above every candidate. Prefixes found empty are remembered, not listed again.

Each removal is logged with what it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from videoflix.delivery import storefiles
from videoflix.library import resumable, uploads
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.db import cursor
from videoflix.platform.services import Services
from videoflix.platform.storage import StorageError, media_key
from videoflix.tables import videos
from videoflix.tables.videos import VersionState

if TYPE_CHECKING:  # the S3 client is imported only with a bucket (services.open_storage)
    from videoflix.platform.s3store import S3Storage

log = logging.getLogger(__name__)

# Never sweep more often than this.
MIN_INTERVAL_SECONDS = 1.0
_VIDEO_DIR = re.compile(media.VIDEO_ID_PATTERN)


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


def _tree_age(path: Path, now: float) -> float:
    """Seconds since anything directly in `path` or its subfolders last changed."""
    try:
        newest = max(
            [path.lstat().st_mtime]
            + [child.lstat().st_mtime for child in path.iterdir() if child.is_dir() and not child.is_symlink()]
        )
    except FileNotFoundError:
        return -1.0
    return now - newest


def list_versions(media_dir: str) -> dict[int, list[int]]:
    """{video id: [version folders]} under MEDIA_DIR (blocking)."""
    root = Path(media_dir)
    found: dict[int, list[int]] = {}
    if not root.is_dir():
        return found
    for video in root.iterdir():
        if not _VIDEO_DIR.fullmatch(video.name) or not video.is_dir() or video.is_symlink():
            continue
        versions = []
        for child in video.iterdir():
            version = media.parse_version(child.name)
            if version is not None and child.is_dir() and not child.is_symlink():
                versions.append(version)
        found[int(video.name)] = sorted(versions)
    return found


def sweep_versions(
    media_dir: str,
    found: dict[int, list[int]],
    rows: dict[int, VersionState],
    grace_seconds: float,
    lease_seconds: float,
) -> list[str]:
    """Remove the versions `rows` (videos.version_states, read after `found` was listed)
    no longer need; return what was removed (blocking)."""
    removed = []
    now = time.time()
    for video_id, versions in found.items():
        row = rows.get(video_id)
        if row is None:
            continue  # deleted: videos.delete_video removes its folder
        live, building = row.live_version, row.building_version
        since = row.live_since.timestamp() if row.live_since is not None else None
        for version in versions:
            if version in (live, building):
                continue
            folder = media.version_dir(media_dir, video_id, version)
            if live is not None and version < live:
                if since is None or now - since < grace_seconds:
                    continue
            elif _tree_age(folder, now) < lease_seconds:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def sweep_scratch_versions(
    media_dir: str, found: dict[int, list[int]], lease_seconds: float, keep: Callable[[str], bool]
) -> list[str]:
    """With object storage: remove scratch version folders no run uses any more (blocking).
    `keep` claims this process's runs ("<id>-v<N>", as active_work names them)."""
    removed = []
    now = time.time()
    for video_id, versions in found.items():
        for version in versions:
            if keep(f"{video_id}-{media.version_name(version)}"):
                continue
            fence = media.lease_fence(media_dir, video_id, version)
            if 0 <= _age(fence, now) < lease_seconds:
                continue  # another process on this host runs it (its keeper renews the fence)
            folder = media.version_dir(media_dir, video_id, version)
            if _tree_age(folder, now) < lease_seconds:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # media/<id>/ goes when nothing else is in it
                folder.parent.rmdir()
            removed.append(str(folder))
    return removed


def stored_candidates(state: VersionState, version_seq: int) -> list[int]:
    """The versions of a row that may be in the bucket and are neither live nor building (pure)."""
    return [v for v in range(1, version_seq + 1) if v not in (state.live_version, state.building_version)]


class Sweeper:
    """Runs `sweep` once now and then every `interval` seconds until stopped."""

    def __init__(self, config: Config, services: Services, active_work: Callable[[], set[str]]) -> None:
        self.config = config
        self.services = services
        self.active_work = active_work
        self.interval = max(MIN_INTERVAL_SECONDS, min(config.upload_idle_seconds, config.transcode_lease_seconds) / 2)
        self._task: asyncio.Task[Any] | None = None
        # Version prefixes of the bucket found empty (or emptied): {video id: versions}.
        self._gone: dict[int, set[int]] = {}

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
        removed = await loop.run_in_executor(
            executor, sweep_incoming, config.media_dir, float(config.upload_idle_seconds), uploads.live_uploads()
        )
        for name in removed:
            log.warning(
                "sweep: removed %s, an upload nobody is receiving (idle over %ss)",
                media.incoming_dir(config.media_dir) / name,
                config.upload_idle_seconds,
            )
        active = self.active_work()
        swept = await loop.run_in_executor(
            executor, sweep_work, config.media_dir, float(config.transcode_lease_seconds), active.__contains__
        )
        for name in swept:
            log.warning(
                "sweep: removed %s, left by a transcode run that is no longer alive",
                media.work_dir(config.media_dir) / name,
            )
        # Resumable uploads wait for their client until they expire (library/resumable.py).
        gone = await resumable.sweep(config, self.services)
        return removed + swept + gone + await self.sweep_versions()

    async def sweep_versions(self) -> list[str]:
        storage = self.services.storage
        if not storage.is_local:
            return await self.sweep_scratch() + await self.sweep_stored_versions(cast("S3Storage", storage))
        loop = asyncio.get_running_loop()
        executor = self.services.file_executor
        config = self.config
        found = await loop.run_in_executor(executor, list_versions, config.media_dir)
        candidates = [video_id for video_id, versions in found.items() if versions]
        if not candidates:
            return []
        async with cursor(self.services.pool) as cur:
            rows = await videos.version_states(cur, candidates)
        removed = await loop.run_in_executor(
            executor,
            sweep_versions,
            config.media_dir,
            found,
            rows,
            float(config.version_grace_seconds),
            float(config.transcode_lease_seconds),
        )
        for path in removed:
            log.warning("sweep: removed %s, a version neither live nor being built", path)
        return removed

    async def sweep_scratch(self) -> list[str]:
        loop = asyncio.get_running_loop()
        executor = self.services.file_executor
        config = self.config
        found = await loop.run_in_executor(executor, list_versions, config.media_dir)
        active = self.active_work()
        removed = await loop.run_in_executor(
            executor,
            sweep_scratch_versions,
            config.media_dir,
            found,
            float(config.transcode_lease_seconds),
            active.__contains__,
        )
        for path in removed:
            log.warning("sweep: removed %s, the scratch copy of a run that is no longer alive", path)
        return removed

    async def sweep_stored_versions(self, bucket: S3Storage) -> list[str]:
        """The bucket's version prefixes the rows no longer need (see the module's rules)."""
        config = self.config
        async with cursor(self.services.pool) as cur:
            rows = await videos.versioned_videos(cur)
        for video_id in set(self._gone) - set(rows):
            del self._gone[video_id]
        removed: list[str] = []
        now = time.time()
        for video_id, (state, version_seq) in rows.items():
            gone = self._gone.setdefault(video_id, set())
            live, since = state.live_version, state.live_since
            for version in stored_candidates(state, version_seq):
                if version in gone:
                    continue
                older = live is not None and version < live
                if older and (since is None or now - since.timestamp() < config.version_grace_seconds):
                    continue
                folder = media.version_dir(config.media_dir, video_id, version)
                try:
                    objects = await bucket.list_tree(folder)
                    if objects and not older and now - max(o.mtime for o in objects) < config.transcode_lease_seconds:
                        continue  # a run may still be writing it (it will not be published)
                    if objects:
                        await bucket.delete_keys([bucket.location.prefix + o.key for o in objects])
                except StorageError as exc:
                    log.warning("sweep: the store is unreachable (%s); trying again next round", exc)
                    return removed
                gone.add(version)
                if objects:
                    # This process's hot copies of it go now (other hosts' at their next check).
                    await storefiles.hot_cache(config, self.services).forget_below(
                        media_key(config.media_dir, folder) + "/"
                    )
                    removed.append(bucket.key(folder) + "/")
                    log.warning(
                        "sweep: removed %s from the store (%d objects), a version neither live nor being built",
                        bucket.key(folder) + "/",
                        len(objects),
                    )
        return removed
