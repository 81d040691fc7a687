"""A video's subtitles: add one from an upload, remove one, list them for the
detail, and import the text tracks a transcode extracted. Their HLS playlists and
segments are subtitle_hls.py's.

Parsing, checking and every file access run in `services.file_executor`; the
rules themselves are subtitle_formats.py's (pure). Files: media.subtitle_path (one per
language per video) and its cut (media.subtitle_cut_path): a track is parsed and cut
into segments once, when it is stored, so a segment request reads one small range
and parses nothing, however large the track and however many tracks are played
(a cut for another segment length, or one left stale by a replaced file, is made
once, on its first request). A change goes through a transaction that locks the
video's row, so two uploads of one video cannot interleave their label checks and files.
Limits: MAX_TRACKS_PER_VIDEO per video, subtitle_formats.MAX_FILE_BYTES per file and
MAX_CUT_BYTES per cut, SUBTITLE_UPLOADS_PER_HOUR per user (admins exempt).

With a bucket (VIDEOFLIX_STORAGE=s3://...) the same names are objects, read and written
whole (they are small) through services.storage, and a segment is three ranged reads of
its cut; a cut names its canonical file by size and ETag (stored_identity) instead of
size and mtime. The local store keeps the files and the executor, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from videoflix.accounts import throttle
from videoflix.library import subtitle_formats
from videoflix.platform import media, rediskeys
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.services import Services
from videoflix.platform.storage import ObjectInfo, StorageError
from videoflix.tables import subtitles as subtitle_rows
from videoflix.tables import videos as video_rows
from videoflix.transcode.command import TranscodeSettings
from videoflix.transcode.job import JobResult
from videoflix.transcode.subtracks import ExtractedTrack

log = logging.getLogger(__name__)

LABEL_TAKEN = "Another subtitle track of this video has this label."
# Tracks of one video, uploaded and imported together (a menu of 16 languages is
# plenty; each costs a file, a cut and a row): a new language past it is refused.
MAX_TRACKS_PER_VIDEO = 16
# Extracted tracks of one source that are imported at most (a file may carry dozens).
MAX_IMPORTED_TRACKS = MAX_TRACKS_PER_VIDEO
# Subtitle uploads one user may make per hour (each is a parse and a cut of up to
# 2 MiB: CPU); admins are not counted.
SUBTITLE_UPLOADS_PER_HOUR = 60
# The segment length tracks are cut for when stored: the transcoder's (a version made
# with another length gets its cut on first request).
DEFAULT_SEGMENT_MS = TranscodeSettings().segment_seconds * 1000


class InvalidSubtitle(Exception):
    """Field errors of a subtitle upload: {field: [message, ...]}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class SubtitleNotFound(Exception):
    """No subtitle of that language for this video (404)."""


class TooManyTracks(Exception):
    """The video has MAX_TRACKS_PER_VIDEO tracks already and this is a new language (409)."""


class UploadsThrottled(Exception):
    """The user made SUBTITLE_UPLOADS_PER_HOUR subtitle uploads this hour (429)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class CheckedUpload:
    language: str
    label: str  # given, or the language's name
    label_given: bool
    vtt: str
    cue_count: int
    cut: bytes  # subtitle_formats.cut_segments at DEFAULT_SEGMENT_MS, source identity unset


def check_upload(fields: dict[str, str], filename: str | None, data: bytes | None) -> CheckedUpload:
    """Validate a subtitle upload (blocking CPU: run in the executor); InvalidSubtitle."""
    errors: dict[str, list[str]] = {}
    language = ""
    raw_language = fields.get("language")
    if raw_language is None or not raw_language.strip():
        errors["language"] = ["This field is required."]
    else:
        try:
            language = subtitle_formats.check_language(raw_language)
        except subtitle_formats.SubtitleError as exc:
            errors["language"] = [str(exc)]
    label = None
    if "label" in fields and fields["label"].strip():
        try:
            label = subtitle_formats.clean_label(fields["label"])
        except subtitle_formats.SubtitleError as exc:
            errors["label"] = [str(exc)]
    cues: list[subtitle_formats.Cue] = []
    cut = b""
    if data is None or filename is None:
        errors["file"] = ["No file was submitted."]
    else:
        try:
            cues = subtitle_formats.parse_subtitles(data, subtitle_formats.file_kind(filename))
            cut = subtitle_formats.cut_segments(cues, DEFAULT_SEGMENT_MS, 0, 0)
        except subtitle_formats.SubtitleError as exc:
            errors["file"] = [str(exc)]
    if errors:
        raise InvalidSubtitle(errors)
    return CheckedUpload(
        language=language,
        label=label or subtitle_formats.default_label(language),
        label_given=label is not None,
        vtt=subtitle_formats.render_vtt(cues),
        cue_count=len(cues),
        cut=cut,
    )


def subtitle_url(config: Config, video_id: int, language: str) -> str:
    """Where the whole WebVTT file is served (GET), and what DELETE removes."""
    return f"{config.public_url}/api/video/{int(video_id)}/subtitles/{language}/"


def item(config: Config, row: dict[str, Any]) -> dict[str, Any]:
    """The detail's `subtitles` entry, and the upload's answer."""
    return {
        "language": row["language"],
        "label": row["label"],
        "url": subtitle_url(config, row["video_id"], row["language"]),
    }


async def list_items(config: Config, services: Services, video_id: int) -> list[dict[str, Any]]:
    async with cursor(services.pool) as cur:
        rows = await subtitle_rows.list_for_video(cur, video_id)
    return [item(config, row) for row in rows]


async def list_rows(services: Services, video_id: int) -> list[dict[str, Any]]:
    """The rows (language, label, ...) for the master playlist."""
    async with cursor(services.pool) as cur:
        return await subtitle_rows.list_for_video(cur, video_id)


# --- files (executor) -----------------------------------------------------------


def write_file(path: Path, data: bytes) -> os.stat_result:
    """Write atomically: a reader sees the old file or the new one, never half.
    Returns the new file's fstat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            info = os.fstat(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return info


def _store_track(media_dir: str, video_id: int, language: str, vtt: str, cut: bytes) -> None:
    """The canonical file, then its cut naming it (executor); older cuts go."""
    info = write_file(media.subtitle_path(media_dir, video_id, language), vtt.encode())
    for stale in _cut_paths(media_dir, video_id, language):
        stale.unlink(missing_ok=True)
    head = subtitle_formats.read_cut_head(cut[: subtitle_formats.CUT_HEAD_BYTES])
    write_file(
        media.subtitle_cut_path(media_dir, video_id, language, head.segment_ms),
        subtitle_formats.with_source(cut, info.st_size, info.st_mtime_ns),
    )


def _cut_paths(media_dir: str, video_id: int, language: str) -> list[Path]:
    folder = media.subtitles_dir(media_dir, video_id)
    try:
        return [folder / name for name in os.listdir(folder) if media.is_subtitle_cut_of(language, name)]
    except FileNotFoundError:
        return []


def _remove_track(media_dir: str, video_id: int, language: str) -> None:
    for path in _cut_paths(media_dir, video_id, language):
        path.unlink(missing_ok=True)
    media.subtitle_path(media_dir, video_id, language).unlink(missing_ok=True)


def read_file(path: Path) -> bytes | None:
    """A canonical file's bytes (our own serialization), None if there is none."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


async def in_executor(services: Services, function: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(services.file_executor, function, *args)


def stored_identity(info: ObjectInfo) -> tuple[int, int]:
    """What a cut records of its canonical object in a bucket (the local store records
    size and mtime_ns): its size and 63 bits of a hash of its ETag (a new PUT of other
    bytes has another ETag, whatever the store makes it of)."""
    return info.size, int.from_bytes(hashlib.sha256(info.etag.encode()).digest()[:8], "big") >> 1


async def _stored_cuts(config: Config, services: Services, video_id: int, language: str) -> list[Path]:
    folder = media.subtitles_dir(config.media_dir, video_id)
    return [
        Path(config.media_dir) / item.key
        for item in await services.storage.list_tree(folder)
        if media.is_subtitle_cut_of(language, PurePosixPath(item.key).name)
    ]


async def store_track(config: Config, services: Services, video_id: int, language: str, vtt: str, cut: bytes) -> None:
    """The canonical file, then its cut naming it; older cuts go (either store)."""
    if services.storage.is_local:
        await in_executor(services, _store_track, config.media_dir, video_id, language, vtt, cut)
        return
    source = media.subtitle_path(config.media_dir, video_id, language)
    await services.storage.write_bytes(source, vtt.encode())
    info = await services.storage.head(source)
    if info is None:
        raise StorageError(f"{source.name}: not found right after it was written")
    for stale in await _stored_cuts(config, services, video_id, language):
        await services.storage.delete(stale)
    head = subtitle_formats.read_cut_head(cut[: subtitle_formats.CUT_HEAD_BYTES])
    await services.storage.write_bytes(
        media.subtitle_cut_path(config.media_dir, video_id, language, head.segment_ms),
        subtitle_formats.with_source(cut, *stored_identity(info)),
    )


async def remove_track(config: Config, services: Services, video_id: int, language: str) -> None:
    """A language's canonical file and its cuts (either store)."""
    if services.storage.is_local:
        await in_executor(services, _remove_track, config.media_dir, video_id, language)
        return
    for path in await _stored_cuts(config, services, video_id, language):
        await services.storage.delete(path)
    await services.storage.delete(media.subtitle_path(config.media_dir, video_id, language))


async def read_canonical(config: Config, services: Services, video_id: int, language: str) -> bytes | None:
    """A language's canonical WebVTT file, None if there is none (ValueError for a tag
    that is not canonical)."""
    path = media.subtitle_path(config.media_dir, video_id, language)
    if services.storage.is_local:
        body: bytes | None = await in_executor(services, read_file, path)
        return body
    return await services.storage.read_bytes(path, limit=subtitle_formats.MAX_FILE_BYTES * 2)


# --- use cases ---------------------------------------------------------------------


async def check_manageable(services: Services, video_id: int, user_id: int, is_admin: bool) -> None:
    """media.VideoNotFound unless the caller may change this video's subtitles."""
    async with cursor(services.pool) as cur:
        row = await video_rows.get_video(cur, video_id)
    if row is None or not media.can_manage(row, user_id, is_admin):
        raise media.VideoNotFound()


async def reserve_upload(services: Services, user_id: int, is_admin: bool) -> None:
    """Count one subtitle upload of the user against SUBTITLE_UPLOADS_PER_HOUR before its
    body is read (admins are not counted); UploadsThrottled when spent."""
    if is_admin:
        return
    wait = await throttle.reserve(
        services.redis, [throttle.Limit(rediskeys.subtitle_uploads(user_id), SUBTITLE_UPLOADS_PER_HOUR, 3600)]
    )
    if wait is not None:
        raise UploadsThrottled(wait)


async def add_from_upload(
    config: Config,
    services: Services,
    video_id: int,
    user_id: int,
    is_admin: bool,
    fields: dict[str, str],
    filename: str | None,
    data: bytes | None,
) -> dict[str, Any]:
    """Store an uploaded .srt/.vtt as the video's subtitles in that language; an
    existing one of the same language is replaced (its label too). Returns the item.
    media.VideoNotFound for a video the caller may not manage; InvalidSubtitle."""
    checked: CheckedUpload = await in_executor(services, check_upload, fields, filename, data)
    async with transaction(services.pool) as cur:
        video = await subtitle_rows.lock_video(cur, video_id)
        if video is None or not media.can_manage(video, user_id, is_admin):
            raise media.VideoNotFound()
        current = await subtitle_rows.list_for_video(cur, video_id)
        if len(current) >= MAX_TRACKS_PER_VIDEO and all(row["language"] != checked.language for row in current):
            raise TooManyTracks()
        others = {row["label"] for row in current if row["language"] != checked.language}
        label = checked.label
        if label in others:
            if checked.label_given:
                raise InvalidSubtitle({"label": [LABEL_TAKEN]})
            label = subtitle_formats.unique_label(label, others)
        row = await subtitle_rows.upsert(cur, video_id, checked.language, label, "upload", checked.cue_count)
        # Written while the row is locked; the transaction commits right after.
        await store_track(config, services, video_id, checked.language, checked.vtt, checked.cut)
    await _changed(services, video_id, video.owner_id)
    log.info(
        "video %s: subtitles %s uploaded by user %s (%d cues)", video_id, checked.language, user_id, checked.cue_count
    )
    return item(config, row)


async def remove(
    config: Config, services: Services, video_id: int, user_id: int, is_admin: bool, raw_language: str
) -> None:
    """Delete the video's subtitles in a language (any spelling of the tag).
    media.VideoNotFound / SubtitleNotFound."""
    try:
        language = await in_executor(services, subtitle_formats.check_language, raw_language)
    except subtitle_formats.SubtitleError:
        language = None
    async with transaction(services.pool) as cur:
        video = await subtitle_rows.lock_video(cur, video_id)
        if video is None or not media.can_manage(video, user_id, is_admin):
            raise media.VideoNotFound()
        if language is None or not await subtitle_rows.delete(cur, video_id, language):
            raise SubtitleNotFound()
        await remove_track(config, services, video_id, language)
    await _changed(services, video_id, video.owner_id)
    log.info("video %s: subtitles %s deleted by user %s", video_id, language, user_id)


async def _changed(services: Services, video_id: int, owner_id: int) -> None:
    from videoflix.library import (
        lifecycle as videos,  # the lifecycle's "a video changed" (imported late: videos imports much)
    )

    await videos.video_changed(services, video_id, owner_id)


# --- tracks extracted from the source (transcode/subtracks.py) ---------------------


@dataclass(frozen=True)
class _Track:
    language: str
    label: str | None
    vtt: str
    cue_count: int
    cut: bytes


def _read_tracks(
    version_dir: Path, tracks: Sequence[ExtractedTrack], fetched: dict[str, bytes | None] | None = None
) -> list[_Track]:
    """The usable extracted tracks, one per language, best first (executor). `fetched`:
    the files' bytes read from a bucket (None: read them from version_dir).

    The child wrote these files from hostile input: each is parsed and re-serialized
    like an upload; a track that fails is skipped with a log line."""
    chosen: dict[str, _Track] = {}
    for track in tracks[:MAX_IMPORTED_TRACKS]:
        language = subtitle_formats.container_language(track.language)
        if language in chosen:
            continue
        try:
            if not media.is_track_file(str(track.file)):
                raise ValueError(f"not a track file name: {track.file!r}")
            if fetched is None:
                data = (version_dir / track.file).read_bytes()
            else:
                found = fetched.get(str(track.file))
                if found is None:
                    raise FileNotFoundError(track.file)
                data = found
            cues = subtitle_formats.parse_vtt(data)
            cut = subtitle_formats.cut_segments(cues, DEFAULT_SEGMENT_MS, 0, 0)
        except (OSError, TypeError, ValueError) as exc:  # SubtitleError is a ValueError
            log.info("%s: extracted track %s skipped: %s", version_dir, track.file, exc)
            continue
        label = None
        if track.title:
            try:
                label = subtitle_formats.clean_label(str(track.title))
            except subtitle_formats.SubtitleError:
                label = None
        chosen[language] = _Track(
            language,
            label or subtitle_formats.default_label(language),
            subtitle_formats.render_vtt(cues),
            len(cues),
            cut,
        )
    return list(chosen.values())


async def import_tracks(
    config: Config, services: Services, video_id: int, version_dir: Path, tracks: Sequence[ExtractedTrack]
) -> list[str]:
    """Make the extracted tracks the video's subtitle_formats, except in languages that have
    an uploaded one (an upload always wins). Returns the languages imported. Never
    raises for a bad track: the publish goes on without it."""
    if not tracks:
        return []
    fetched = None if services.storage.is_local else await _fetch_tracks(services, Path(version_dir), tracks)
    usable: list[_Track] = await in_executor(services, _read_tracks, Path(version_dir), tracks, fetched)
    imported = []
    async with transaction(services.pool) as cur:
        video = await subtitle_rows.lock_video(cur, video_id)
        if video is None:
            return []
        existing = {row["language"]: row for row in await subtitle_rows.list_for_video(cur, video_id)}
        for track in usable:
            current = existing.get(track.language)
            if current is not None and current["origin"] == "upload":
                continue
            if current is None and len(existing) >= MAX_TRACKS_PER_VIDEO:
                continue
            taken = {row["label"] for language, row in existing.items() if language != track.language}
            label = subtitle_formats.unique_label(track.label or subtitle_formats.default_label(track.language), taken)
            row = await subtitle_rows.upsert(cur, video_id, track.language, label, "track", track.cue_count)
            existing[track.language] = row
            await store_track(config, services, video_id, track.language, track.vtt, track.cut)
            imported.append(track.language)
    if imported:
        log.info("video %s: subtitles imported from the source: %s", video_id, ", ".join(imported))
    return imported


async def _fetch_tracks(
    services: Services, version_dir: Path, tracks: Sequence[ExtractedTrack]
) -> dict[str, bytes | None]:
    """With a bucket: each extracted track's bytes, from the run's scratch folder when
    this host still has it (the runner's own child wrote it), else from the version in
    the bucket. Only names media.is_track_file allows are read."""
    fetched: dict[str, bytes | None] = {}
    for track in tracks[:MAX_IMPORTED_TRACKS]:
        name = str(track.file)
        if not media.is_track_file(name) or name in fetched:
            continue
        try:
            fetched[name] = await in_executor(services, (version_dir / name).read_bytes)
        except OSError:
            try:
                fetched[name] = await services.storage.read_bytes(
                    version_dir / name, limit=subtitle_formats.MAX_CUT_BYTES
                )
            except ValueError:  # a folder outside MEDIA_DIR has no objects
                fetched[name] = None
    return fetched


async def import_result_tracks(
    config: Config, services: Services, video_id: int, version_dir: Path, result: JobResult
) -> None:
    """The runner's before_publish step: import what the run extracted (never raises
    for the tracks' sake: a failure is logged and the publish goes on)."""
    try:
        await import_tracks(config, services, video_id, version_dir, result.subtitle_tracks)
    except (OSError, ValueError, StorageError) as exc:
        log.warning("video %s: subtitle tracks not imported: %s", video_id, exc)
