"""A video's subtitle tracks served as HLS: a version's subtitle media playlist (made from
its ladder.json: the source's duration in segments of its length) and its segments (a
segment is one small read of the track's cut, made when the track was stored:
subtitle_tracks.py; a cut for another segment length, or one left stale by a replaced
file, is made once, on its first request). With a bucket, a segment is three ranged
reads of the cut object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from videoflix.delivery import storefiles
from videoflix.library import subtitle_formats, subtitle_tracks
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.transcode import ladderfile
from videoflix.transcode.playlist import SubtitleTrack

log = logging.getLogger(__name__)

# Cuts made on a request (another segment length, or a stale cut) are made one at a
# time: a burst of requests for one track parses it once, not once each.
_recut_lock = threading.Lock()


def _read_range(handle: BinaryIO, offset: int, length: int) -> bytes:
    data = os.pread(handle.fileno(), length, offset)
    if len(data) != length:
        raise ValueError("short read of a cut subtitle file")
    return data


def _cut_body(path: Path, index: int, source: os.stat_result, segment_ms: int) -> bytes | None:
    """Segment `index`'s body from the cut at `path` if it was cut from `source` at
    `segment_ms`, else None (missing or stale). A segment past the last cue: b""."""
    try:
        with open(path, "rb") as handle:
            head = subtitle_formats.read_cut_head(_read_range(handle, 0, subtitle_formats.CUT_HEAD_BYTES))
            if (head.segment_ms, head.source_size, head.source_mtime_ns) != (
                segment_ms,
                source.st_size,
                source.st_mtime_ns,
            ):
                return None
            if index >= head.count:
                return b""
            start, end = subtitle_formats.read_cut_span(
                _read_range(handle, subtitle_formats.cut_offsets_at(index), 2 * subtitle_formats.CUT_OFFSET_BYTES)
            )
            return _read_range(handle, head.bodies_at + start, end - start)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("subtitle cut %s unreadable (cut again): %s", path, exc)
        return None


def _segment_body(media_dir: str, video_id: int, language: str, index: int, segment_ms: int) -> bytes:
    """Segment `index` of `language`'s track cut at `segment_ms` (executor): one read
    of its cut; the cut is made first when it is missing or stale (then once)."""
    try:
        source_path = media.subtitle_path(media_dir, video_id, language)
        cut_path = media.subtitle_cut_path(media_dir, video_id, language, segment_ms)
        source = source_path.stat()
    except (ValueError, OSError):
        raise SubtitleUnavailable() from None
    body = _cut_body(cut_path, index, source, segment_ms)
    if body is not None:
        return body
    with _recut_lock:
        body = _cut_body(cut_path, index, source, segment_ms)  # cut meanwhile by another request
        if body is not None:
            return body
        try:
            cues = subtitle_formats.parse_vtt(source_path.read_bytes())
            cut = subtitle_formats.cut_segments(cues, segment_ms, source.st_size, source.st_mtime_ns)
        except (OSError, ValueError) as exc:  # SubtitleError is a ValueError
            log.info("subtitles %s unusable: %s", source_path, exc)
            raise SubtitleUnavailable() from None
        subtitle_tracks.write_file(cut_path, cut)
        log.info("subtitles %s cut at %d ms", source_path, segment_ms)
    body = _cut_body(cut_path, index, source, segment_ms)
    if body is None:
        raise SubtitleUnavailable()
    return body


class SubtitleUnavailable(Exception):
    """No such subtitle playlist or segment (404)."""


class SubtitleNotReady(Exception):
    """The version being built has not measured its first PTS yet (503, retry)."""


def _ladder_timing(ladder: dict[str, Any]) -> tuple[float, float, int, bool]:
    """(duration, segment_seconds, start_pts, complete) of a version's ladder.json."""
    try:
        duration = float(ladder["duration"])
        segment_seconds = float(ladder["segment_seconds"])
        start_pts = int(ladder.get("start_pts") or 0)
    except (KeyError, TypeError, ValueError):
        raise SubtitleUnavailable() from None
    if not (duration > 0 and segment_seconds > 0) or start_pts < 0:
        raise SubtitleUnavailable()
    return duration, segment_seconds, start_pts, bool(ladder.get("complete"))


def render_hls_playlist(ladder: dict[str, Any]) -> str:
    """The subtitle media playlist of a version (pure): its duration in segments of
    its segment length. The duration is the source's (probed before the run), so the
    playlist is whole even while the version is being built."""
    duration, segment_seconds, _, _ = _ladder_timing(ladder)
    return subtitle_formats.media_playlist(duration, segment_seconds, media.SUBTITLE_SEGMENT_PATTERN)


def segment_of(ladder: dict[str, Any], name: str) -> tuple[int, int, int]:
    """(index, segment_ms, start_pts) of subtitle segment `name` (seg_NNNNN.vtt) of a
    version (pure); SubtitleUnavailable for a name outside the playlist,
    SubtitleNotReady while the version has not measured its first PTS."""
    duration, segment_seconds, start_pts, _ = _ladder_timing(ladder)
    if ladder.get("start_pts") is None:
        raise SubtitleNotReady()
    index = media.parse_subtitle_segment(name)
    if index is None or index >= subtitle_formats.segment_count(duration, segment_seconds):
        raise SubtitleUnavailable()
    return index, round(segment_seconds * 1000), start_pts


def render_hls_file(media_dir: str, video_id: int, version: int, language: str, segment: str | None) -> bytes:
    """The subtitle playlist (segment None) or one segment of `language` for a version
    of the video (executor): the playlist from the version's ladder.json, a segment
    from the track's cut. SubtitleUnavailable when the version has no ladder or the
    video no such track."""
    ladder = ladderfile.read_ladder(media.ladder_path(media_dir, video_id, version))
    if ladder is None:
        raise SubtitleUnavailable()
    if segment is None:
        try:
            if not media.subtitle_path(media_dir, video_id, language).is_file():
                raise SubtitleUnavailable()
        except ValueError:
            raise SubtitleUnavailable() from None
        return render_hls_playlist(ladder).encode()
    index, segment_ms, start_pts = segment_of(ladder, segment)
    return subtitle_formats.segment_head(start_pts) + _segment_body(media_dir, video_id, language, index, segment_ms)


class _Recuts:
    """Cuts being made on request with a bucket, one at a time per process
    (services.state): a burst of requests for one track parses it once."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()


async def _stored_range(services: Services, path: Path, start: int, length: int) -> bytes:
    data = b"".join([chunk async for chunk in services.storage.stream(path, start, start + length - 1)])
    if len(data) != length:
        raise ValueError("short read of a cut subtitle file")
    return data


async def _stored_cut_body(
    services: Services, path: Path, index: int, identity: tuple[int, int], segment_ms: int
) -> bytes | None:
    """_cut_body of a cut object: three ranged reads (head, two offsets, the body)."""
    try:
        head = subtitle_formats.read_cut_head(await _stored_range(services, path, 0, subtitle_formats.CUT_HEAD_BYTES))
        if (head.segment_ms, head.source_size, head.source_mtime_ns) != (segment_ms, *identity):
            return None
        if index >= head.count:
            return b""
        start, end = subtitle_formats.read_cut_span(
            await _stored_range(
                services, path, subtitle_formats.cut_offsets_at(index), 2 * subtitle_formats.CUT_OFFSET_BYTES
            )
        )
        if end == start:
            return b""
        return await _stored_range(services, path, head.bodies_at + start, end - start)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        log.warning("subtitle cut %s unreadable (cut again): %s", path, exc)
        return None


async def _stored_segment_body(
    config: Config, services: Services, video_id: int, language: str, index: int, segment_ms: int
) -> bytes:
    """_segment_body with a bucket: one cut read, the cut made first when missing or stale."""
    try:
        source_path = media.subtitle_path(config.media_dir, video_id, language)
        cut_path = media.subtitle_cut_path(config.media_dir, video_id, language, segment_ms)
    except ValueError:
        raise SubtitleUnavailable() from None
    info = await services.storage.head(source_path)
    if info is None:
        raise SubtitleUnavailable()
    identity = subtitle_tracks.stored_identity(info)
    body = await _stored_cut_body(services, cut_path, index, identity, segment_ms)
    if body is not None:
        return body
    async with services.state(_Recuts).lock:
        body = await _stored_cut_body(services, cut_path, index, identity, segment_ms)
        if body is not None:
            return body
        data = await services.storage.read_bytes(source_path, limit=subtitle_formats.MAX_FILE_BYTES * 2)
        if data is None:
            raise SubtitleUnavailable()
        try:
            cut = await subtitle_tracks.in_executor(services, _cut_of, data, segment_ms, identity)
        except ValueError as exc:  # SubtitleError is a ValueError
            log.info("subtitles %s unusable: %s", source_path, exc)
            raise SubtitleUnavailable() from None
        await services.storage.write_bytes(cut_path, cut)
        log.info("subtitles %s cut at %d ms", source_path, segment_ms)
    body = await _stored_cut_body(services, cut_path, index, identity, segment_ms)
    if body is None:
        raise SubtitleUnavailable()
    return body


def _cut_of(data: bytes, segment_ms: int, identity: tuple[int, int]) -> bytes:
    return subtitle_formats.cut_segments(subtitle_formats.parse_vtt(data), segment_ms, *identity)


async def render_hls(
    config: Config, services: Services, video_id: int, version: int, language: str, segment: str | None
) -> bytes:
    """render_hls_file from either store (the local one on the file executor)."""
    if services.storage.is_local:
        body: bytes = await subtitle_tracks.in_executor(
            services, render_hls_file, config.media_dir, video_id, version, language, segment
        )
        return body
    ladder = storefiles.ladder_of(
        await services.storage.read_bytes(media.ladder_path(config.media_dir, video_id, version))
    )
    if ladder is None:
        raise SubtitleUnavailable()
    if segment is None:
        try:
            source = media.subtitle_path(config.media_dir, video_id, language)
        except ValueError:
            raise SubtitleUnavailable() from None
        if await services.storage.head(source) is None:
            raise SubtitleUnavailable()
        return render_hls_playlist(ladder).encode()
    index, segment_ms, start_pts = segment_of(ladder, segment)
    body = await _stored_segment_body(config, services, video_id, language, index, segment_ms)
    return subtitle_formats.segment_head(start_pts) + body


async def master_tracks(services: Services, video_id: int) -> list[SubtitleTrack]:
    """The master's SUBTITLES group of a video: every track, none DEFAULT (the viewer
    turns them on), AUTOSELECT=YES (a player may pick the one matching its language)."""
    return [
        SubtitleTrack(language=row["language"], label=row["label"])
        for row in await subtitle_tracks.list_rows(services, video_id)
    ]
