"""Subtitles, pure: strict SRT -> WebVTT, WebVTT validation, language tags, labels,
and cutting a WebVTT file into HLS WebVTT segments.

Everything here takes and returns values (no IO), so the tests exercise it directly;
callers run it in the file executor (a 2 MiB file is tens of milliseconds of CPU).

Why our own parsers: the SRT and WebVTT readers on PyPI are lenient by design.
`srt` (3.5) accepts `0:0:1,0` and `- >` arrows, keeps cues that end before they start,
and backtracks for seconds on crafted 2 MB inputs; webvtt-py (0.6) accepts
"WEBVTTgarbage" signatures, NUL characters, backwards times and drops malformed cues
silently. An upload must be refused with a reason (and a line number) instead, and
what we store must be our own serialization, so the parsers below are small,
line-based and linear. Language tags are `langcodes`' job (IANA registry data, RFC
5646 canonical forms, ISO 639-2 aliases such as eng/ger/fre): see `check_language`.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

import langcodes
from langcodes.tag_parser import LanguageTagError

# A feature film's SRT is 50-150 KB; 2 MiB leaves room for dense karaoke files and
# bounds the memory one upload may hold and the CPU it may cost (CWE-400).
MAX_FILE_BYTES = 2 * 1024 * 1024
# A cue every half second for five hours.
MAX_CUES = 36_000
# Characters of one cue's text: a screenful is a few hundred.
MAX_CUE_CHARS = 2_000
# Cues may not start or end past this (sane times; WebVTT hours are unbounded).
MAX_TIME_MS = 100 * 3600 * 1000
# Hour digits read as a number at most: more is past MAX_TIME_MS whatever they say (and
# int() refuses over 4,300 digits: a timing of any length must be a clean error).
MAX_HOUR_DIGITS = 4
# A track cut into HLS segments (cut_segments) repeats a cue in every segment it spans:
# bounded, so a file of long overlapping cues cannot make a huge cut (CWE-400).
MAX_CUT_BYTES = 32 * 1024 * 1024
# RFC 5646 §4.4.1: implementations need not keep tags longer than 35 characters.
MAX_LANGUAGE_CHARS = 35
MAX_LABEL_CHARS = 64
# "und" (ISO 639-2 "undetermined") when a container names no language.
UNDETERMINED = "und"

# RFC 5646 §2.1 shape (before langcodes checks the registry): subtags of 1-8 ASCII
# letters/digits separated by single hyphens, starting with a 2-3 letter language,
# a 4-8 letter registered language, an `x-` private-use or an `i-` grandfathered tag.
_LANGUAGE_SHAPE = re.compile(r"(?:[A-Za-z]{2,8}|[xXiI])(?:-[A-Za-z0-9]{1,8})*")

# WebVTT timestamp (W3C WebVTT §4.5): hours optional, at least two digits when
# present; minutes and seconds two digits below 60; exactly three fraction digits.
_VTT_TIME = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_VTT_TIMING = re.compile(rf"{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+(.*))?")
# SRT timestamp: HH:MM:SS,mmm (a dot instead of the comma is common and unambiguous).
_SRT_TIME = r"(\d{1,3}):([0-5]\d):([0-5]\d)[,.](\d{3})"
# Anything after the end time (SubRip's X1:.. Y2:.. coordinates) is ignored.
_SRT_TIMING = re.compile(rf"{_SRT_TIME}[ \t]*-->[ \t]*{_SRT_TIME}(?:[ \t]+.*)?")
# Cue settings kept (W3C WebVTT §4.4); anything else is dropped, as browsers ignore it.
_SETTINGS = {
    "vertical": re.compile(r"rl|lr"),
    "line": re.compile(r"(?:-?\d+|\d+(?:\.\d+)?%)(?:,(?:start|center|end))?"),
    "position": re.compile(r"\d+(?:\.\d+)?%(?:,(?:line-left|center|line-right))?"),
    "size": re.compile(r"\d+(?:\.\d+)?%"),
    "align": re.compile(r"start|center|end|left|right"),
}
# SRT markup WebVTT has too; every other tag (<font ...>) is dropped, every other
# "<", ">" and "&" escaped, so SRT text can never open WebVTT markup of its own.
_SRT_TAG = re.compile(r"<(/?)([biuBIU])>|</?[A-Za-z][^<>\n]*>|\{\\[^{}\n]*\}")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


class SubtitleError(ValueError):
    """The file or field cannot be used; str(error) says why (fit for the user)."""


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str  # WebVTT cue text: one or more non-empty lines, never "-->"
    settings: str = ""  # validated WebVTT cue settings, space separated


# --- text ----------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM is allowed), no NUL, line endings normalised to "\\n"."""
    if len(data) > MAX_FILE_BYTES:
        raise SubtitleError(f"The subtitle file is too large: at most {MAX_FILE_BYTES} bytes.")
    if b"\x00" in data:
        raise SubtitleError("The subtitle file contains NUL bytes: it is not a text file.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SubtitleError(f"Line {line}: the subtitle file is not valid UTF-8.") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _ms(hours: str | None, minutes: str, seconds: str, millis: str) -> int:
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def format_time(ms: int) -> str:
    """WebVTT timestamp, hours always present: 01:02:03.004."""
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _check_cue(start: int, end: int, text: str, line: int) -> None:
    if end <= start:
        raise SubtitleError(f"Line {line}: the cue ends before it starts.")
    if end > MAX_TIME_MS:
        raise SubtitleError(f"Line {line}: the cue ends after {MAX_TIME_MS // 3_600_000} hours.")
    if len(text) > MAX_CUE_CHARS:
        raise SubtitleError(f"Line {line}: the cue text is longer than {MAX_CUE_CHARS} characters.")


def _blocks(lines: list[str], first: int = 0) -> list[tuple[int, list[str]]]:
    """(1-based line number, lines) of each run of non-blank lines from `first` on."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(lines[first:], start=first + 1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            blocks.append((start, current))
            current = []
    if current:
        blocks.append((start, current))
    return blocks


def _finish(cues: list[Cue]) -> list[Cue]:
    if len(cues) > MAX_CUES:
        raise SubtitleError(f"Too many cues: at most {MAX_CUES}.")
    if not cues:
        raise SubtitleError("The subtitle file has no cues.")
    # WebVTT wants cues in start order; SRT files are not always. Stable: ties keep
    # the file's order.
    return sorted(cues, key=lambda cue: (cue.start_ms, cue.end_ms))


# --- SRT -----------------------------------------------------------------------


def _srt_text(lines: list[str]) -> str:
    """SRT text as WebVTT cue text: <b>/<i>/<u> kept, other tags and ASS override
    blocks ({\\an8}) dropped, everything else escaped."""
    out = []
    for line in lines:
        pieces = []
        position = 0
        for match in _SRT_TAG.finditer(line):
            pieces.append(_escape(line[position : match.start()]))
            if match.group(2):
                pieces.append(f"<{match.group(1)}{match.group(2).lower()}>")
            position = match.end()
        pieces.append(_escape(line[position:]))
        text = "".join(pieces).strip()
        if text:
            out.append(text)
    return "\n".join(out)


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(char, char) for char in text)


def parse_srt(data: bytes) -> list[Cue]:
    """Strict SubRip: blocks of [index], `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text lines."""
    text = decode_text(data)
    if text.lstrip().startswith("WEBVTT"):
        raise SubtitleError("This is a WebVTT file: upload it with the .vtt extension.")
    cues: list[Cue] = []
    for number, block in _blocks(text.split("\n")):
        if len(cues) >= MAX_CUES:
            raise SubtitleError(f"Too many cues: at most {MAX_CUES}.")
        timing_at = 1 if block[0].strip().isdigit() and block[0].strip().isascii() else 0
        match = _SRT_TIMING.fullmatch(block[timing_at].strip()) if timing_at < len(block) else None
        if match is None:
            line = number + timing_at
            raise SubtitleError(f"Line {line}: expected a cue timing such as '00:00:01,000 --> 00:00:02,500'.")
        start, end = _ms(*match.groups()[:4]), _ms(*match.groups()[4:])
        cue_text = _srt_text(block[timing_at + 1 :])
        _check_cue(start, end, cue_text, number + timing_at)
        if cue_text:  # an empty cue shows nothing
            cues.append(Cue(start, end, cue_text))
    return _finish(cues)


# --- WebVTT --------------------------------------------------------------------


def _settings(raw: str | None) -> str:
    kept = []
    for token in (raw or "").split():
        name, _, value = token.partition(":")
        pattern = _SETTINGS.get(name)
        if pattern is not None and pattern.fullmatch(value):
            kept.append(f"{name}:{value}")
    return " ".join(kept)


def parse_vtt(data: bytes) -> list[Cue]:
    """A WebVTT file checked against the W3C syntax: the signature, then header lines,
    then NOTE/STYLE/REGION blocks (dropped) and cues. Cue identifiers, header lines
    (an uploaded X-TIMESTAMP-MAP among them) and invalid cue settings are dropped:
    what is stored is our own serialization of the cues."""
    text = decode_text(data)
    lines = text.split("\n")
    signature = lines[0]
    if not (signature == "WEBVTT" or signature.startswith(("WEBVTT ", "WEBVTT\t"))):
        raise SubtitleError("Line 1: a WebVTT file starts with 'WEBVTT'.")
    header_end = 1
    while header_end < len(lines) and lines[header_end].strip():
        if "-->" in lines[header_end]:
            raise SubtitleError(f"Line {header_end + 1}: a blank line must separate the header from the cues.")
        header_end += 1
    cues: list[Cue] = []
    for number, block in _blocks(lines, header_end):
        first = block[0]
        if first in ("NOTE", "STYLE", "REGION") or first.startswith(("NOTE ", "NOTE\t")):
            if any("-->" in line for line in block):
                raise SubtitleError(f"Line {number}: a {first.split()[0]} block may not contain '-->'.")
            continue
        if len(cues) >= MAX_CUES:
            raise SubtitleError(f"Too many cues: at most {MAX_CUES}.")
        timing_at = 0 if "-->" in first else 1  # an identifier line first
        match = _VTT_TIMING.fullmatch(block[timing_at]) if timing_at < len(block) else None
        if match is None:
            raise SubtitleError(f"Line {number + timing_at}: expected a cue timing such as '00:01.000 --> 00:02.500'.")
        groups = match.groups()
        if len(groups[0] or "") > MAX_HOUR_DIGITS or len(groups[4] or "") > MAX_HOUR_DIGITS:
            raise SubtitleError(f"Line {number + timing_at}: the cue ends after {MAX_TIME_MS // 3_600_000} hours.")
        start, end = _ms(*groups[:4]), _ms(*groups[4:8])
        payload = block[timing_at + 1 :]
        for offset, line in enumerate(payload):
            if "-->" in line:
                raise SubtitleError(
                    f"Line {number + timing_at + 1 + offset}: cue text may not contain '-->' "
                    "(is a blank line missing before this cue?)."
                )
        cue_text = "\n".join(line.rstrip() for line in payload)
        _check_cue(start, end, cue_text, number + timing_at)
        if cue_text.strip():
            cues.append(Cue(start, end, cue_text, _settings(groups[8])))
    return _finish(cues)


def parse_subtitles(data: bytes, kind: str) -> list[Cue]:
    """`kind` is "srt" or "vtt" (from the file name): the cues, or SubtitleError."""
    if kind == "srt":
        return parse_srt(data)
    if kind == "vtt":
        return parse_vtt(data)
    raise SubtitleError("Upload a .vtt or .srt file.")


def file_kind(filename: str) -> str:
    """ "srt" or "vtt" from an uploaded file's name; SubtitleError otherwise."""
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in ("srt", "vtt"):
        raise SubtitleError("Upload a .vtt or .srt file.")
    return suffix


def _cue_block(cue: Cue) -> str:
    timing = f"{format_time(cue.start_ms)} --> {format_time(cue.end_ms)}"
    if cue.settings:
        timing += " " + cue.settings
    return f"{timing}\n{cue.text}\n"


def render_vtt(cues: list[Cue], header: tuple[str, ...] = ()) -> str:
    """A WebVTT file of `cues` (header lines go under the signature)."""
    head = "\n".join(("WEBVTT", *header)) + "\n"
    return "\n".join([head, *(_cue_block(cue) for cue in cues)])


# --- language tags and labels --------------------------------------------------


def check_language(raw: str) -> str:
    """A BCP 47 tag (RFC 5646) in its canonical form ("EN-us" -> "en-US", "eng" ->
    "en", "iw" -> "he"), or SubtitleError.

    The shape is checked here first (ASCII, hyphens, subtag lengths: it becomes a
    file name and a URL part), then `langcodes.tag_is_valid` checks every subtag
    against the IANA registry it ships, so "xx" or "en-QQ" are refused; then
    `standardize_tag` gives the one spelling under which a language is stored, so
    "en-us" and "en-US" are the same track."""
    tag = raw.strip()
    if not tag or len(tag) > MAX_LANGUAGE_CHARS or not tag.isascii() or not _LANGUAGE_SHAPE.fullmatch(tag):
        raise SubtitleError("Not a BCP 47 language tag (e.g. en, de, pt-BR, zh-Hant).")
    try:
        if not langcodes.tag_is_valid(tag):
            raise SubtitleError("Unknown language tag: its subtags are not in the IANA registry.")
        canonical = langcodes.standardize_tag(tag)
    except (LanguageTagError, ValueError) as exc:
        if isinstance(exc, SubtitleError):
            raise
        raise SubtitleError("Not a BCP 47 language tag (e.g. en, de, pt-BR, zh-Hant).") from None
    if len(canonical) > MAX_LANGUAGE_CHARS or not _LANGUAGE_SHAPE.fullmatch(canonical):
        raise SubtitleError("Not a BCP 47 language tag (e.g. en, de, pt-BR, zh-Hant).")
    return canonical


def container_language(raw: str | None) -> str:
    """A container's language tag (ISO 639-2 "eng", "ger"; sometimes already BCP 47)
    as BCP 47 ("en", "de"); "und" when absent or not a language."""
    try:
        return check_language(raw or UNDETERMINED)
    except SubtitleError:
        return UNDETERMINED


def default_label(language: str) -> str:
    """ "English", "Portuguese (Brazil)", in English (langcodes' CLDR names)."""
    try:
        name = langcodes.Language.get(language).display_name()
    except (LanguageTagError, ValueError, LookupError):
        name = language
    return clean_label(name) if name else language


def clean_label(raw: str) -> str:
    """A label for the master's NAME="..." and the player's menu: trimmed, one line,
    1-64 characters, no double quote (RFC 8216 §4.2 quoted-string) and no control
    characters; SubtitleError otherwise."""
    label = " ".join(raw.split())
    if not label:
        raise SubtitleError("The label may not be empty.")
    if len(label) > MAX_LABEL_CHARS:
        raise SubtitleError(f"The label may have at most {MAX_LABEL_CHARS} characters.")
    if '"' in label or any(ord(char) < 32 or 0x7F <= ord(char) < 0xA0 for char in label):
        raise SubtitleError("The label may not contain double quotes or control characters.")
    if any(0xD800 <= ord(char) <= 0xDFFF for char in label):
        raise SubtitleError("Invalid Unicode text.")
    return label


def unique_label(label: str, taken: set[str]) -> str:
    """`label`, or "label (2)", "label (3)", ... : NAMEs are unique in a group (RFC 8216)."""
    if label not in taken:
        return label
    number = 2
    while True:
        suffix = f" ({number})"
        candidate = label[: MAX_LABEL_CHARS - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


# --- HLS segmenting ------------------------------------------------------------

# The 90 kHz clock of MPEG-TS PTS (RFC 8216 §3.5, X-TIMESTAMP-MAP).
PTS_HZ = 90_000


def segment_count(duration: float, segment_seconds: float) -> int:
    """Segments covering [0, duration): at least one."""
    if segment_seconds <= 0:
        raise ValueError("segment_seconds must be positive")
    return max(1, math.ceil(round(duration * 1000) / round(segment_seconds * 1000)))


def media_playlist(duration: float, segment_seconds: float, segment_name: str, *, complete: bool = True) -> str:
    """The WebVTT media playlist covering the whole duration (RFC 8216 §4.3.3):
    segment i covers [i*S, min((i+1)*S, duration)). `segment_name` is a %05d pattern."""
    count = segment_count(duration, segment_seconds)
    duration_ms = round(duration * 1000)
    step_ms = round(segment_seconds * 1000)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{math.ceil(segment_seconds)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD" if complete else "#EXT-X-PLAYLIST-TYPE:EVENT",
    ]
    for index in range(count):
        length = min(step_ms, duration_ms - index * step_ms) if duration_ms > 0 else step_ms
        lines.append(f"#EXTINF:{max(length, 1) / 1000:.3f},")
        lines.append(segment_name % index)
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# A cut track (cut_segments): this header, then count + 1 offsets (little-endian
# uint64, from the start of the bodies), then the bodies: the cue blocks of each
# segment, ready to follow a segment's own header. The canonical file's size and
# mtime say which file it was cut from (a replaced file makes it stale).
CUT_MAGIC = b"VFXCUT01"
_CUT_HEAD = struct.Struct("<8sIIqq")  # magic, segment_ms, count, source size, source mtime_ns
_CUT_OFFSET = struct.Struct("<Q")


@dataclass(frozen=True)
class CutHead:
    segment_ms: int
    count: int
    source_size: int
    source_mtime_ns: int

    @property
    def bodies_at(self) -> int:
        """Where the bodies start in the cut file."""
        return _CUT_HEAD.size + (self.count + 1) * _CUT_OFFSET.size


CUT_HEAD_BYTES = _CUT_HEAD.size
CUT_OFFSET_BYTES = _CUT_OFFSET.size


def cut_segments(cues: list[Cue], segment_ms: int, source_size: int, source_mtime_ns: int) -> bytes:
    """`cues` cut into segments of `segment_ms` once, so that serving a segment reads
    one small range instead of parsing the file: segment i holds every cue that
    overlaps [i*S, (i+1)*S) (render_segment's rule). SubtitleError when the cut would
    pass MAX_CUT_BYTES (long cues repeated in many segments)."""
    if segment_ms <= 0:
        raise ValueError("segment_ms must be positive")
    last_end = max((cue.end_ms for cue in cues), default=0)
    count = max(1, math.ceil(last_end / segment_ms))
    blocks = [(cue.start_ms // segment_ms, (cue.end_ms - 1) // segment_ms, _cue_block(cue).encode()) for cue in cues]
    total = sum((last - first + 1) * (len(block) + 1) for first, last, block in blocks)
    if total > MAX_CUT_BYTES:
        raise SubtitleError(
            "The cues overlap too much: long cues repeated in every segment they span "
            f"would make more than {MAX_CUT_BYTES // (1024 * 1024)} MiB."
        )
    bodies: list[list[bytes]] = [[] for _ in range(count)]
    for first, last, block in blocks:
        for index in range(first, min(last, count - 1) + 1):
            bodies[index].append(block)
    joined = [b"\n".join([b"", *body]) for body in bodies]  # each block after a blank line
    offsets = [0]
    for body in joined:
        offsets.append(offsets[-1] + len(body))
    return b"".join(
        [
            _CUT_HEAD.pack(CUT_MAGIC, segment_ms, count, source_size, source_mtime_ns),
            *(_CUT_OFFSET.pack(offset) for offset in offsets),
            *joined,
        ]
    )


def with_source(cut: bytes, source_size: int, source_mtime_ns: int) -> bytes:
    """`cut` (made before its canonical file was written) naming that file's identity."""
    head = read_cut_head(cut[: _CUT_HEAD.size])
    return _CUT_HEAD.pack(CUT_MAGIC, head.segment_ms, head.count, source_size, source_mtime_ns) + cut[_CUT_HEAD.size :]


def read_cut_head(data: bytes) -> CutHead:
    """The head of a cut file (its first CUT_HEAD_BYTES); ValueError if it is not one."""
    magic, segment_ms, count, size, mtime_ns = _CUT_HEAD.unpack(data)
    if magic != CUT_MAGIC or segment_ms <= 0 or count <= 0:
        raise ValueError("not a cut subtitle file")
    return CutHead(segment_ms, count, size, mtime_ns)


def cut_offsets_at(index: int) -> int:
    """Where the offsets of segment `index` and the next one are in a cut file."""
    return _CUT_HEAD.size + index * _CUT_OFFSET.size


def read_cut_span(data: bytes) -> tuple[int, int]:
    """(start, end) of a segment's body from its two offsets (2 * CUT_OFFSET_BYTES)."""
    start, end = struct.unpack("<QQ", data)
    if end < start:
        raise ValueError("corrupt cut subtitle file")
    return start, end


def segment_head(start_pts: int) -> bytes:
    """What every subtitle segment starts with: the signature and the timestamp map."""
    return f"WEBVTT\n{timestamp_map(start_pts)}\n".encode()


def timestamp_map(start_pts: int) -> str:
    """Maps cue time 0 to the PTS of the first video frame (RFC 8216 §3.5)."""
    return f"X-TIMESTAMP-MAP=MPEGTS:{int(start_pts)},LOCAL:00:00:00.000"


def render_segment(cues: list[Cue], index: int, segment_seconds: float, start_pts: int) -> str:
    """WebVTT segment `index`: every cue that overlaps [index*S, (index+1)*S), with
    its own times; a cue spanning a boundary is in both segments (players drop the
    duplicate: hls.js by start, end and text), as Apple's HLS spec allows."""
    step_ms = round(segment_seconds * 1000)
    low, high = index * step_ms, (index + 1) * step_ms
    inside = [cue for cue in cues if cue.start_ms < high and cue.end_ms > low]
    return render_vtt(inside, header=(timestamp_map(start_pts),))
