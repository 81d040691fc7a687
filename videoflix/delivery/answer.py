"""The one answer to every GET or HEAD of something served whole: status, headers, body source (pure).

Media files (playlists, segments, trick-play files, images), bodies made per request
(a rendered master, subtitle playlists and segments) and the web app's pages and
assets are all answered here, from three inputs: the request's headers
(`RequestFacts`), the file's fstat or the bytes made, and the policy of their kind
(`KINDS`, or a `Policy` the caller makes). The HLS handlers, the segment lane, the
X-Accel-Redirect path and the page handlers only carry the `Answer` out (sendfile,
chunked reads, a write, or nothing for nginx), so they cannot disagree on a header.
No IO, no Tornado.

The rules, and where they come from:
- Validators. A file's ETag is its size, mtime and inode from the one fstat, never a
  hash of its contents (DESIGN.md, HLS files: no whole-file read on the loop); an
  object in a bucket (VIDEOFLIX_STORAGE=s3://...) keeps the store's own ETag and
  Last-Modified (`ObjectFacts`), so the answer is the same from any server and from
  its hot cache; bytes made in memory get a SHA-256 tag. A gzip coding is another representation, so it
  has another tag (`-gz`: RFC 9110 §8.8.3). Last-Modified is the file's mtime in
  whole seconds (RFC 9110 §8.8.2), on files only.
- 304 (RFC 9110 §13.1.2, §13.2.2): If-None-Match, compared weakly, `*` matching
  anything, when the request has one; else If-Modified-Since against Last-Modified.
- Ranges (RFC 9110 §14, httpranges.py): one satisfiable range is 206 with
  Content-Range; an unsatisfiable one 416 with `bytes */size`; the whole file, a
  malformed Range, several ranges or a stale If-Range (§13.1.5) a plain 200.
- gzip (RFC 9110 §12.5.3): only when Accept-Encoding gives it a non-zero q. A gzipped
  answer ignores Range (§14.2 lets a server) and says `Accept-Ranges: none`; whatever
  has a gzip coding says `Vary: Accept-Encoding` (§12.5.5) whether or not this answer
  is gzipped.
- HEAD is GET without the body (RFC 9110 §9.3.2): the same status and headers.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import gzip
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from videoflix.delivery import httpranges
from videoflix.platform import media

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"  # RFC 8216 §4
SEGMENT_TYPE = "video/MP2T"  # RFC 8216 §3.2 / RFC 3555
IMAGE_TYPE = "image/jpeg"
VTT_TYPE = "text/vtt; charset=utf-8"  # the WebVTT spec's MIME type
# A versioned segment never changes (a re-transcode writes a new version), and only
# this caller may keep it; so does the VOD playlist of a finished version.
IMMUTABLE_CACHE_CONTROL = "private, max-age=31536000, immutable"
# API.md §3's unversioned segment paths are served from whichever version is live,
# which a re-transcode changes under them: kept briefly, never immutable.
UNVERSIONED_SEGMENT_CACHE_CONTROL = "private, max-age=60"
# Playlists: `private` (access-controlled, no shared cache may keep them) and a few
# seconds, so a re-transcode or a deletion shows soon; after that the browser
# revalidates with If-None-Match and gets a bodiless 304.
PLAYLIST_CACHE_CONTROL = "private, max-age=5"
# A growing (EVENT) playlist and whatever is rendered per request: revalidated every time (304s).
REVALIDATE_CACHE_CONTROL = "private, no-cache"
# Text is gzipped in memory; a larger file (a 10-hour video at 2 s segments is a
# ~1 MB playlist) is sent as it is rather than held whole.
MAX_GZIP_BYTES = 4 * 1024 * 1024
GZIP_LEVEL = 6  # zlib's default: playlists are small, level 9 gains ~1% for 2x CPU
GZIP_TAG = "-gz"
# On every answer, ours and the handlers' (web/base.py): a browser renders nothing of
# ours as another type than the one we say, e.g. an uploaded file sniffed as HTML (CWE-430).
NOSNIFF = ("X-Content-Type-Options", "nosniff")


@dataclass(frozen=True)
class KindPolicy:
    """How the files of one route kind are served: one row of KINDS, read by the
    answers here, the handlers and the segment lane (what they may do with a kind)."""

    content_type: str
    text: bool  # small text: gzipped for clients that take it, Vary: Accept-Encoding
    cache_control: str  # once the file's version is finished ("": images.py decides)
    building_cache_control: str  # while its version is being built
    rendered: bool = False  # made per request (ladder.json, a subtitle file), never a file
    waits: bool = False  # of the version being built: a file not written yet is waited for, then 503
    accel: bool = False  # with VIDEOFLIX_ACCEL_REDIRECT, sent by nginx (accel.py)
    unchanging: bool = False  # never changes once written: kept open (openfiles.py), the segment lane's
    bulk: bool = False  # the bulk of all requests: a successful one is logged at DEBUG

    def cache_control_for(self, building: bool) -> str:
        return self.building_cache_control if building else self.cache_control


_PLAYLIST = KindPolicy(
    PLAYLIST_TYPE,
    text=True,
    cache_control=PLAYLIST_CACHE_CONTROL,
    building_cache_control=PLAYLIST_CACHE_CONTROL,
    waits=True,
    accel=True,
)
# Trick-play (transcode/sprites.py, iframes.py): <res>/iframes.m3u8 and thumbs/ of a
# version, written when its run ends: never waited for, immutable once finished.
_TRICKPLAY_CACHE = (IMMUTABLE_CACHE_CONTROL, REVALIDATE_CACHE_CONTROL)  # (finished, building)
_IMAGE = KindPolicy(IMAGE_TYPE, text=False, cache_control="", building_cache_control="")


# The master (from the version's ladder.json) and a version's subtitle playlists and
# segments (from the canonical WebVTT file): a new subtitle upload changes them under
# the same URL, so they are revalidated every time, versioned or not.
def _rendered(content_type: str) -> KindPolicy:
    return KindPolicy(
        content_type,
        text=True,
        cache_control=REVALIDATE_CACHE_CONTROL,
        building_cache_control=REVALIDATE_CACHE_CONTROL,
        rendered=True,
    )


KINDS: dict[str, KindPolicy] = {
    "master": _rendered(PLAYLIST_TYPE),
    "playlist": _PLAYLIST,
    # A growing (EVENT) playlist while its version is built, then immutable.
    "vplaylist": KindPolicy(
        PLAYLIST_TYPE,
        text=True,
        cache_control=IMMUTABLE_CACHE_CONTROL,
        building_cache_control=REVALIDATE_CACHE_CONTROL,
        waits=True,
        accel=True,
    ),
    "iframes": KindPolicy(PLAYLIST_TYPE, True, *_TRICKPLAY_CACHE),
    # JPEG sheets; the WebVTT track among them is text (media_policy).
    "thumbs": KindPolicy(IMAGE_TYPE, False, *_TRICKPLAY_CACHE),
    "segment": KindPolicy(
        SEGMENT_TYPE,
        text=False,
        cache_control=UNVERSIONED_SEGMENT_CACHE_CONTROL,
        building_cache_control=UNVERSIONED_SEGMENT_CACHE_CONTROL,
        waits=True,
        accel=True,
        unchanging=True,
        bulk=True,
    ),
    "vsegment": KindPolicy(
        SEGMENT_TYPE,
        text=False,
        cache_control=IMMUTABLE_CACHE_CONTROL,
        building_cache_control=IMMUTABLE_CACHE_CONTROL,
        waits=True,
        accel=True,
        unchanging=True,
        bulk=True,
    ),
    "subtitles": _rendered(PLAYLIST_TYPE),
    "subsegment": _rendered(VTT_TYPE),
    "thumbnail": _IMAGE,
    "poster": _IMAGE,
}


@dataclass(frozen=True, slots=True)
class Policy:
    """The headers one answer carries besides its validators and framing."""

    content_type: str
    cache_control: str
    compressible: bool = False  # a gzip coding exists: gzipped when accepted, Vary: Accept-Encoding
    extra: tuple[tuple[str, str], ...] = ()  # e.g. an image's Vary, a page's security headers


@functools.cache  # a few dozen distinct policies: shared, not made per request
def _policy(content_type: str, cache_control: str, compressible: bool) -> Policy:
    return Policy(content_type, cache_control, compressible)


def media_policy(kind: str, name: str, building: bool) -> Policy:
    """The Policy of file `name` of route kind `kind` (KINDS), its version being built or not."""
    row = KINDS[kind]
    if kind == "thumbs" and name == media.THUMBNAILS_VTT_NAME:  # the WebVTT track beside the sheets
        return _policy(VTT_TYPE, row.cache_control_for(building), True)
    return _policy(row.content_type, row.cache_control_for(building), row.text)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What of a request decides its answer."""

    head: bool  # HEAD: the GET's status and headers, no body
    range: str | None = None
    if_range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    accept_encoding: str = ""

    @classmethod
    def of(cls, method: str | None, headers: Mapping[str, str]) -> RequestFacts:
        """From a request's method and headers (a case-insensitive mapping: HTTPHeaders)."""
        get = headers.get
        return cls(
            method == "HEAD",
            get("Range"),
            get("If-Range"),
            get("If-None-Match"),
            get("If-Modified-Since"),
            get("Accept-Encoding") or "",
        )


@dataclass(frozen=True, slots=True)
class FileRange:
    """Bytes [start, end) of the open file (sendfile, or chunked reads)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class StoreRange:
    """Bytes [start, end) of an object in the store (platform/storage.py), streamed from
    it (storage.stream) or from the bytes already read whole: the answer's facts came
    from the store, not from an open file (answer_object)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class GzippedFile:
    """The whole (small, text) file gzip-compressed, made by the carrier in its file
    executor (mediafiles.read_gzipped); `with_gzipped` then completes the answer."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """Bytes made in memory."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Accel:
    """Nothing: nginx sends the file named by X-Accel-Redirect (accel.py)."""

    location: str


Body = FileRange | StoreRange | GzippedFile | Rendered | Accel


@dataclass(frozen=True, slots=True)
class Answer:
    """Status, headers in order (Vary may repeat: add it, set the others), and the body.
    A status >= 400 is an error to answer the caller's way (JSON), with these headers."""

    status: int
    headers: list[tuple[str, str]]
    body: Body | None = None  # what follows the headers; None: nothing
    with_body: bool = True  # False for HEAD: the headers are the GET's

    @property
    def error(self) -> bool:
        return self.status >= 400


NOT_MODIFIED = 304


# --- validators -----------------------------------------------------------------------


def file_etag(info: os.stat_result, gzipped: bool = False) -> str:
    """Size + mtime + inode of the one fstat (see the module docstring)."""
    return f'"{info.st_size:x}-{info.st_mtime_ns:x}-{info.st_ino:x}{GZIP_TAG if gzipped else ""}"'


def content_etag(data: bytes) -> str:
    """The strong tag of bytes made in memory (a rendered master, a page)."""
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def _coded(etag: str) -> str:
    """The tag of the gzip coding of the representation tagged `etag`."""
    return etag[:-1] + GZIP_TAG + '"'


@functools.lru_cache(maxsize=1024)
def http_date(seconds: int) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7); the files of a playing video share a few."""
    return email.utils.formatdate(seconds, usegmt=True)


_ETAGS = re.compile(r'\*|(?:W/)?"[^"]*"')


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 §8.8.3.2, §13.1.2): `*`, or any listed
    tag equal to `etag` once a W/ prefix is dropped from either."""
    tags = _ETAGS.findall(if_none_match)
    if not tags:
        return False
    if tags[0] == "*":
        return True
    own = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == own for tag in tags)


def not_modified(request: RequestFacts, etag: str, modified: int | None) -> bool:
    """304: If-None-Match when the request has one (RFC 9110 §13.2.2), else
    If-Modified-Since against `modified` (whole seconds), where there is one."""
    if request.if_none_match:
        return etag_matches(request.if_none_match, etag)
    if request.if_modified_since is None or modified is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(request.if_modified_since)
    except (TypeError, ValueError, OverflowError):
        return False  # an invalid date is ignored (RFC 9110 §13.1.3)
    if since.tzinfo is None:
        since = since.replace(tzinfo=datetime.UTC)
    return since.timestamp() >= modified


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What the answer needs of an object in the store: its size, the store's ETag
    (quoted) and Last-Modified (whole seconds; None when unknown: no Last-Modified)."""

    size: int
    etag: str
    modified: int | None


# --- answers --------------------------------------------------------------------------


def answer_file(request: RequestFacts, policy: Policy, info: os.stat_result) -> Answer:
    """The answer with a file whose fstat is `info` (see the module docstring)."""
    return _answer_bytes(request, policy, info.st_size, file_etag(info), int(info.st_mtime), stored=False)


def answer_object(request: RequestFacts, policy: Policy, facts: ObjectFacts) -> Answer:
    """The answer with an object of the store (a StoreRange body): the same rules as
    answer_file, the validators the store's."""
    return _answer_bytes(request, policy, facts.size, facts.etag, facts.modified, stored=True)


def answer_copy(request: RequestFacts, policy: Policy, facts: ObjectFacts) -> Answer:
    """The answer with a local copy of an object of the store (the hot cache): the
    object's validators, the copy's bytes (a FileRange body)."""
    return _answer_bytes(request, policy, facts.size, facts.etag, facts.modified, stored=False)


def _answer_bytes(
    request: RequestFacts, policy: Policy, size: int, identity_etag: str, modified: int | None, *, stored: bool
) -> Answer:
    gzipped = policy.compressible and size <= MAX_GZIP_BYTES and httpranges.accepts_gzip(request.accept_encoding)
    etag = _coded(identity_etag) if gzipped else identity_etag
    validators = [("Etag", etag)]
    if modified is not None:
        validators.append(("Last-Modified", http_date(modified)))
    if not_modified(request, etag, modified):
        return Answer(
            NOT_MODIFIED,
            [("Accept-Ranges", "bytes"), *validators, *_policy_headers(policy, with_type=False)],
            None,
            False,
        )
    if gzipped:
        return Answer(
            200,
            [("Accept-Ranges", "none"), *validators, *_policy_headers(policy), ("Content-Encoding", "gzip")],
            GzippedFile(),
            not request.head,
        )
    start, end = 0, size
    headers = [("Accept-Ranges", "bytes"), *validators, *_policy_headers(policy)]
    status = 200
    if request.range and httpranges.range_is_current(
        request.if_range, etag, None if modified is None else datetime.datetime.fromtimestamp(modified, datetime.UTC)
    ):
        try:
            wanted = httpranges.parse_byte_range(request.range, size)
        except httpranges.RangeNotSatisfiable:
            return Answer(416, [("Content-Range", f"bytes */{size}")])
        # A full range is a plain 200 (Chrome refuses a 206 for bytes=0-).
        if wanted is not None and wanted != (0, size):
            start, end = wanted
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
    headers.append(("Content-Length", str(end - start)))
    body = StoreRange(start, end) if stored else FileRange(start, end)
    return Answer(status, headers, body, not request.head)


def with_gzipped(answer: Answer, data: bytes) -> Answer:
    """`answer` (a GzippedFile body) once the carrier has compressed the file to `data`."""
    return Answer(
        answer.status, [*answer.headers, ("Content-Length", str(len(data)))], Rendered(data), answer.with_body
    )


def answer_rendered(
    request: RequestFacts, policy: Policy, data: bytes, etag: str | None = None, gzipped: bytes | None = None
) -> Answer:
    """The answer with bytes made in memory: `etag` is content_etag(data) (given when
    known already), `gzipped` their gzip coding when made already; with a compressible
    policy it is otherwise made here when accepted (a few KB: microseconds)."""
    etag = etag or content_etag(data)
    gzip_it = policy.compressible and httpranges.accepts_gzip(request.accept_encoding)
    if gzip_it:
        etag = _coded(etag)
    if not_modified(request, etag, None):
        return Answer(NOT_MODIFIED, [*_policy_headers(policy, with_type=False, etag=etag)], None, False)
    headers = _policy_headers(policy, etag=etag)
    if gzip_it:
        data = gzipped if gzipped is not None else gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(data))))
    return Answer(200, headers, Rendered(data), not request.head)


def answer_accel(request: RequestFacts, policy: Policy, location: str) -> Answer:
    """Behind nginx: the policy's headers and the file's name; nginx answers Range and
    the validators from the file itself (accel.py)."""
    return Answer(
        200,
        [*_policy_headers(policy), ("X-Accel-Redirect", location), ("Content-Length", "0")],
        Accel(location),
        not request.head,
    )


def _policy_headers(policy: Policy, with_type: bool = True, etag: str | None = None) -> list[tuple[str, str]]:
    # A 304 carries the 200's validators and caching headers but not its representation
    # metadata (RFC 9110 §15.4.5; Tornado drops a 304's Content-Type too).
    headers = [("Content-Type", policy.content_type)] if with_type else []
    headers.append(NOSNIFF)
    headers.append(("Cache-Control", policy.cache_control))
    if etag is not None:
        headers.append(("Etag", etag))
    if policy.compressible:
        headers.append(("Vary", "Accept-Encoding"))
    headers.extend(policy.extra)
    return headers
