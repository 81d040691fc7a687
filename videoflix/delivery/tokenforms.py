"""The media token's query and header forms (VIDEOFLIX_MEDIA_TOKEN_FORM; README "Edge
delivery"): the token a request carries, and a playlist or WebVTT track with the token's
query on every URI it names (pure).

In the path form the token is a folder of the URL, and the relative URIs of the files
below it inherit it. In the query form a relative URI inherits no query, so what is
served under it carries `?<name>=<token>` on every URI: the media playlists, I-frame
playlists, subtitle playlists and the thumbnails track (whose cues name the sprite
sheets). In the header form the URIs carry nothing (the player adds the header).

A token is read from the raw request text, never percent-decoded, and only when it is
there exactly once: nginx (deploy/nginx.conf) reads the same raw text, so both refuse
the same requests; what comes out is checked by tokens.read_media_token like a path
token (strict shape, HMAC, expiry, scope).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from videoflix.platform import media

# The files whose URIs are rewritten under the query form, by route kind (answer.KINDS);
# segments, sprite sheets and subtitle segments name no other file.
PLAYLIST_KINDS = frozenset({"master", "vplaylist", "iframes", "subtitles"})
_TAG_URI = re.compile(rb'(URI=")([^"]*)(")')


def token_in_query(name: str, query: str) -> str:
    """The raw value of parameter `name` in the raw query string `query`: of its one
    `name=` pair ("" when there is none, or more than one; a bare `name` is no pair)."""
    found = [value for key, sep, value in (pair.partition("=") for pair in query.split("&")) if sep and key == name]
    return found[0] if len(found) == 1 else ""


def token_in_headers(values: Sequence[str]) -> str:
    """The one value of the token header ("" when absent or sent more than once)."""
    return values[0] if len(values) == 1 else ""


def with_query(uri: bytes, query: bytes) -> bytes:
    """`uri` with `query` appended to its query (before any fragment)."""
    uri, hash_sign, fragment = uri.partition(b"#")
    return uri + (b"&" if b"?" in uri else b"?") + query + hash_sign + fragment


def rewrites(kind: str, name: str) -> bool:
    """Whether the file `name` of route kind `kind` names other files (so carries the
    query form's token on them)."""
    return kind in PLAYLIST_KINDS or (kind == "thumbs" and name == media.THUMBNAILS_VTT_NAME)


def with_token_query(kind: str, name: str, data: bytes, query: str) -> bytes:
    """`data`, the file `name` of route kind `kind` (rewrites() is true for it), with
    `query` ("<name>=<token>") on every URI it names."""
    if kind == "thumbs":
        return vtt_with_query(data, query.encode())
    return playlist_with_query(data, query.encode())


def playlist_with_query(text: bytes, query: bytes) -> bytes:
    """An HLS playlist (RFC 8216 §4.1: a URI line is any line not starting with #, and
    tags name URIs in a quoted URI attribute) with `query` on every URI."""
    lines = text.split(b"\n")
    for index, line in enumerate(lines):
        bare = line.rstrip(b"\r")
        if not bare.strip():
            continue
        if not bare.startswith(b"#"):
            lines[index] = with_query(bare, query) + line[len(bare) :]
        elif bare.startswith(b"#EXT") and b'URI="' in bare:
            lines[index] = _TAG_URI.sub(lambda m: m[1] + with_query(m[2], query) + m[3], line)
    return b"\n".join(lines)


def vtt_with_query(text: bytes, query: bytes) -> bytes:
    """A thumbnails track (WebVTT whose cue payloads are URIs, `sprite_NNN.jpg#xywh=...`:
    transcode/sprites.py) with `query` on every cue's URI (the line after its timings)."""
    lines = text.split(b"\n")
    in_cue = False
    for index, line in enumerate(lines):
        bare = line.rstrip(b"\r")
        if not bare.strip():
            in_cue = False
        elif b"-->" in bare and not in_cue:
            in_cue = True
        elif in_cue:
            lines[index] = with_query(bare, query) + line[len(bare) :]
    return b"\n".join(lines)
