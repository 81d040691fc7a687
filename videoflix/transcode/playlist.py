"""The master playlist, written by us from the measured segments.

ffmpeg's own master reports the audio bitrate as BANDWIDTH under CRF (DESIGN.md), so the
numbers here come from the files ffmpeg produced: `measure_rendition` is the only IO;
parsing, the bitrate arithmetic and `master_playlist` are pure.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoflix.platform.media import IFRAME_PLAYLIST_NAME, MEDIA_PLAYLIST_NAME, SUBTITLES_DIR_NAME

log = logging.getLogger(__name__)

# Version 3: floating-point EXTINF durations (RFC 8216 section 7). Nothing in the master
# needs more.
HLS_VERSION = 3

# Apple's HLS authoring spec: playback starts with the first variant listed, and 720p is a
# start that most connections sustain while the player measures the real bandwidth.
START_RENDITION = "720p"

# "The peak segment bit rate of a Media Playlist is the largest bit rate of any contiguous
# set of segments whose total duration is between 0.5 and 1.5 times the target duration"
# (RFC 8216 section 4.1); BANDWIDTH must be at least that (section 4.3.4.2). Windows rather
# than single segments keep a short final segment from inflating the peak.
PEAK_WINDOW_MIN = 0.5
PEAK_WINDOW_MAX = 1.5

# RFC 6381 codec strings. H.264: avc1.PPCCLL = profile_idc, constraint flags, level_idc.
AVC_PROFILES: dict[str, tuple[int, int]] = {
    "Constrained Baseline": (66, 0xE0),
    "Baseline": (66, 0x00),
    "Main": (77, 0x00),
    "Extended": (88, 0x00),
    "High": (100, 0x00),
}
AAC_LC_CODEC = "mp4a.40.2"  # MPEG-4 audio object type 2: AAC Low Complexity


class PlaylistError(Exception):
    """A media playlist we wrote is missing or unusable."""


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float  # EXTINF seconds
    size: int  # bytes


@dataclass(frozen=True)
class RenditionStats:
    segment_count: int
    duration: float  # sum of EXTINF, seconds
    total_bytes: int
    target_duration: int
    peak_bps: int  # RFC 8216 peak segment bit rate, rounded up
    average_bps: int  # total bits / total duration, rounded up


@dataclass(frozen=True)
class Variant:
    """One EXT-X-STREAM-INF line: a rendition as measured on disk."""

    name: str  # "720p"; the URI is "<name>/index.m3u8"
    width: int
    height: int
    fps: float
    codecs: str
    peak_bps: int
    average_bps: int


def parse_media_playlist(text: str) -> tuple[int, list[tuple[str, float]]]:
    """(target duration, [(segment URI, EXTINF duration), ...]) of a media playlist."""
    lines = [line.strip() for line in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("Not an HLS playlist.")
    target = 0
    entries: list[tuple[str, float]] = []
    pending: float | None = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.partition(":")[2])
        elif line.startswith("#EXTINF:"):
            pending = float(line.partition(":")[2].partition(",")[0])
        elif line and not line.startswith("#"):
            if pending is None:
                raise PlaylistError("Segment %r has no EXTINF." % line)
            entries.append((line, pending))
            pending = None
    if not entries:
        raise PlaylistError("The playlist has no segments.")
    if target <= 0:
        target = math.ceil(max(duration for _, duration in entries))
    return target, entries


PLAYLIST_TYPE_TAG = "#EXT-X-PLAYLIST-TYPE:"
ENDLIST_TAG = "#EXT-X-ENDLIST"


def vod_playlist(text: str) -> str:
    """A finished EVENT media playlist as VOD: the same lines, the type VOD, one
    #EXT-X-ENDLIST at the end (pure). PlaylistError if it lists no segment."""
    parse_media_playlist(text)
    lines = [line for line in text.splitlines() if line.strip() != ENDLIST_TAG]
    while lines and not lines[-1].strip():
        lines.pop()
    typed = False
    for index, line in enumerate(lines):
        if line.startswith(PLAYLIST_TYPE_TAG):
            lines[index] = PLAYLIST_TYPE_TAG + "VOD"
            typed = True
    if not typed:
        lines.insert(1, PLAYLIST_TYPE_TAG + "VOD")
    return "\n".join([*lines, ENDLIST_TAG]) + "\n"


def _bitrate(segments: Sequence[Segment]) -> float:
    seconds = sum(s.duration for s in segments)
    return sum(s.size for s in segments) * 8 / seconds if seconds > 0 else 0.0


def peak_bitrate(segments: Sequence[Segment], target_duration: float) -> float:
    """RFC 8216's peak segment bit rate, in bit/s."""
    low, high = PEAK_WINDOW_MIN * target_duration, PEAK_WINDOW_MAX * target_duration
    peak: float | None = None
    for start in range(len(segments)):
        seconds = 0.0
        for end in range(start, len(segments)):
            seconds += segments[end].duration
            alone_but_long = end == start and seconds > high
            if low <= seconds <= high or alone_but_long:
                rate = _bitrate(segments[start : end + 1])
                peak = rate if peak is None else max(peak, rate)
            if seconds > high:
                break
    # A video shorter than half a segment has no qualifying window: use all of it.
    return peak if peak is not None else _bitrate(segments)


def rendition_stats(segments: Sequence[Segment], target_duration: int) -> RenditionStats:
    if not segments:
        raise PlaylistError("The playlist has no segments.")
    return RenditionStats(
        segment_count=len(segments),
        duration=sum(s.duration for s in segments),
        total_bytes=sum(s.size for s in segments),
        target_duration=target_duration,
        peak_bps=math.ceil(peak_bitrate(segments, target_duration)),
        average_bps=math.ceil(_bitrate(segments)),
    )


def measure_rendition(directory: str | os.PathLike[str]) -> RenditionStats:
    """Read `<directory>/index.m3u8` and the sizes of the segments it lists."""
    directory = Path(directory)
    try:
        text = (directory / MEDIA_PLAYLIST_NAME).read_text(encoding="utf-8")
        target, entries = parse_media_playlist(text)
        segments = [Segment(uri, duration, (directory / uri).stat().st_size) for uri, duration in entries]
    except (OSError, ValueError) as error:
        raise PlaylistError("Cannot measure %s: %s" % (directory, error)) from error
    return rendition_stats(segments, target)


def avc1_codec(profile: str | None, level: int | None) -> str:
    """'avc1.640028' for profile High, level 4.0 (RFC 6381 section 3.3)."""
    profile_idc, constraints = AVC_PROFILES.get(profile or "", AVC_PROFILES["High"])
    if not level or level <= 0:
        raise PlaylistError("Unknown H.264 level.")
    return "avc1.%02x%02x%02x" % (profile_idc, constraints, level)


def codecs_attribute(profile: str | None, level: int | None, has_audio: bool) -> str:
    codecs = [avc1_codec(profile, level)]
    if has_audio:
        codecs.append(AAC_LC_CODEC)
    return ",".join(codecs)


def _short_side(variant: Variant) -> int:
    return min(variant.width, variant.height)


def order_variants(variants: Iterable[Variant]) -> list[Variant]:
    """START_RENDITION first when present, then the rest highest first."""
    ordered = sorted(variants, key=lambda v: (_short_side(v), v.peak_bps), reverse=True)
    start = [v for v in ordered if v.name == START_RENDITION]
    return start + [v for v in ordered if v.name != START_RENDITION]


@dataclass(frozen=True)
class SubtitleTrack:
    """One EXT-X-MEDIA TYPE=SUBTITLES entry (the subs branch fills these)."""

    language: str  # BCP 47; also the URI part: <prefix>subtitles/<language>/index.m3u8
    label: str  # NAME, shown by players
    default: bool = False


SUBTITLES_GROUP = "subs"


def _quoted(value: str) -> str:
    """An HLS quoted-string: no double quote, CR or LF inside (RFC 8216 section 4.2)."""
    return '"%s"' % value.replace('"', "'").replace("\r", " ").replace("\n", " ")


def master_playlist(
    variants: Iterable[Variant],
    *,
    prefix: str = "",
    subtitles: Sequence[SubtitleTrack] = (),
    iframes: Sequence[Variant] = (),
) -> str:
    """The master playlist text; URIs are relative (`<prefix><name>/index.m3u8`)."""
    ordered = order_variants(variants)
    if not ordered:
        raise PlaylistError("A master playlist needs at least one variant.")
    lines = ["#EXTM3U", "#EXT-X-VERSION:%d" % HLS_VERSION, "#EXT-X-INDEPENDENT-SEGMENTS"]
    for track in subtitles:
        lines.append(
            '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="%s",NAME=%s,LANGUAGE=%s,DEFAULT=%s,AUTOSELECT=YES,URI=%s'
            % (
                SUBTITLES_GROUP,
                _quoted(track.label or track.language),
                _quoted(track.language),
                "YES" if track.default else "NO",
                _quoted("%s%s/%s/%s" % (prefix, SUBTITLES_DIR_NAME, track.language, MEDIA_PLAYLIST_NAME)),
            )
        )
    group = ',SUBTITLES="%s"' % SUBTITLES_GROUP if subtitles else ""
    for v in ordered:
        lines.append(
            "#EXT-X-STREAM-INF:BANDWIDTH=%d,AVERAGE-BANDWIDTH=%d,RESOLUTION=%dx%d,"
            'CODECS="%s",FRAME-RATE=%.3f%s' % (v.peak_bps, v.average_bps, v.width, v.height, v.codecs, v.fps, group)
        )
        lines.append("%s%s/%s" % (prefix, v.name, MEDIA_PLAYLIST_NAME))
    for v in order_variants(iframes):
        lines.append(
            '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=%d,AVERAGE-BANDWIDTH=%d,RESOLUTION=%dx%d,CODECS="%s",URI="%s%s/%s"'
            % (v.peak_bps, v.average_bps, v.width, v.height, v.codecs, prefix, v.name, IFRAME_PLAYLIST_NAME)
        )
    return "\n".join(lines) + "\n"


def _variant_of(item: dict[str, Any]) -> Variant:
    return Variant(
        name=str(item["name"]),
        width=int(item["width"]),
        height=int(item["height"]),
        fps=float(item.get("fps") or 0.0),
        codecs=str(item["codecs"]),
        peak_bps=int(item["peak_bps"]),
        average_bps=int(item["average_bps"]),
    )


def render_master(ladder: dict[str, Any], subtitles: Sequence[SubtitleTrack] = (), prefix: str = "") -> str:
    """The master playlist of one version from its ladder.json (transcode/ladderfile.py),
    rendered per request: `prefix` is "v<N>/" so every URI names the version;
    I-frame playlists come from the ladder's `iframes`. PlaylistError when the
    ladder is unusable."""
    try:
        variants = [_variant_of(item) for item in ladder["variants"]]
        iframes = [_variant_of(item) for item in ladder.get("iframes") or ()]
    except (KeyError, TypeError, ValueError) as error:
        raise PlaylistError("Malformed ladder: %s" % error) from error
    return master_playlist(variants, prefix=prefix, subtitles=subtitles, iframes=iframes)
