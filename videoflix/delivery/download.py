"""Downloads for offline viewing (issue 22 item 4): one rendition of the live version
as an MP4 file, `GET /api/video/<id>/<resolution>/download.mp4` (and under a stream token).

The rendition's MPEG-TS segments are remuxed, never re-encoded, into fragmented MP4
(`empty_moov`: the header is written before the first fragment, so the answer starts at
once and is streamed as ffmpeg produces it; no file is made). The segments are read by
us (component by component below the video's folder, mediafiles.open_inside, in the file
executor; with object storage streamed from the bucket, `storage`) and fed to ffmpeg's stdin: ffmpeg opens no file and speaks no protocol but its
pipes, its demuxer pinned to mpegts (SECURITY.md control 1's rules for what a demuxer may
read). The access rules are playback's (who may watch the live version); admins may turn
downloads off per video (videos.downloads_enabled, sql/006).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import unicodedata
from collections.abc import AsyncGenerator
from pathlib import Path
from urllib.parse import quote

from videoflix.delivery import mediafiles, storefiles
from videoflix.delivery.playback import ServedFile
from videoflix.platform import media
from videoflix.platform.storage import Storage, StorageError

log = logging.getLogger(__name__)

DOWNLOAD_NAME = "download.mp4"
CONTENT_TYPE = "video/mp4"
# Segment bytes read per executor call and written to ffmpeg at once; MP4 bytes taken
# from ffmpeg per read (and written to the client, which paces both).
READ_BYTES = 1024 * 1024
OUT_BYTES = 256 * 1024
# Fragmented MP4 from a pipe: every keyframe starts a fragment, the moov comes first;
# AAC from MPEG-TS carries ADTS headers, which MP4 stores as AudioSpecificConfig.
REMUX_COMMAND = (
    "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
    "-protocol_whitelist", "pipe", "-f", "mpegts", "-i", "pipe:0",
    "-map", "0:v:0", "-map", "0:a?", "-c", "copy", "-bsf:a", "aac_adtstoasc",
    "-movflags", "frag_keyframe+empty_moov+default_base_moof",
    "-f", "mp4", "pipe:1",
)  # fmt: skip


# Below the server, as every ffmpeg run is (no preexec_fn: the server has threads).
NICE = ("nice", "-n", "10")


class DownloadUnavailable(Exception):
    """The rendition's files are not there (a version swept meanwhile): 404."""


def playlist_entries(playlist: str) -> list[tuple[str, float]]:
    """(segment file name, #EXTINF duration) of a media playlist, in order (pure);
    ValueError for a URI that is not one of ours (no path, no URL: media.is_segment_name)."""
    entries = []
    duration = 0.0
    for line in playlist.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
            except ValueError:
                raise ValueError("a malformed #EXTINF") from None
            continue
        if not line or line.startswith("#"):
            continue
        if not media.is_segment_name(line):
            raise ValueError(f"not a segment name: {line[:40]!r}")
        entries.append((line, duration))
        duration = 0.0
    return entries


def segment_names(playlist: str) -> list[str]:
    return [name for name, _duration in playlist_entries(playlist)]


def content_disposition(title: str) -> str:
    """`attachment` named after the title (RFC 6266): an ASCII fallback without quotes,
    backslashes or controls, and the UTF-8 name in filename* (RFC 8187)."""
    cleaned = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in title)
    cleaned = re.sub(r'[\\/:*?"<>|]+', " ", cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned).strip(" .")[:120] or "video"
    fallback = unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode() or "video"
    fallback = re.sub(r"\s+", " ", fallback).strip() or "video"
    return f"attachment; filename=\"{fallback}.mp4\"; filename*=UTF-8''{quote(cleaned + '.mp4', safe='')}"


def _read_playlist(root: Path, parts: tuple[str, ...]) -> str | None:
    opened = mediafiles.open_inside(root, parts, prefetch=4 * 1024 * 1024)
    if opened is None:
        return None
    try:
        return opened.first.decode("utf-8", "replace")
    finally:
        mediafiles.close_file(opened)


def _from_store(storage: Storage | None) -> bool:
    return storage is not None and not storage.is_local


async def segment_entries(
    media_dir: str,
    video_id: int,
    served: ServedFile,
    executor: concurrent.futures.Executor,
    storage: Storage | None = None,
) -> list[tuple[tuple[str, ...], float]]:
    """(path parts below the version's folder, duration) of the served rendition's segments.
    `storage`: where the media are (None: MEDIA_DIR); storefiles.StoreUnavailable when the
    bucket does not answer."""
    root = media.version_dir(media_dir, video_id, served.version)
    if storage is not None and _from_store(storage):
        data = await storefiles.bounded_call(storage.read_bytes(root.joinpath(*served.parts)))
        text = None if data is None else data.decode("utf-8", "replace")
    else:
        text = await asyncio.get_running_loop().run_in_executor(executor, _read_playlist, root, served.parts)
    if text is None:
        raise DownloadUnavailable()
    try:
        entries = playlist_entries(text)
    except ValueError:
        log.error("video %s: its playlist %s lists something other than segments", video_id, served.parts)
        raise DownloadUnavailable() from None
    if not entries:
        raise DownloadUnavailable()
    folder = served.parts[:-1]
    return [((*folder, name), duration) for name, duration in entries]


async def segment_parts(
    media_dir: str,
    video_id: int,
    served: ServedFile,
    executor: concurrent.futures.Executor,
    storage: Storage | None = None,
) -> list[tuple[str, ...]]:
    """The path parts (below the version's folder) of the served rendition's segments."""
    return [parts for parts, _duration in await segment_entries(media_dir, video_id, served, executor, storage)]


def read_segment(root: Path, parts: tuple[str, ...]) -> bytes | None:
    """A segment's bytes (blocking: executor only); None when it is not there."""
    opened = mediafiles.open_inside(root, parts)
    if opened is None:
        return None
    try:
        chunks = []
        offset = 0
        while offset < opened.stat.st_size:
            chunk = mediafiles.read_chunk(opened.fd, offset, READ_BYTES)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    finally:
        mediafiles.close_file(opened)


async def remux(
    media_dir: str,
    video_id: int,
    version: int,
    parts: list[tuple[str, ...]],
    executor: concurrent.futures.Executor,
    storage: Storage | None = None,
) -> AsyncGenerator[bytes, None]:
    """The MP4 bytes as ffmpeg makes them. Stopping early (the client went away) kills ffmpeg."""
    root = media.version_dir(media_dir, video_id, version)
    proc = await asyncio.create_subprocess_exec(
        *NICE,
        *REMUX_COMMAND,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    loop = asyncio.get_running_loop()

    async def feed() -> None:
        try:
            for segment in parts:
                if storage is not None and _from_store(storage):
                    # From the bucket: a chunk at a time, never a whole segment in memory.
                    async for chunk in storage.stream(root.joinpath(*segment)):
                        stdin.write(chunk)
                        await stdin.drain()
                    continue
                data = await loop.run_in_executor(executor, read_segment, root, segment)
                if data is None:
                    raise FileNotFoundError(segment)
                stdin.write(data)
                await stdin.drain()
        except FileNotFoundError:
            log.warning("video %s: a segment went away during a download", video_id)
        except StorageError as exc:
            log.warning("video %s: the store failed during a download: %s", video_id, exc)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stdin.close()

    feeder = asyncio.create_task(feed())
    errors = asyncio.create_task(stderr.read())
    finished = False
    try:
        while True:
            chunk = await stdout.read(OUT_BYTES)
            if not chunk:
                break
            yield chunk
        finished = True
    finally:
        if not finished and proc.returncode is None:
            proc.kill()
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        status = await proc.wait()
        message = (await errors).decode("utf-8", "replace").strip()
        if finished and status != 0:
            log.error("video %s: the download's remux failed (%s): %s", video_id, status, message[-500:])
