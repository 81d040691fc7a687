"""Custom posters (issue 22 item 5): the owner or an admin replaces a video's poster and
thumbnail with an uploaded image or with the frame at a chosen time.

- An uploaded image is hostile: only JPEG, PNG and WebP (told by their magic bytes, the
  demuxer then pinned to that format, ffmpeg reading nothing but its stdin), at most
  MAX_IMAGE_BYTES, its size read by ffprobe before anything decodes it (the media caps,
  MAX_VIDEO_WIDTH/HEIGHT/PIXELS: no decompression bomb), both under the probe's resource limits; then
  decoded and re-encoded as JPEG at both sizes (transcode/command.py's long sides), so
  nothing of the uploaded file is ever served.
- A frame is taken from the live version's highest rendition (our own MPEG-TS segments,
  fed through a pipe), at the chosen second.
- The pair is kept in media/<id>/poster/ (media.custom_poster_dir) and copied into the
  live version's folder, where /media/{poster,thumbnail}/ serve it; every later version
  gets it too before it is published (apply_custom, the runner's before_publish step), so
  the choice survives a re-transcode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from videoflix.delivery import download, playback
from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.platform.storage import StorageError
from videoflix.tables.videos import PlaybackVideo
from videoflix.transcode.command import POSTER_MAX_SIDE, THUMBNAIL_MAX_SIDE
from videoflix.transcode.limits import PROBE_LIMITS

log = logging.getLogger(__name__)

# The file's cap (SECURITY.md control 28); its picture is held to the media caps of
# control 9 (MAX_VIDEO_WIDTH, MAX_VIDEO_HEIGHT, MAX_VIDEO_PIXELS: 8K by default).
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# A segment read whole to take a frame from (a 4 s segment of the top rung is a few MB;
# a copied 4K source's can be tens).
MAX_SEGMENT_BYTES = 256 * 1024 * 1024
# One image through ffprobe or ffmpeg takes well under a second; a stuck one is killed.
IMAGE_TIMEOUT_SECONDS = 30
# Magic bytes -> ffmpeg's demuxer for that format read from a pipe.
_FORMATS = (
    (b"\xff\xd8\xff", "jpeg_pipe"),
    (b"\x89PNG\r\n\x1a\n", "png_pipe"),
)


class PosterRefused(Exception):
    """The image or the time cannot make a poster; str() says why (400)."""


def image_demuxer(data: bytes) -> str:
    """The pipe demuxer of an allowed image format (pure); PosterRefused otherwise."""
    for magic, demuxer in _FORMATS:
        if data.startswith(magic):
            return demuxer
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp_pipe"
    raise PosterRefused("Not an image this server takes: send a JPEG, PNG or WebP file.")


def fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Even size with the long side at most max_side, never upscaled (as the transcoder's)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


async def _run(command: list[str], data: bytes) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        "nice",
        "-n",
        "10",
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=PROBE_LIMITS.preexec(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), IMAGE_TIMEOUT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise PosterRefused("The image took too long to read.") from None
    if proc.returncode != 0:
        log.info("poster: %s refused the image: %s", command[0], err.decode("utf-8", "replace")[-300:])
        raise PosterRefused("The image could not be decoded.")
    return out


@dataclass(frozen=True)
class _Size:
    width: int
    height: int


async def _image_size(data: bytes, demuxer: str) -> _Size:
    out = await _run(
        [
            "ffprobe", "-v", "error", "-protocol_whitelist", "pipe", "-f", demuxer, "-i", "pipe:0",
            "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "json",
        ],
        data,
    )  # fmt: skip
    try:
        stream = json.loads(out)["streams"][0]
        size = _Size(int(stream["width"]), int(stream["height"]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise PosterRefused("The image could not be decoded.") from None
    if size.width < 1 or size.height < 1:
        raise PosterRefused("The image could not be decoded.")
    return size


async def _encode_pair(data: bytes, demuxer: str, size: _Size, into: Path, seek: float | None = None) -> None:
    """poster.jpg and thumbnail.jpg from the first frame of `data` (after `seek` s)."""
    poster_w, poster_h = fit(size.width, size.height, POSTER_MAX_SIDE)
    thumb_w, thumb_h = fit(size.width, size.height, THUMBNAIL_MAX_SIDE)
    graph = (
        f"[0:v:0]scale={poster_w}:{poster_h},setsar=1,format=yuvj420p,split=2[poster][t];"
        f"[t]scale={thumb_w}:{thumb_h}[thumb]"
    )
    seek_args = ["-ss", f"{seek:.3f}"] if seek else []
    await _run(
        [
            "ffmpeg", "-v", "error", "-nostdin", "-threads", "1", "-protocol_whitelist", "pipe,file",
            "-f", demuxer, "-i", "pipe:0", *seek_args, "-filter_complex", graph,
            "-map", "[poster]", "-frames:v", "1", "-q:v", "3", "-y", str(into / media.POSTER_NAME),
            "-map", "[thumb]", "-frames:v", "1", "-q:v", "4", "-y", str(into / media.THUMBNAIL_NAME),
        ],
        data,
    )  # fmt: skip
    for name in (media.POSTER_NAME, media.THUMBNAIL_NAME):
        if not (into / name).is_file() or (into / name).stat().st_size == 0:
            raise PosterRefused("The image could not be decoded.")


def _staging(media_dir: str, video_id: int) -> Path:
    folder = media.custom_poster_dir(media_dir, video_id).with_name(f".{media.CUSTOM_POSTER_DIR}-new")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _install(media_dir: str, video_id: int, staged: Path, live_version: int) -> None:
    """The staged pair becomes the custom poster, and the live version's images."""
    target = media.custom_poster_dir(media_dir, video_id)
    old = target.with_name(f".{media.CUSTOM_POSTER_DIR}-old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    _copy_into(target, media.version_dir(media_dir, video_id, live_version))


def _copy_into(source: Path, version_dir: Path) -> None:
    """Each image replaced by one rename: a reader gets the old file or the new one."""
    if not version_dir.is_dir():
        return
    for name in (media.POSTER_NAME, media.THUMBNAIL_NAME):
        temp = version_dir / f".{name}.custom"
        shutil.copyfile(source / name, temp)
        os.replace(temp, version_dir / name)


async def _install_in_store(config: Config, services: Services, video_id: int, staged: Path, live_version: int) -> None:
    """_install with a bucket: the pair is written as media/<id>/poster/ and into the
    live version (each object replaced whole: a reader gets the old image or the new one)."""
    loop = asyncio.get_running_loop()
    chosen = media.custom_poster_dir(config.media_dir, video_id)
    live = media.version_dir(config.media_dir, video_id, live_version)
    for name in (media.POSTER_NAME, media.THUMBNAIL_NAME):
        data = await loop.run_in_executor(services.file_executor, (staged / name).read_bytes)
        await services.storage.write_bytes(chosen / name, data)
        await services.storage.write_bytes(live / name, data)


async def _make(config: Config, services: Services, video_id: int, live_version: int, data: bytes, demuxer: str,
                size: _Size, seek: float | None = None) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    staged = await loop.run_in_executor(services.file_executor, _staging, config.media_dir, video_id)
    try:
        await _encode_pair(data, demuxer, size, staged, seek)
        if services.storage.is_local:
            await loop.run_in_executor(
                services.file_executor, _install, config.media_dir, video_id, staged, live_version
            )
        else:
            await _install_in_store(config, services, video_id, staged, live_version)
    finally:
        await loop.run_in_executor(services.file_executor, shutil.rmtree, staged, True)


async def set_from_image(config: Config, services: Services, video: PlaybackVideo, data: bytes) -> None:
    """The uploaded image becomes the poster (checked, decoded, re-encoded)."""
    if video.live_version is None:
        raise PosterRefused("The video has no poster yet: wait until it is ready.")
    if len(data) > MAX_IMAGE_BYTES:
        raise PosterRefused(f"Image too large: at most {MAX_IMAGE_BYTES} bytes.")
    demuxer = image_demuxer(data)
    size = await _image_size(data, demuxer)
    if (
        size.width > config.max_video_width
        or size.height > config.max_video_height
        or size.width * size.height > config.max_video_pixels
    ):
        raise PosterRefused(
            f"Image too large: at most {config.max_video_width}x{config.max_video_height} "
            f"and {config.max_video_pixels} pixels."
        )
    await _make(config, services, video.id, video.live_version, data, demuxer, size)
    log.info("video %s: poster replaced by an uploaded image (%sx%s)", video.id, size.width, size.height)


async def set_from_frame(config: Config, services: Services, video: PlaybackVideo, seconds: float) -> None:
    """The frame at `seconds` of the live version becomes the poster."""
    if video.live_version is None or not video.resolutions:
        raise PosterRefused("The video has no frames to choose from yet: wait until it is ready.")
    highest = max(video.resolutions, key=lambda name: int(name.rstrip("p")))
    if services.storage.is_local:
        served = playback.ServedFile(video.live_version, (highest, media.MEDIA_PLAYLIST_NAME), False)
        try:
            entries = await download.segment_entries(config.media_dir, video.id, served, services.file_executor)
        except download.DownloadUnavailable:
            raise PosterRefused("The video has no frames to choose from.") from None
    else:
        entries = await _stored_segment_entries(config, services, video.id, video.live_version, highest)
    start = 0.0
    chosen: tuple[str, ...] | None = None
    for segment, duration in entries:
        if seconds < start + duration:
            chosen = segment
            break
        start += duration
    if chosen is None:
        raise PosterRefused(f"The video is {start:.1f} seconds long: choose a time within it.")
    part = chosen
    root = media.version_dir(config.media_dir, video.id, video.live_version)
    if services.storage.is_local:
        data = await asyncio.get_running_loop().run_in_executor(
            services.file_executor, download.read_segment, root, part
        )
    else:
        data = await services.storage.read_bytes(root.joinpath(*part), limit=MAX_SEGMENT_BYTES)
    if data is None:
        raise PosterRefused("The video has no frames to choose from.")
    size = await _image_size(data, "mpegts")
    await _make(config, services, video.id, video.live_version, data, "mpegts", size, seek=seconds - start)
    log.info("video %s: poster replaced by the frame at %.3f s", video.id, seconds)


async def _stored_segment_entries(
    config: Config, services: Services, video_id: int, version: int, rendition: str
) -> list[tuple[tuple[str, ...], float]]:
    """download.segment_entries of a version in the bucket: (path parts, duration)."""
    playlist = media.version_dir(config.media_dir, video_id, version) / rendition / media.MEDIA_PLAYLIST_NAME
    data = await services.storage.read_bytes(playlist)
    try:
        entries = download.playlist_entries(data.decode()) if data is not None else []
    except (UnicodeDecodeError, ValueError):
        log.error("video %s: its playlist %s/%s lists something other than segments", video_id, version, rendition)
        entries = []
    if not entries:
        raise PosterRefused("The video has no frames to choose from.")
    return [((rendition, name), duration) for name, duration in entries]


async def _apply_custom_from_store(config: Config, services: Services, video_id: int, version_dir: Path) -> bool:
    """apply_custom with a bucket (the runner may be on any host): the chosen pair is
    read from the bucket and written under the new version's keys, and into the run's
    scratch folder when this host still has it (so a later upload of it keeps the choice)."""
    chosen = media.custom_poster_dir(config.media_dir, video_id)
    pair = {
        name: await services.storage.read_bytes(chosen / name) for name in (media.POSTER_NAME, media.THUMBNAIL_NAME)
    }
    if any(data is None for data in pair.values()):
        return False
    loop = asyncio.get_running_loop()

    def into_scratch() -> None:
        if not version_dir.is_dir():
            return
        for name, data in pair.items():
            temp = version_dir / f".{name}.custom"
            temp.write_bytes(data or b"")
            os.replace(temp, version_dir / name)

    await loop.run_in_executor(services.file_executor, into_scratch)
    for name, data in pair.items():
        await services.storage.write_bytes(version_dir / name, data or b"")
    return True


async def apply_custom(config: Config, services: Services, video_id: int, version_dir: Path) -> None:
    """The runner's before_publish step: a chosen poster goes into the new version too."""
    if not services.storage.is_local:
        try:
            if await _apply_custom_from_store(config, services, video_id, version_dir):
                log.info("video %s: the chosen poster kept for the new version", video_id)
        except (OSError, StorageError) as exc:
            log.warning("video %s: the chosen poster not copied to the new version: %s", video_id, exc)
        return
    source = media.custom_poster_dir(config.media_dir, video_id)

    def copy() -> bool:
        if not (source / media.POSTER_NAME).is_file():
            return False
        _copy_into(source, version_dir)
        return True

    try:
        if await asyncio.get_running_loop().run_in_executor(services.file_executor, copy):
            log.info("video %s: the chosen poster kept for the new version", video_id)
    except OSError as exc:
        log.warning("video %s: the chosen poster not copied to the new version: %s", video_id, exc)
