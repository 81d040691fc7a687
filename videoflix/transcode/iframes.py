"""I-frame playlists (RFC 8216 §4.3.3.6, Apple's HLS authoring spec): one per rendition,
`#EXT-X-I-FRAMES-ONLY` with `#EXT-X-BYTERANGE`s into the segments already written.

Finding the I-frames: ffprobe per segment is far too slow for a film (thousands of
segments), so the MPEG-TS packets are scanned here, in pure Python over the bytes: the
video PID comes from the PAT and PMT at the start of the segment; an I-frame starts at a
packet of that PID with payload_unit_start_indicator set and the adaptation field's
random_access_indicator (ffmpeg's mpegts muxer sets it on every keyframe's first packet,
right after a repeated PAT and PMT), and its PES header gives the PTS. The packet headers
are read with strided slices and `bytes.translate` (C speed), so only the few packets
that start a PES are looked at one by one. (No maintained PyPI package parses TS packet
headers this way; pure-Python TS demuxers walk every packet in Python, which is what
this avoids.)

The byte range of an I-frame runs from its first packet to the last packet of its PES
(the packet before the video PID's next unit start, skipping interleaved audio after it).
It does not include the PAT/PMT before it: "the Media Initialization Section is defined
by the bytes immediately preceding" (RFC 8216), as Apple's segmenter writes them too.
EXTINF is the time to the next I-frame, the last one's to the end of the presentation.

`scan_iframes`, `iframe_playlist` and `iframe_stats` are pure; `write_iframe_playlist`
reads the segments and writes <res>/iframes.m3u8 (in the transcode child).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from videoflix.platform.media import IFRAME_PLAYLIST_NAME, MEDIA_PLAYLIST_NAME
from videoflix.transcode.playlist import (
    PlaylistError,
    RenditionStats,
    Segment,
    Variant,
    parse_media_playlist,
    rendition_stats,
)

PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
# PMT stream_type of the video we write (H.264), and of HEVC should we ever write it.
VIDEO_STREAM_TYPES = frozenset({0x1B, 0x24})
PTS_CLOCK = 90_000
PTS_WRAP = 1 << 33
# #EXT-X-BYTERANGE needs version 4 (RFC 8216 §7), as does #EXT-X-I-FRAMES-ONLY.
IFRAME_PLAYLIST_VERSION = 4


class TSError(ValueError):
    """A segment that is not the MPEG-TS we wrote."""


@dataclass(frozen=True)
class IFrame:
    offset: int  # of its first TS packet in the segment
    length: int  # bytes, a multiple of PACKET_SIZE
    pts: int  # 90 kHz, 33 bits, as in the PES header


@dataclass(frozen=True)
class IFrameEntry:
    uri: str  # the segment, a bare name
    offset: int
    length: int
    pts: int  # unwrapped across the whole rendition
    duration: float  # seconds to the next I-frame (or the end)


def _pid(packet_header: bytes | memoryview) -> int:
    return ((packet_header[1] & 0x1F) << 8) | packet_header[2]


def _payload(data: bytes, index: int) -> memoryview:
    """The payload of packet `index` (after any adaptation field)."""
    start = index * PACKET_SIZE
    control = (data[start + 3] >> 4) & 0x3
    offset = 4
    if control & 0x2:
        offset += 1 + data[start + 4]
    if not control & 0x1 or offset >= PACKET_SIZE:
        return memoryview(b"")
    return memoryview(data)[start + offset : start + PACKET_SIZE]


def _section(data: bytes, index: int) -> memoryview:
    """The PSI section starting in packet `index` (pointer_field skipped, up to its CRC)."""
    payload = _payload(data, index)
    if not payload:
        raise TSError("empty PSI packet")
    body = payload[1 + payload[0] :]
    if len(body) < 3:
        raise TSError("PSI section cut short")
    length = ((body[1] & 0x0F) << 8) | body[2]
    if 3 + length > len(body):
        raise TSError("PSI section spans packets")  # never so for ours: one program, 2 streams
    return body[: 3 + length - 4]  # without the CRC_32


def _first_unit(data: bytes, pid: int, count: int) -> int:
    for index in range(count):
        header = data[index * PACKET_SIZE : index * PACKET_SIZE + 3]
        if header[1] & 0x40 and _pid(header) == pid:
            return index
    raise TSError("no packet with PID 0x%x" % pid)


def video_pid(data: bytes) -> int:
    """The video elementary PID, from the PAT and PMT (which ffmpeg writes first)."""
    count = len(data) // PACKET_SIZE
    pat = _section(data, _first_unit(data, PAT_PID, count))
    if pat[0] != 0x00:
        raise TSError("PAT expected")
    pmt_pid = None
    for at in range(8, len(pat) - 3, 4):
        program = (pat[at] << 8) | pat[at + 1]
        if program != 0:  # 0 is the network PID
            pmt_pid = ((pat[at + 2] & 0x1F) << 8) | pat[at + 3]
            break
    if pmt_pid is None:
        raise TSError("PAT lists no program")
    pmt = _section(data, _first_unit(data, pmt_pid, count))
    if pmt[0] != 0x02:
        raise TSError("PMT expected")
    at = 12 + (((pmt[10] & 0x0F) << 8) | pmt[11])
    while at + 5 <= len(pmt):
        stream_type = pmt[at]
        pid = ((pmt[at + 1] & 0x1F) << 8) | pmt[at + 2]
        if stream_type in VIDEO_STREAM_TYPES:
            return pid
        at += 5 + (((pmt[at + 3] & 0x0F) << 8) | pmt[at + 4])
    raise TSError("PMT lists no video stream")


def _pes_pts(payload: memoryview) -> int:
    if len(payload) < 14 or bytes(payload[0:3]) != b"\x00\x00\x01":
        raise TSError("no PES header at a unit start")
    if not payload[7] & 0x80:
        raise TSError("PES without PTS")
    p = payload[9:14]
    return (((p[0] >> 1) & 0x07) << 30) | (p[1] << 22) | ((p[2] >> 1) << 15) | (p[3] << 7) | (p[4] >> 1)


def scan_iframes(data: bytes) -> list[IFrame]:
    """The I-frames of one TS segment, in file order (pure)."""
    if not data or len(data) % PACKET_SIZE:
        raise TSError("not a whole number of %d-byte packets" % PACKET_SIZE)
    count = len(data) // PACKET_SIZE
    if data[::PACKET_SIZE] != bytes([SYNC_BYTE]) * count:
        raise TSError("lost TS packet sync")
    pid = video_pid(data)
    # Byte 1 of every packet: transport_error (0x80), unit start (0x40), priority (0x20),
    # PID high bits. Mark the packets that start a unit of a PID with the video's high bits.
    wanted = 0x40 | (pid >> 8)
    marks = bytes(1 if (value & 0xDF) == wanted else 0 for value in range(256))
    flags = data[1::PACKET_SIZE].translate(marks)
    low = data[2::PACKET_SIZE]
    starts = []
    index = flags.find(1)
    while index >= 0:
        if low[index] == pid & 0xFF:
            starts.append(index)
        index = flags.find(1, index + 1)
    frames = []
    for n, index in enumerate(starts):
        at = index * PACKET_SIZE
        control = (data[at + 3] >> 4) & 0x3
        if not (control & 0x2 and data[at + 4] > 0 and data[at + 5] & 0x40):
            continue  # no random_access_indicator: not a keyframe
        # The PES ends before the next unit start of the video PID; packets of other
        # PIDs (audio) just before that are not part of it.
        last = (starts[n + 1] if n + 1 < len(starts) else count) - 1
        while last > index and _pid(data[last * PACKET_SIZE : last * PACKET_SIZE + 3]) != pid:
            last -= 1
        frames.append(IFrame(at, (last + 1 - index) * PACKET_SIZE, _pes_pts(_payload(data, index))))
    return frames


def iframe_entries(segments: Sequence[tuple[str, Sequence[IFrame]]], end_seconds: float) -> list[IFrameEntry]:
    """Entries with durations: to the next I-frame, the last one to `end_seconds` after
    the first I-frame (the presentation's length). PTS are unwrapped (33 bits)."""
    flat: list[tuple[str, IFrame, int]] = []
    previous = None
    wraps = 0
    for uri, frames in segments:
        for frame in frames:
            if previous is not None and frame.pts + PTS_WRAP // 2 < previous:
                wraps += 1  # the 33-bit clock wrapped (every 26.5 hours of PTS)
            previous = frame.pts
            flat.append((uri, frame, frame.pts + wraps * PTS_WRAP))
    if not flat:
        raise PlaylistError("No I-frames found.")
    end = flat[0][2] + round(end_seconds * PTS_CLOCK)
    entries = []
    for i, (uri, frame, pts) in enumerate(flat):
        following = flat[i + 1][2] if i + 1 < len(flat) else max(end, pts + 1)
        if following <= pts:
            raise PlaylistError("I-frame times do not increase.")
        entries.append(IFrameEntry(uri, frame.offset, frame.length, pts, (following - pts) / PTS_CLOCK))
    return entries


def target_duration(entries: Sequence[IFrameEntry]) -> int:
    return max(1, math.ceil(max(e.duration for e in entries) - 1e-6))


def iframe_playlist(entries: Sequence[IFrameEntry]) -> str:
    """The I-frame-only media playlist (VOD) text (pure)."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:%d" % IFRAME_PLAYLIST_VERSION,
        "#EXT-X-TARGETDURATION:%d" % target_duration(entries),
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-I-FRAMES-ONLY",
    ]
    for entry in entries:
        lines += [
            "#EXTINF:%.6f," % entry.duration,
            "#EXT-X-BYTERANGE:%d@%d" % (entry.length, entry.offset),
            entry.uri,
        ]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def iframe_stats(entries: Sequence[IFrameEntry]) -> RenditionStats:
    """Peak (RFC 8216's definition, over I-frame "segments") and average bit rates."""
    return rendition_stats([Segment(e.uri, e.duration, e.length) for e in entries], target_duration(entries))


def video_codec(codecs: str) -> str:
    """The video entry of a CODECS attribute (playlist.codecs_attribute puts it first):
    an I-frame stream has no audio."""
    return codecs.split(",")[0]


@dataclass(frozen=True)
class IFrameStream:
    """One #EXT-X-I-FRAME-STREAM-INF: a rendition's I-frame playlist as measured
    (ladder.json's "iframes" entries have these keys)."""

    name: str  # the rendition; the URI is "<name>/iframes.m3u8"
    width: int
    height: int
    codecs: str  # video only
    peak_bps: int
    average_bps: int

    @classmethod
    def of(cls, variant: Variant, stats: RenditionStats) -> IFrameStream:
        return cls(
            variant.name, variant.width, variant.height, video_codec(variant.codecs), stats.peak_bps, stats.average_bps
        )


def write_iframe_playlist(rendition_dir: str | os.PathLike[str]) -> RenditionStats:
    """Scan the segments listed in <rendition_dir>/index.m3u8 and write iframes.m3u8
    beside it (atomically); the I-frame stream's bit rates (transcode child)."""
    directory = Path(rendition_dir)
    try:
        _, listed = parse_media_playlist((directory / MEDIA_PLAYLIST_NAME).read_text(encoding="utf-8"))
        segments = [(uri, scan_iframes((directory / uri).read_bytes())) for uri, _ in listed]
    except (OSError, TSError) as error:
        raise PlaylistError("Cannot index the I-frames of %s: %s" % (directory.name, error)) from error
    entries = iframe_entries(segments, sum(duration for _, duration in listed))
    temporary = directory / (IFRAME_PLAYLIST_NAME + ".tmp")
    temporary.write_text(iframe_playlist(entries), encoding="utf-8")
    temporary.replace(directory / IFRAME_PLAYLIST_NAME)
    return iframe_stats(entries)
