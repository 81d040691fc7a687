"""Moving wave-1 videos into a version folder, once, at start-up.

Videos made ready before versions existed have live_version 0 (sql/004) and their
files directly in media/<id>/ (media.WAVE1_FILE_NAMES and a folder per rendition).
Nothing serves that layout: `move_wave1_videos` (app.serve, before the transcode
consumer starts, so `videoflix worker` too) gives each such video a version made of
the same files, as if a transcode run had written it. For each video, in this order:

1. build media/<id>/.wave1-move-<tag>/ from hard links to its files (copies where the
   file system has none), and the ladder.json every version has, derived from the
   wave-1 master playlist (`wave1_ladder`): the master is rendered from it;
2. take the next version number N as a transcode run takes one (no run can be given
   it), and rename the folder to v<N>: one rename, so v<N> is whole or absent;
3. one UPDATE makes N live where the row still says 0 (the switch);
4. remove the wave-1 names (and any folder a killed move left).

A player sees the old video or the new one, never half of one: until 3 the row says
0 and the old files are untouched; from 3 on v<N> is whole and holds the very same
files (same inodes: same ETags) behind the same unversioned URLs, which the wave-1
master lists. Every step may be killed: a move folder is never renamed by another
run (each run builds its own); a v<N> left unpublished is older than the version
the next run publishes, so the sweeper removes it like any replaced version; names
left after 3 are found by the next start's scan (`wave1_leftovers`) and removed.
Two processes starting together may both build a folder for one video; one UPDATE
wins, the other removes its own. Each move is logged.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from videoflix.library import lifecycle
from videoflix.platform import db, media
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.tables import videos
from videoflix.transcode import ladderfile
from videoflix.transcode.playlist import PlaylistError, Variant, parse_media_playlist
from videoflix.transcode.probe import first_video_pts

log = logging.getLogger(__name__)

# Where os.link cannot work the files are copied: another file system below media/<id>/
# (EXDEV), or one without hard links (EPERM, ENOTSUP, EMLINK: FUSE, some NAS mounts).
COPY_ERRNOS = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK})
_STREAM_INF = "#EXT-X-STREAM-INF:"
# RFC 8216 §4.2 attribute lists: NAME=value, a quoted-string value may hold commas.
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",\r\n]*)')


# --- the ladder of a wave-1 video (pure) -----------------------------------------------


def wave1_variants(master: str) -> list[Variant]:
    """The variants a wave-1 master playlist lists (it was written by
    playlist.master_playlist, so every attribute is there); one without a bandwidth,
    size or codecs, or not naming a rendition's playlist, is left out."""
    variants = []
    lines = [line.strip() for line in master.splitlines()]
    for line, uri in itertools.pairwise(lines):
        if not line.startswith(_STREAM_INF):
            continue
        attributes = {name: value.strip('"') for name, value in _ATTRIBUTE.findall(line[len(_STREAM_INF) :])}
        name, _, rest = uri.partition("/")
        try:
            width, height = (int(side) for side in attributes["RESOLUTION"].split("x"))
            peak = int(attributes["BANDWIDTH"])
            variant = Variant(
                name=name,
                width=width,
                height=height,
                fps=float(attributes.get("FRAME-RATE", 0)),
                codecs=attributes["CODECS"],
                peak_bps=peak,
                average_bps=int(attributes.get("AVERAGE-BANDWIDTH", peak)),
            )
        except (KeyError, ValueError):
            continue
        if name in media.RESOLUTIONS and rest == media.MEDIA_PLAYLIST_NAME:
            variants.append(variant)
    return variants


def wave1_ladder(master: str, playlist: str, start_pts: int | None) -> dict[str, Any] | None:
    """The ladder.json of a wave-1 video: its master's variants (rendered back, the
    same master but for the version prefix), the duration and segment length of one
    of its media playlists (`playlist`), the first video PTS of its first segment
    (subtitle segments are timed against it). None when the master lists no variant."""
    variants = wave1_variants(master)
    if not variants:
        return None
    try:
        target, entries = parse_media_playlist(playlist)
    except (PlaylistError, ValueError):
        return None
    return ladderfile.make_ladder(
        variants,
        complete=True,
        duration=sum(seconds for _, seconds in entries),
        segment_seconds=target,
        start_pts=start_pts,
    )


# --- files (blocking: the file executor) -------------------------------------------------


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in COPY_ERRNOS:
            raise
        shutil.copy2(source, target, follow_symlinks=False)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _is_real_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def read_ladder_of(folder: Path) -> dict[str, Any] | None:
    """wave1_ladder of the wave-1 files in `folder` (or in the move folder made of them)."""
    try:
        master = (folder / media.MASTER_PLAYLIST_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    variants = wave1_variants(master)
    if not variants:
        return None
    # The lowest rendition's first segment, as a transcode run measures it (job.py).
    lowest = min(variants, key=lambda variant: min(variant.width, variant.height))
    try:
        playlist = (folder / lowest.name / media.MEDIA_PLAYLIST_NAME).read_text(encoding="utf-8")
        first = parse_media_playlist(playlist)[1][0][0]
    except (OSError, UnicodeDecodeError, PlaylistError, ValueError):
        return None
    segment = folder / lowest.name / first
    # ffprobe in this executor thread: start-up work, the loop is not waiting on it.
    start_pts = first_video_pts(segment) if media.is_segment_name(first) and _is_real_file(segment) else None
    return wave1_ladder(master, playlist, start_pts)


def build_move_folder(media_dir: str, video_id: int, folder: Path) -> None:
    """Step 1: `folder` (media/<id>/.wave1-move-<tag>/), the wave-1 files linked in as a
    version holds them, and its ladder.json. Symlinks are left out: they were never
    served (mediafiles.open_inside follows none below media/<id>/)."""
    base = media.video_dir(media_dir, video_id)
    folder.mkdir(parents=True)
    for name in (media.POSTER_NAME, media.THUMBNAIL_NAME):
        if _is_real_file(base / name):
            _link(base / name, folder / name)
    for rendition in media.RESOLUTIONS:
        if not _is_real_dir(base / rendition):
            continue
        (folder / rendition).mkdir()
        for entry in os.scandir(base / rendition):
            if entry.is_file(follow_symlinks=False):
                _link(Path(entry.path), folder / rendition / entry.name)
    # The master playlist itself is not kept: a version's is rendered from ladder.json.
    ladder = read_ladder_of(base)
    if ladder is not None:
        ladderfile.write_ladder(folder / media.LADDER_NAME, ladder)
    elif (base / media.MASTER_PLAYLIST_NAME).exists():
        log.warning("video %s: no usable wave-1 master playlist; its master answers 404, as it did", video_id)


def place_move_folder(folder: Path, media_dir: str, video_id: int, version: int) -> None:
    """Step 2's rename: the whole folder becomes v<N> at once."""
    os.rename(folder, media.version_dir(media_dir, video_id, version))


def remove_tree(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def remove_wave1_names(media_dir: str, video_id: int) -> list[str]:
    """Step 4: every wave-1 name left in media/<id>/, move folders included (one being
    built by another process fails, and that process finds the video moved); what was
    removed."""
    base = media.video_dir(media_dir, video_id)
    try:
        names = sorted(name for name in os.listdir(base) if media.is_wave1_name(name))
    except FileNotFoundError:
        return []
    for name in names:
        remove_tree(base / name)
    return names


def wave1_leftovers(media_dir: str) -> list[int]:
    """Ids of the video folders that still hold a wave-1 name (one scan of MEDIA_DIR)."""
    found = []
    try:
        entries = list(os.scandir(media_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        video_id = media.parse_video_id(entry.name)
        if video_id is None or not entry.is_dir(follow_symlinks=True):
            continue
        try:
            if any(media.is_wave1_name(name) for name in os.listdir(entry.path)):
                found.append(video_id)
        except OSError:
            continue
    return sorted(found)


# --- the moves ---------------------------------------------------------------------------


async def _still_wave1(services: Services, video_id: int) -> bool:
    async with db.cursor(services.pool) as cur:
        row = (await videos.version_states(cur, [video_id])).get(video_id)
    return row is not None and row.live_version == media.WAVE1_VERSION


async def move_video(config: Config, services: Services, video_id: int) -> int | None:
    """Steps 1-4 for one row at version 0; the version it now has, or None when
    another process moved it first or it was deleted meanwhile."""
    loop = asyncio.get_running_loop()
    executor = services.file_executor
    folder = media.wave1_move_dir(config.media_dir, video_id, secrets.token_hex(6))
    try:
        await loop.run_in_executor(executor, build_move_folder, config.media_dir, video_id, folder)
        async with db.cursor(services.pool) as cur:
            version = await videos.allocate_wave1_version(cur, video_id)
        if version is not None:
            await loop.run_in_executor(executor, place_move_folder, folder, config.media_dir, video_id, version)
    except OSError:
        # Files going under us: another process moved this video (and removed the
        # wave-1 names) or deleted it. Anything else is a fault: start-up stops.
        if await _still_wave1(services, video_id):
            raise
        version = None
    if version is None:
        await loop.run_in_executor(executor, remove_tree, folder)
        return None
    async with db.cursor(services.pool) as cur:
        owner_id = await videos.publish_wave1_version(cur, video_id, version)
    if owner_id is None:
        await loop.run_in_executor(executor, remove_tree, media.version_dir(config.media_dir, video_id, version))
        return None
    await lifecycle.video_changed(services, video_id, owner_id)
    await loop.run_in_executor(executor, remove_wave1_names, config.media_dir, video_id)
    log.info(
        "video %s: moved from the wave-1 layout (version 0) to %s",
        video_id,
        media.version_dir(config.media_dir, video_id, version),
    )
    return version


async def move_wave1_videos(config: Config, services: Services) -> dict[int, int]:
    """Every row at version 0 moved (steps 1-4), then what killed moves left behind
    removed; {video id: its version now} of the rows moved here.

    A local-disk migration: with a bucket (VIDEOFLIX_STORAGE=s3://...) MEDIA_DIR is this
    host's scratch and holds no library, so nothing is done (a library still in the
    wave-1 layout is moved by one start on the local store before `videoflix storage
    copy` takes it to the bucket)."""
    if not services.storage.is_local:
        return {}
    loop = asyncio.get_running_loop()
    async with db.cursor(services.pool) as cur:
        waiting = await videos.wave1_video_ids(cur)
    moved = {}
    for video_id in waiting:
        version = await move_video(config, services, video_id)
        if version is not None:
            moved[video_id] = version
    left = await loop.run_in_executor(services.file_executor, wave1_leftovers, config.media_dir)
    if left:
        async with db.cursor(services.pool) as cur:
            rows = await videos.version_states(cur, left)
        for video_id in left:
            row = rows.get(video_id)
            if row is None or row.live_version == media.WAVE1_VERSION:
                continue  # deleted (its folder goes with it), or still to move (another process's)
            names = await loop.run_in_executor(services.file_executor, remove_wave1_names, config.media_dir, video_id)
            if names:
                log.info(
                    "video %s: removed %s, left by an interrupted move from the wave-1 layout",
                    video_id,
                    ", ".join(names),
                )
    return moved
