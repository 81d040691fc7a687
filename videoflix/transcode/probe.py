"""ffprobe: run it (IO at the edge) and turn its JSON into a `Probe` (pure). Every
ffprobe that reads a media file runs from here (platform/preflight.py only asks for
its version).

`parse_probe` is pure and is what the tests exercise with the facts quoted in
shared/media/README.md; `probe_file` (asyncio, for the loop) and `probe_file_sync`
(for the transcode child process) only run ffprobe and hand its JSON over;
`first_video_pts` reads one packet time of a segment the transcode wrote.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from videoflix.transcode.limits import PROBE_LIMITS, MediaCaps, ResourceLimits

log = logging.getLogger(__name__)

# Reading headers takes well under a second; a minute means a stuck read (a FIFO, a
# hung network mount) and the file is treated as unreadable.
PROBE_TIMEOUT_SECONDS = 60.0

# Only plain files may be opened, also by demuxers that follow references (an uploaded
# .m3u8 or ffconcat list must not make ffprobe fetch URLs: CWE-918, server-side request
# forgery).
PROTOCOL_WHITELIST = "file"

# Demuxers allowed to read user data: containers that carry their media inside
# themselves. ffmpeg auto-detects hundreds of input formats, and several of them open
# other files or URLs named *inside* the upload, which would let an uploader turn any
# file the service can read (another user's private source, /etc/...) into "their" video
# (CWE-73, CWE-918). Left out on purpose:
#   hls, dash, smoothstreaming   playlists/manifests naming segment files or URLs
#   concat                       ffconcat lists naming arbitrary files
#   image2                       image sequences: a pattern expanded over the disk
#   *_pipe, gif, apng, webp ...  single images (a still is not a video; issue 11's corpus)
#   mxf, gxf                     OP-Atom/external-essence references to sibling files
#   tty, bin, ansi, xbin, idf    any text file "plays" as rendered text
#   h264, hevc, mpegvideo, m4v,  raw elementary streams: no container timing, durations
#   mjpeg, rawvideo, ...         guessed from the file size
#   sdp, rtp, rtsp, srtp,        network sessions described by the file
#   ffmetadata, subtitles, data  not video
# The mov demuxer can follow external data references ("dref" atoms) only with
# enable_drefs=1; it stays at its default, 0, and we pass it explicitly (see
# input_options). Keys are the demuxers' first names; values say what they cover.
ALLOWED_DEMUXERS = {
    "mov": "MP4, MOV, M4V, 3GP (ISO base media)",
    "matroska": "Matroska and WebM",
    "avi": "AVI",
    "mpegts": "MPEG transport stream (TS, M2TS)",
    "mpeg": "MPEG program stream (MPG, VOB)",
    "flv": "Flash video",
    "ogg": "Ogg (Theora, VP8)",
    "asf": "ASF (WMV)",
}
# For -format_whitelist: the demuxers that may be opened, and nothing they nest.
FORMAT_WHITELIST = ",".join(ALLOWED_DEMUXERS)
UNSUPPORTED_FORMAT_MESSAGE = (
    "Unsupported file format: upload a video file (MP4, MOV, MKV, WebM, AVI, MPEG-TS, MPEG-PS, FLV, Ogg or WMV)."
)

# Beyond this, a frame rate is a time-base artefact, not a rate (the VFR phone clip has
# r_frame_rate 90000/1).
MAX_PLAUSIBLE_FPS = 1000.0


# Text subtitle codecs (ffprobe codec_name) that ffmpeg converts to WebVTT; bitmap
# subtitles (dvd_subtitle, hdmv_pgs_subtitle, dvb_subtitle) would need OCR and are
# ignored.
TEXT_SUBTITLE_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "mov_text", "webvtt"})


@dataclass(frozen=True)
class SubtitleStream:
    """A text subtitle stream of the source, as the container describes it."""

    index: int  # ffprobe's stream index (-map 0:<index>)
    codec: str
    language: str | None  # the container's tag as is ("eng": ISO 639-2 mostly), None if absent
    title: str | None
    default: bool = False
    forced: bool = False


# A probe that hit its memory or CPU-time limit (see limits.PROBE_LIMITS).
TOO_DEMANDING_MESSAGE = "The file needs more memory or CPU time to read than this server allows."


class ProbeError(Exception):
    """The file cannot be used as a video; str(error) is a message fit for the user."""


@dataclass(frozen=True)
class Probe:
    """What the transcoder needs to know about a source file.

    `width` x `height` is the DISPLAYED size: a rotation of 90 or 270 degrees swaps the
    coded dimensions, and a non-square sample aspect ratio stretches the width.
    `rotation` is counter-clockwise degrees in 0..359 (display-matrix convention;
    a legacy `rotate` tag of 90, meaning clockwise, becomes 270).
    `fps` is the average frame rate (sane for variable frame rate sources);
    `nominal_fps` is r_frame_rate when it is a plausible rate, else None.
    `stream_count`, `video_sizes` (coded size of every video stream), `claimed_fps` (the
    chosen stream's average rate, however implausible) and `claimed_duration` (the
    longest of the container's and every stream's) are what the media caps look at.
    """

    width: int
    height: int
    duration: float
    fps: float
    has_audio: bool
    video_codec: str
    rotation: int = 0
    nominal_fps: float | None = None
    video_stream_index: int = 0
    audio_stream_index: int | None = None
    audio_codec: str | None = None
    audio_channels: int | None = None
    video_profile: str | None = None
    video_level: int | None = None
    format_name: str = ""
    stream_count: int = 1
    video_sizes: tuple[tuple[int, int], ...] = ()
    claimed_fps: float = 0.0
    claimed_duration: float = 0.0
    # The video stream's colour description as ffprobe names it (None when unstated):
    # colour.py decides from these whether the source is HDR.
    color_transfer: str | None = None
    color_primaries: str | None = None
    color_space: str | None = None
    subtitle_streams: tuple[SubtitleStream, ...] = ()
    # What copyfit.py needs to decide whether the streams can be copied as they are
    # (None when ffprobe does not say): the chosen video stream's coded size, pixel
    # format, field order and bitrate; the audio stream's profile and bitrate; the
    # container's start time, which ffmpeg subtracts from every timestamp.
    coded_width: int | None = None
    coded_height: int | None = None
    pixel_format: str | None = None
    field_order: str | None = None
    video_bit_rate: int | None = None
    audio_profile: str | None = None
    audio_bit_rate: int | None = None
    audio_sample_rate: int | None = None
    start_time: float = 0.0

    @property
    def demuxer(self) -> str:
        """The demuxer ffprobe chose ("mov" for "mov,mp4,m4a,3gp,3g2,mj2")."""
        return demuxer_name(self.format_name)


def demuxer_name(format_name: str) -> str:
    return format_name.split(",", 1)[0].strip()


def check_allowed_format(format_name: str) -> str:
    """The demuxer to pin for `format_name`, or ProbeError when it is not allow-listed."""
    demuxer = demuxer_name(format_name)
    if demuxer not in ALLOWED_DEMUXERS:
        raise ProbeError(UNSUPPORTED_FORMAT_MESSAGE)
    return demuxer


def input_options(demuxer: str | None) -> list[str]:
    """ffprobe/ffmpeg input options that confine a demuxer to the file itself.

    Without `demuxer` the format is detected but must be allow-listed
    (-format_whitelist); with it, that demuxer is forced (-f), so a file that probed
    as one format can never be opened as another. Only the `file` protocol may be used.
    """
    options = ["-protocol_whitelist", PROTOCOL_WHITELIST]
    if demuxer is None:
        return [*options, "-format_whitelist", FORMAT_WHITELIST]
    if demuxer not in ALLOWED_DEMUXERS:
        raise ProbeError(UNSUPPORTED_FORMAT_MESSAGE)
    options += ["-format_whitelist", demuxer, "-f", demuxer]
    if demuxer == "mov":
        options += ["-enable_drefs", "0"]  # never open files named by dref atoms
    return options


def _rate(value: Any) -> float | None:
    """'30000/1001' -> 29.97; None for '0/0', 'N/A', garbage or implausible rates."""
    if not isinstance(value, str):
        return None
    try:
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    if rate <= 0 or rate > MAX_PLAUSIBLE_FPS:
        return None
    return float(rate)


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict[str, Any]) -> int:
    """Counter-clockwise rotation in 0..359, rounded to a quarter turn."""
    degrees: float | None = None
    for side_data in stream.get("side_data_list") or []:
        if isinstance(side_data, dict) and "rotation" in side_data:
            degrees = _float(side_data["rotation"])
            break
    if degrees is None:
        tags = stream.get("tags") or {}
        tag = _float(tags.get("rotate")) if isinstance(tags, dict) else None
        # The legacy tag counts clockwise, the display matrix counter-clockwise.
        degrees = -tag if tag is not None else 0.0
    return round(degrees / 90.0) * 90 % 360


def _is_attached_picture(stream: dict[str, Any]) -> bool:
    disposition = stream.get("disposition") or {}
    if not isinstance(disposition, dict):
        return False
    return bool(disposition.get("attached_pic") or disposition.get("timed_thumbnails"))


def _displayed_size(stream: dict[str, Any], rotation: int) -> tuple[int, int]:
    width, height = _int(stream.get("width")), _int(stream.get("height"))
    if not width or not height or width <= 0 or height <= 0:
        raise ProbeError("The video stream has no picture size.")
    sar = stream.get("sample_aspect_ratio")
    if isinstance(sar, str) and ":" in sar:
        num, _, den = sar.partition(":")
        sar_num, sar_den = _int(num), _int(den)
        # 0:1 means unknown; ffmpeg treats it as square pixels as well.
        if sar_num and sar_den and sar_num > 0 and sar_den > 0 and sar_num != sar_den:
            width = max(1, round(width * sar_num / sar_den))
    if rotation in (90, 270):
        width, height = height, width
    return width, height


def parse_probe(data: dict[str, Any]) -> Probe:
    """Turn ffprobe's `-show_format -show_streams` JSON into a Probe; raise ProbeError."""
    if not isinstance(data, dict):
        raise ProbeError("Unreadable media file.")
    streams = data.get("streams")
    fmt = data.get("format")
    if not isinstance(streams, list) or not isinstance(fmt, dict):
        raise ProbeError("Unreadable media file.")
    check_allowed_format(str(fmt.get("format_name") or ""))
    streams = [s for s in streams if isinstance(s, dict)]

    videos = [s for s in streams if s.get("codec_type") == "video" and not _is_attached_picture(s)]
    if not videos:
        raise ProbeError("No video stream found.")
    # Prefer the stream the container marks as default, as players do.
    video = next((s for s in videos if (s.get("disposition") or {}).get("default")), videos[0])
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    audio = next((s for s in audios if (s.get("disposition") or {}).get("default")), None)
    if audio is None and audios:
        audio = audios[0]

    duration = _float(fmt.get("duration"))
    if duration is None:
        duration = _float(video.get("duration"))
    if duration is None:
        raise ProbeError("Could not determine the duration.")
    if duration <= 0:
        raise ProbeError("Zero duration.")

    avg = _rate(video.get("avg_frame_rate"))
    nominal = _rate(video.get("r_frame_rate"))
    fps = avg if avg is not None else nominal
    if fps is None:
        raise ProbeError("Could not determine the frame rate.")

    rotation = _rotation(video)
    width, height = _displayed_size(video, rotation)
    level = _int(video.get("level"))
    durations = [_float(fmt.get("duration"))] + [_float(s.get("duration")) for s in streams]
    video_sizes = tuple(
        (_int(s.get("width")) or 0, _int(s.get("height")) or 0) for s in streams if s.get("codec_type") == "video"
    )
    return Probe(
        width=width,
        height=height,
        duration=duration,
        fps=fps,
        has_audio=audio is not None,
        video_codec=str(video.get("codec_name") or "unknown"),
        rotation=rotation,
        nominal_fps=nominal,
        video_stream_index=_int(video.get("index")) or 0,
        audio_stream_index=_int(audio.get("index")) if audio is not None else None,
        audio_codec=str(audio.get("codec_name")) if audio is not None else None,
        audio_channels=_int(audio.get("channels")) if audio is not None else None,
        video_profile=video.get("profile") if isinstance(video.get("profile"), str) else None,
        video_level=level if level is not None and level > 0 else None,  # VP8 reports -99
        format_name=str(fmt.get("format_name") or ""),
        stream_count=len(streams),
        video_sizes=video_sizes,
        claimed_fps=_claimed_rate(video.get("avg_frame_rate")),
        claimed_duration=max([d for d in durations if d is not None] or [duration]),
        color_transfer=_text(video.get("color_transfer")),
        color_primaries=_text(video.get("color_primaries")),
        color_space=_text(video.get("color_space")),
        subtitle_streams=_subtitle_streams(streams),
        coded_width=_int(video.get("width")),
        coded_height=_int(video.get("height")),
        pixel_format=_text(video.get("pix_fmt")),
        field_order=_text(video.get("field_order")),
        video_bit_rate=_int(video.get("bit_rate")),
        audio_profile=_text(audio.get("profile")) if audio is not None else None,
        audio_bit_rate=_int(audio.get("bit_rate")) if audio is not None else None,
        audio_sample_rate=_int(audio.get("sample_rate")) if audio is not None else None,
        start_time=_float(fmt.get("start_time")) or 0.0,
    )


def _text(value: Any) -> str | None:
    """A short ffprobe string field, or None ("unknown", missing, or not a string)."""
    if not isinstance(value, str) or not value or value == "unknown" or len(value) > 32:
        return None
    return value


def _tag(stream: dict[str, Any], name: str) -> str | None:
    tags = stream.get("tags")
    value = tags.get(name) if isinstance(tags, dict) else None
    return value.strip() or None if isinstance(value, str) else None


def _subtitle_streams(streams: list[dict[str, Any]]) -> tuple[SubtitleStream, ...]:
    found = []
    for stream in streams:
        codec = stream.get("codec_name")
        index = _int(stream.get("index"))
        if stream.get("codec_type") != "subtitle" or codec not in TEXT_SUBTITLE_CODECS or index is None:
            continue
        raw = stream.get("disposition")
        disposition: dict[str, Any] = raw if isinstance(raw, dict) else {}
        found.append(
            SubtitleStream(
                index=index,
                codec=str(codec),
                language=_tag(stream, "language"),
                title=_tag(stream, "title"),
                default=bool(disposition.get("default")),
                forced=bool(disposition.get("forced")),
            )
        )
    return tuple(found)


def _claimed_rate(value: Any) -> float:
    """A rate as the file states it, without the plausibility bound of _rate (0.0 if none)."""
    try:
        rate = Fraction(value) if isinstance(value, str) else Fraction(0)
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(rate) if rate > 0 else 0.0


def check_caps(probe: Probe, caps: MediaCaps | None) -> Probe:
    """`probe` when it is within `caps` (None: no caps), else ProbeError saying which."""
    problem = caps.violation(probe) if caps is not None else None
    if problem is not None:
        raise ProbeError(problem)
    return probe


def probe_command(path: str | os.PathLike[str], demuxer: str | None = None) -> list[str]:
    """The ffprobe argv for `path` (a local file, never a URL: see input_options)."""
    return [
        "ffprobe",
        "-v",
        "error",
        *input_options(demuxer),
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        # "file:" keeps a name such as "http:x" or "-y" from being read as a URL or option.
        "file:" + os.fspath(path),
    ]


def _parse_output(
    path: str | os.PathLike[str], returncode: int, stdout: bytes, stderr: bytes, limits: ResourceLimits
) -> Probe:
    if returncode != 0:
        text = stderr.decode("utf-8", "replace").strip()
        log.info("ffprobe failed on %s (exit %s): %s", path, returncode, text[-500:])
        # Reading headers never comes near the limits: a file that does is a bomb.
        if limits.failure(returncode, None, text) is not None:
            raise ProbeError(TOO_DEMANDING_MESSAGE)
        if "not on whitelist" in text:
            raise ProbeError(UNSUPPORTED_FORMAT_MESSAGE)
        raise ProbeError("Unreadable media file.")
    try:
        data = json.loads(stdout)
    except ValueError:
        raise ProbeError("Unreadable media file.") from None
    return parse_probe(data)


async def probe_file(
    path: str | os.PathLike[str],
    timeout: float = PROBE_TIMEOUT_SECONDS,
    demuxer: str | None = None,
    caps: MediaCaps | None = None,
    limits: ResourceLimits = PROBE_LIMITS,
) -> Probe:
    """Probe without blocking the loop; ffprobe is killed when it exceeds `timeout`.

    ffprobe runs under `limits` (memory, CPU time); the result must be within `caps`.
    """
    proc = await asyncio.create_subprocess_exec(
        *probe_command(path, demuxer),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=limits.preexec(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        log.warning("ffprobe timed out after %s s on %s", timeout, path)
        raise ProbeError("Timed out reading the media file.") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave it running
            proc.kill()
            await proc.wait()
    returncode = await proc.wait()
    return check_caps(_parse_output(path, returncode, stdout, stderr, limits), caps)


def probe_file_sync(
    path: str | os.PathLike[str],
    timeout: float = PROBE_TIMEOUT_SECONDS,
    demuxer: str | None = None,
    caps: MediaCaps | None = None,
    limits: ResourceLimits = PROBE_LIMITS,
) -> Probe:
    """Blocking probe for the transcode child process (never call it on the loop)."""
    try:
        done = subprocess.run(
            probe_command(path, demuxer),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=limits.preexec(),
        )
    except subprocess.TimeoutExpired:  # run() has already killed ffprobe
        log.warning("ffprobe timed out after %s s on %s", timeout, path)
        raise ProbeError("Timed out reading the media file.") from None
    return check_caps(_parse_output(path, done.returncode, done.stdout, done.stderr, limits), caps)


def first_video_pts(segment: str | os.PathLike[str], timeout: float = 30.0) -> int | None:
    """The 90 kHz PTS of the first video packet of an MPEG-TS segment (ffprobe), or None."""
    try:
        done = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-f",
                "mpegts",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=pts",
                "-read_intervals",
                "%+#1",
                "-of",
                "csv=p=0",
                "file:" + os.fspath(segment),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    for line in done.stdout.decode("ascii", "replace").split():
        value = line.strip().strip(",")
        if value.isdigit():
            return int(value)
    return None


@dataclass(frozen=True)
class PacketScan:
    """The video packets of a source, read without decoding (packet_scan_sync)."""

    keyframes: tuple[float, ...]  # presentation times (s, container clock) of the key packets, in order
    first_is_key: bool  # the first packet in decode order is a keyframe
    end: float  # the latest presentation end time of any packet (s, container clock)
    total_bytes: int  # the stream's payload, for its average bitrate


# Fields of a packet line in packet_scan_sync's CSV output, in the order ffprobe prints
# them (its own order, whatever the order asked for).
_PACKET_FIELDS = ("pts_time", "duration_time", "size", "flags")


def parse_packet_scan(text: str) -> PacketScan:
    """ffprobe's `-show_entries packet=pts_time,duration_time,size,flags -of csv=p=0`
    output (fields in that order) into a PacketScan (pure)."""
    keyframes: list[float] = []
    first_is_key: bool | None = None
    end = 0.0
    total = 0
    for line in text.splitlines():
        fields = line.strip().split(",")
        if len(fields) < len(_PACKET_FIELDS):
            continue
        pts, duration, size, flags = (fields[0], fields[1], fields[2], fields[3])
        key = "K" in flags
        if first_is_key is None:
            first_is_key = key
        total += _int(size) or 0
        time = _float(pts)
        if time is None:
            continue
        end = max(end, time + (_float(duration) or 0.0))
        if key:
            keyframes.append(time)
    return PacketScan(tuple(sorted(keyframes)), bool(first_is_key), end, total)


def packet_scan_sync(
    path: str | os.PathLike[str],
    demuxer: str,
    stream_index: int,
    timeout: float = 10 * PROBE_TIMEOUT_SECONDS,
    limits: ResourceLimits = PROBE_LIMITS,
) -> PacketScan:
    """Every packet of one video stream, demuxed but not decoded (blocking: the transcode
    child only). Reads the whole file: seconds for hours of video."""
    command = [
        "ffprobe",
        "-v",
        "error",
        *input_options(demuxer),
        "-select_streams",
        str(int(stream_index)),
        "-show_entries",
        "packet=" + ",".join(_PACKET_FIELDS),
        "-of",
        "csv=p=0",
        "file:" + os.fspath(path),
    ]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=limits.preexec(),
        )
    except subprocess.TimeoutExpired:
        raise ProbeError("Timed out reading the media file.") from None
    if done.returncode != 0:
        raise ProbeError("Unreadable media file.")
    return parse_packet_scan(done.stdout.decode("ascii", "replace"))
