"""Copy when it fits (issue 23): whether the top rung can be the source's own video
stream, copied without a re-encode, and the AAC audio with it; and why not (pure).

A browser plays an H.264 stream as is when it is 8-bit 4:2:0 progressive Baseline,
Main or High, SDR, upright with square pixels, at a constant frame rate (or one with
dropped frames that still sit on the frame grid). It can be the top rung when its size
is exactly the top rendition's (pick_renditions: so never larger than the rung, never
scaled), its average bitrate is within the rung's cap, and its keyframes are never more
than a segment apart: ffmpeg's hls muxer cuts a segment at the first keyframe at or past
every multiple of the segment duration from the first packet, so every segment then
lasts less than twice the target.

The lower rungs are encoded from the same decode with keyframes forced at source
keyframe times (`CopyPlan.keyframes`, in ffmpeg's output clock: the container's start
time subtracted) and nowhere else (-sc_threshold 0, keyint above the longest gap), so
the hls muxer cuts every rung at the same times: identical EXTINF lists. Not every source
keyframe is kept: a segment's first keyframe always is, the others at most one per
GOP of the encode path, so a source with 0.5 s GOPs does not make the lower rungs
waste bits on keyframes (and the list stays short in ffmpeg's argv).

Every refusal says why in a few words ("source GOP 10 s"): ladder.json records it and
the studio shows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from videoflix.transcode import colour
from videoflix.transcode.ladder import NOMINAL_FPS_MAX_RATIO, NOMINAL_FPS_MIN_RATIO, Rendition, output_fps
from videoflix.transcode.probe import PacketScan, Probe

# ffprobe's names of the H.264 profiles every HLS client decodes (8-bit 4:2:0).
COPY_PROFILES = frozenset({"Baseline", "Constrained Baseline", "Main", "High"})
COPY_PIXEL_FORMATS = frozenset({"yuv420p"})
# Field orders of a progressive stream (ffprobe says "progressive" or nothing).
PROGRESSIVE = frozenset({"progressive", None})
# A keyframe further than this from the output frame grid (in frames, counted from the
# first keyframe) means timing the lower rungs' constant-rate encode cannot reproduce, so
# their cuts could differ.
GRID_TOLERANCE_FRAMES = 0.01
# Containers store the measured average of a capped AAC encoder: 128 kb/s comes out a
# little above or below the nominal rate.
AUDIO_BITRATE_SLACK = 1.03
# One argument of ffmpeg's argv may not exceed 128 KiB (Linux MAX_ARG_STRLEN); the
# forced-keyframe list stays well below.
MAX_KEYFRAME_ARG_CHARS = 100_000
# Two times closer than this are the same grid point (ffprobe prints microseconds).
EPSILON_SECONDS = 0.0005


@dataclass(frozen=True)
class CopyPlan:
    """How a job treats the source's streams (picklable)."""

    video: bool  # the top rung is the source's video stream, copied
    audio: bool  # the source's audio stream is copied (only with `video`)
    reason: str | None = None  # why the video is encoded (None when copied)
    audio_reason: str | None = None  # why the audio is encoded (None when copied or absent)
    keyframes: tuple[float, ...] = ()  # output times of the encoded rungs' keyframes
    longest_gap: float = 0.0  # seconds between two of those keyframes, at most

    def note(self) -> str:
        """For the studio: "copied" or "encoded: <why>"."""
        return "copied" if self.video else "encoded: %s" % (self.reason or "")


def encode_everything(reason: str) -> CopyPlan:
    return CopyPlan(video=False, audio=False, reason=reason)


def _seconds(value: float) -> str:
    """3.0 -> "3", 2.5 -> "2.5", 10.04 -> "10" (for reasons)."""
    text = "%.1f" % value
    return text[:-2] if text.endswith(".0") else text


def stream_refusal(probe: Probe, top: Rendition, segment_seconds: int) -> str | None:
    """Why the video stream cannot be copied, from the probe alone (None: it may be,
    if its packets agree: packet_refusal)."""
    if probe.video_codec != "h264":
        return "source codec %s" % probe.video_codec
    if probe.video_profile not in COPY_PROFILES:
        return "source profile %s" % (probe.video_profile or "unknown")
    if probe.pixel_format not in COPY_PIXEL_FORMATS:
        return "source pixel format %s" % (probe.pixel_format or "unknown")
    if probe.field_order not in PROGRESSIVE:
        return "source interlaced"
    if probe.rotation:
        return "source rotated %d°" % probe.rotation
    if (probe.coded_width, probe.coded_height) != (probe.width, probe.height):
        return "source non-square pixels"
    transfer = colour.hdr_transfer(probe.color_transfer)
    if transfer is not None:
        return "source HDR (%s)" % transfer
    if (top.width, top.height) != (probe.width, probe.height):
        return "source %dx%d scaled to %dx%d" % (probe.width, probe.height, top.width, top.height)
    nominal = probe.nominal_fps
    if nominal is None or not NOMINAL_FPS_MIN_RATIO <= probe.fps / nominal <= NOMINAL_FPS_MAX_RATIO:
        return "source variable frame rate"
    if abs(output_fps(probe) - nominal) > 0.01 * nominal:
        return "source %s fps" % _seconds(nominal)
    return None


def _grid_offset(time: float, fps: float) -> float:
    """How far `time` is from the nearest frame of a constant `fps`, in frames."""
    frames = time * fps
    return abs(frames - round(frames))


def _cut_points(times: Sequence[float], segment_seconds: int) -> set[float]:
    """The keyframes the hls muxer starts a segment at: the first at or past each multiple
    of the target from the first (and, against rounding, the first at or past it less
    EPSILON_SECONDS)."""
    start = times[0]
    cuts = {start}
    for slack in (0.0, EPSILON_SECONDS):
        number = 1
        for time in times[1:]:
            if time - start >= segment_seconds * number - slack:
                cuts.add(time)
                number += 1
    return cuts


def thin_keyframes(times: Sequence[float], segment_seconds: int, gop_seconds: float) -> list[float]:
    """The keyframes the encoded rungs get (pure): every segment's first, and others at
    least `gop_seconds` after the last one kept."""
    cuts = _cut_points(times, segment_seconds)
    kept: list[float] = []
    for time in times:
        if time in cuts or not kept or time - kept[-1] >= gop_seconds - EPSILON_SECONDS:
            kept.append(time)
    return kept


def keyframe_arg(times: Sequence[float]) -> str:
    """-force_key_frames' list: seconds with millisecond precision (pure)."""
    return ",".join("%.3f" % max(0.0, t) for t in times)


def plan_copy(
    probe: Probe,
    scan: PacketScan,
    top: Rendition,
    segment_seconds: int,
    gop_seconds: int,
    audio_kbps: int,
) -> CopyPlan:
    """The copy decision (pure). The job asks stream_refusal first, and scans the packets
    (probe.packet_scan_sync) only when it says nothing."""
    refusal = stream_refusal(probe, top, segment_seconds)
    if refusal is not None:
        return encode_everything(refusal)
    if not scan.keyframes or not scan.first_is_key:
        return encode_everything("source does not start with a keyframe")
    times = [t - probe.start_time for t in scan.keyframes]
    end = max(scan.end - probe.start_time, times[-1])
    gaps = [b - a for a, b in zip(times, [*times[1:], end], strict=True)]
    longest = max(gaps)
    if longest > segment_seconds + EPSILON_SECONDS:
        return encode_everything("source GOP %s s" % _seconds(longest))
    fps = output_fps(probe)
    # On the grid from the first keyframe: the audio may start a fraction of a frame
    # earlier (a transport stream, AAC priming); the encoded rungs' frames then sit that
    # fraction off the copied rung's, a constant under half a frame, and the cuts and
    # EXTINFs, differences of times, stay the same.
    if any(_grid_offset(t - times[0], fps) > GRID_TOLERANCE_FRAMES for t in times):
        return encode_everything("source keyframes off the frame grid")
    duration = max(probe.duration, end - times[0])
    kbps = scan.total_bytes * 8 / 1000 / duration if duration > 0 else math.inf
    # What the rung's own encoder may produce: its cap, plus a full VBV buffer spread over
    # the duration (a short clip's average can exceed the cap by that much).
    if kbps > top.max_kbps + top.bufsize_kbps / duration:
        return encode_everything("source %d kb/s over the %s cap of %d kb/s" % (round(kbps), top.name, top.max_kbps))
    kept = thin_keyframes(times, segment_seconds, gop_seconds)
    if len(keyframe_arg(kept)) > MAX_KEYFRAME_ARG_CHARS:
        kept = sorted(_cut_points(times, segment_seconds))
        if len(keyframe_arg(kept)) > MAX_KEYFRAME_ARG_CHARS:
            return encode_everything("source too long to copy")
    kept_gaps = [b - a for a, b in zip(kept, [*kept[1:], end], strict=True)]
    audio_reason = audio_refusal(probe, audio_kbps)
    return CopyPlan(
        video=True,
        audio=probe.has_audio and audio_reason is None,
        reason=None,
        audio_reason=audio_reason,
        keyframes=tuple(kept),
        longest_gap=max(kept_gaps),
    )


def audio_refusal(probe: Probe, audio_kbps: int) -> str | None:
    """Why the audio stream is encoded (None: copied, or there is none)."""
    if not probe.has_audio:
        return None
    if probe.audio_codec != "aac" or probe.audio_profile != "LC":
        return " ".join(
            ["audio", probe.audio_codec or "unknown", *([probe.audio_profile] if probe.audio_profile else [])]
        )
    if probe.audio_channels != 2:
        channels = probe.audio_channels
        return "audio %s channel%s" % (channels or "unknown", "" if channels == 1 else "s")
    if probe.audio_bit_rate is None or probe.audio_bit_rate > audio_kbps * 1000 * AUDIO_BITRATE_SLACK:
        bitrate = "unknown" if probe.audio_bit_rate is None else "%d kb/s" % round(probe.audio_bit_rate / 1000)
        return "audio bitrate %s over %d kb/s" % (bitrate, audio_kbps)
    return None
