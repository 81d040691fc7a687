"""Where files live under MEDIA_DIR, every name in there, and who may watch what (pure).

    media/.incoming/<random>.part     an upload being received
    media/.resumable/<upload id>      a resumable upload's bytes so far (library/resumable.py);
                                      hard-linked to sources/<id> when it becomes a video
    media/sources/<id>                the uploaded original
    media/.work/<id>-v<N>.lease       the lease fence of the run writing version N: the
                                      monotonic time its ffmpeg must stop by
    media/<id>/v<N>/                  version N (>= 1): one transcode run's output, written
                                      in place while it runs (README, Architecture: Transcode)
    media/<id>/v<N>/ladder.json       what the run produces (transcode/ladderfile.py): the
                                      master playlist is rendered from it per request
    media/<id>/v<N>/ladder.building.json  object storage only: the provisional ladder in the
                                      bucket while the run goes (ladder.json comes last)
    media/<id>/v<N>/<res>/index.m3u8  one media playlist per rendition (RUNGS: 1080p, 720p,
                                      480p): EVENT while the run goes, VOD once it is done
    media/<id>/v<N>/<res>/seg_NNNNN.ts  its MPEG-TS segments (each appears complete)
    media/<id>/v<N>/poster.jpg        representative frame, long side <= 1280 (or the chosen one)
    media/<id>/poster/poster.jpg, thumbnail.jpg  a poster chosen by the owner or an admin
                                      (library/posters.py), copied into every new version
    media/<id>/v<N>/thumbnail.jpg     the same, long side <= 480 (the catalog's thumbnail_url)
    media/<id>/v<N>/<res>/iframes.m3u8  I-frame playlist: byte ranges into the segments
    media/<id>/v<N>/thumbs/sprite_NNN.jpg  storyboard sprite sheets
    media/<id>/v<N>/thumbs/thumbnails.vtt  WebVTT track: cue -> sprite_NNN.jpg#xywh=x,y,w,h
    media/<id>/master.m3u8, <res>/, poster.jpg, thumbnail.jpg
                                      version 0, the wave-1 layout of videos made ready
                                      before versions existed: moved into a version
                                      folder at start-up (library/version_zero.py),
                                      through media/<id>/.wave1-move-<tag>/; never served

The row (sql/004) says which version is live (served, listed) and which one is
being built; `can_watch_version` is the access rule for a version.

The transcoder writes these names and the HTTP layer serves them: both take them
from here, and the serving rules (SEGMENT_NAME_RE, RESOLUTIONS) are derived from
what is written, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from videoflix.tables.videos import PlaybackVideo, Video

MASTER_PLAYLIST_NAME = "master.m3u8"  # rendered per request; a file only in the wave-1 layout
MEDIA_PLAYLIST_NAME = "index.m3u8"
LADDER_NAME = "ladder.json"
# A run without the original (issue 23, transcode/originals.py) reads the live version's top
# rung, its segments joined into this file of its own folder, removed when the run ends.
RUNG_INPUT_NAME = "input.ts"
# With object storage (platform/storage.py) a run works in this host's scratch: the original
# fetched from the bucket into its own folder under this name, removed when the run ends;
# without an original, the live version's top rung fetched into RUNG_FETCH_DIR/<vN>/<res>/
# before its segments are joined (transcode/mirror.py). Neither is ever copied to the bucket.
FETCHED_SOURCE_NAME = "source.input"
RUNG_FETCH_DIR = ".rung"
# In the bucket, the provisional ladder of a version being built: what its master is
# rendered from while the run goes. ladder.json itself is written last, after every other
# object of the version (a version prefix without it is never published); this one is
# removed once the version is live.
BUILDING_LADDER_NAME = "ladder.building.json"
IFRAME_PLAYLIST_NAME = "iframes.m3u8"  # per rendition (trickplay)
# URL part of a version's subtitle playlists, and media/<id>/subtitles/ (subs)
SUBTITLES_DIR_NAME = "subtitles"
POSTER_NAME = "poster.jpg"
THUMBNAIL_NAME = "thumbnail.jpg"
# ffmpeg's -hls_segment_filename pattern; 5 digits of 4 s segments cover 111 hours.
SEGMENT_PATTERN = "seg_%05d.ts"
# Trick-play (transcode/sprites.py, transcode/iframes.py): IFRAME_PLAYLIST_NAME above per
# rendition beside its index.m3u8, and the storyboard in thumbs/: sprite sheets (ffmpeg's
# image2 pattern, numbered from 0; 3 digits of 100-tile sheets at >= 2 s a tile cover
# 55 hours) and the WebVTT track pointing into them.
THUMBS_DIR = "thumbs"
SPRITE_PATTERN = "sprite_%03d.jpg"
THUMBNAILS_VTT_NAME = "thumbnails.vtt"


def _segment_name_re(pattern: str) -> re.Pattern[str]:
    """The names `pattern` (one %0Nd) writes, exactly: ASCII digits only, for
    fullmatch (`\\d` takes Unicode digits, `$` a trailing newline: CWE-22)."""
    match = re.fullmatch(r"([^%]*)%0([1-9])d([^%]*)", pattern)
    assert match is not None, pattern
    head, width, tail = match.groups()
    return re.compile(f"{re.escape(head)}[0-9]{{{width}}}{re.escape(tail)}")


SEGMENT_NAME_RE = _segment_name_re(SEGMENT_PATTERN)
SPRITE_NAME_RE = _segment_name_re(SPRITE_PATTERN)


@dataclass(frozen=True)
class Rung:
    name: str  # the rendition's folder under media/<id>/ and its URL part
    short_side: int  # rungs are named by the shorter side, so portrait video ranks the same
    max_kbps: int


# The rendition ladder, highest first: adding a rung is one line here. 6000 and
# 3000 kb/s are the 1080p and 720p rows of Apple's HLS authoring spec ladder; 1400
# sits between its 432p and 540p rows. The cap keeps BANDWIDTH meaningful under CRF.
RUNGS: tuple[Rung, ...] = (
    Rung("1080p", 1080, 6000),
    Rung("720p", 720, 3000),
    Rung("480p", 480, 1400),
)
RESOLUTIONS = tuple(rung.name for rung in RUNGS)

# A video id in a URL: decimal, no sign, no leading zero (one id has exactly one
# URL), fits a bigint. Routes and parse_video_id both use it.
VIDEO_ID_PATTERN = "[1-9][0-9]{0,17}"
_VIDEO_ID_RE = re.compile(VIDEO_ID_PATTERN)


class VideoNotFound(Exception):
    """No such video for this caller (unknown, not visible, not ready, no such
    file): always 404, so a private video cannot be told from a missing one."""


def parse_video_id(raw: str) -> int | None:
    return int(raw) if _VIDEO_ID_RE.fullmatch(raw) else None


def is_segment_name(name: str) -> bool:
    return SEGMENT_NAME_RE.fullmatch(name) is not None


def is_sprite_name(name: str) -> bool:
    return SPRITE_NAME_RE.fullmatch(name) is not None


def sprite_name(index: int) -> str:
    return SPRITE_PATTERN % index


def is_thumbs_file_name(name: str) -> bool:
    """A file below a version's thumbs/: the track or one of its sheets."""
    return name == THUMBNAILS_VTT_NAME or is_sprite_name(name)


def video_dir(media_dir: str, video_id: int) -> Path:
    return Path(media_dir) / str(int(video_id))


def source_path(media_dir: str, video_id: int) -> Path:
    return Path(media_dir) / "sources" / str(int(video_id))


# A chosen poster (library/posters.py): media/<id>/poster/{poster,thumbnail}.jpg, outside
# every version so a re-transcode keeps it (copied into each new version before it goes live).
CUSTOM_POSTER_DIR = "poster"


def custom_poster_dir(media_dir: str, video_id: int) -> Path:
    return video_dir(media_dir, video_id) / CUSTOM_POSTER_DIR


def incoming_dir(media_dir: str) -> Path:
    return Path(media_dir) / ".incoming"


# A resumable upload's id: 128 random bits in hex (library/resumable.py makes them; the
# route, the table's CHECK and resumable_path all hold to this, so no other name is a path).
UPLOAD_ID_PATTERN = "[0-9a-f]{32}"
_UPLOAD_ID_RE = re.compile(UPLOAD_ID_PATTERN)


def resumable_dir(media_dir: str) -> Path:
    """media/.resumable/: resumable uploads' files. Not .incoming/, whose files the sweeper
    removes after upload_idle_seconds without a write: these wait for their client for
    hours (until the upload expires)."""
    return Path(media_dir) / ".resumable"


def is_upload_id(name: str) -> bool:
    return _UPLOAD_ID_RE.fullmatch(name) is not None


def resumable_path(media_dir: str, upload_id: str) -> Path:
    if not is_upload_id(upload_id):
        raise ValueError("not an upload id")
    return resumable_dir(media_dir) / upload_id


def work_dir(media_dir: str) -> Path:
    return Path(media_dir) / ".work"


def hot_cache_dir(media_dir: str) -> Path:
    """media/.hot/: with object storage, the serving processes' local copies of hot
    immutable objects (delivery/hotcache.py), a folder per process below it."""
    return Path(media_dir) / ".hot"


# "v<N>": a version's folder and its URL part; N >= 1, no leading zero (one URL each).
VERSION_PATTERN = "v[1-9][0-9]{0,8}"
_VERSION_RE = re.compile(VERSION_PATTERN)


def version_name(version: int) -> str:
    if version < 1:
        raise ValueError("versions on their own folder start at 1")
    return f"v{int(version)}"


def parse_version(raw: str) -> int | None:
    """ "v3" -> 3; None for anything else (v0, v03, 3, v-1)."""
    return int(raw[1:]) if _VERSION_RE.fullmatch(raw) else None


@functools.lru_cache(maxsize=4096)  # on every HLS request; pure
def version_dir(media_dir: str, video_id: int, version: int) -> Path:
    """media/<id>/v<N>/."""
    return video_dir(media_dir, video_id) / version_name(version)


def version_prefix(version: int) -> str:
    """What a rendered master puts before the rendition URIs: "v<N>/"."""
    return version_name(version) + "/"


def ladder_path(media_dir: str, video_id: int, version: int) -> Path:
    return version_dir(media_dir, video_id, version) / LADDER_NAME


def building_ladder_path(media_dir: str, video_id: int, version: int) -> Path:
    """The provisional ladder of a version being built, in the bucket (BUILDING_LADDER_NAME)."""
    return version_dir(media_dir, video_id, version) / BUILDING_LADDER_NAME


LEASE_FENCE_SUFFIX = ".lease"


def lease_fence(media_dir: str, video_id: int, version: int) -> Path:
    """The fence of the run writing `version` (transcode/runner.py writes it, the child reads it)."""
    return work_dir(media_dir) / f"{int(video_id)}-{version_name(version)}{LEASE_FENCE_SUFFIX}"


# --- the wave-1 layout (version 0) -------------------------------------------------
# Rows made ready before versions existed have live_version 0 (sql/004) and their
# files directly in media/<id>/: these names, and a folder per rendition (RESOLUTIONS).
# library/version_zero.py moves them into a version folder once, at start-up.
WAVE1_VERSION = 0
WAVE1_FILE_NAMES = (MASTER_PLAYLIST_NAME, POSTER_NAME, THUMBNAIL_NAME)
# The version folder being made of a wave-1 video's files, renamed to v<N> once whole;
# <tag> is the moving process's own, so two processes never build in one folder.
WAVE1_MOVE_PREFIX = ".wave1-move-"


def wave1_move_dir(media_dir: str, video_id: int, tag: str) -> Path:
    return video_dir(media_dir, video_id) / f"{WAVE1_MOVE_PREFIX}{tag}"


def is_wave1_name(name: str) -> bool:
    """A name directly in media/<id>/ that belongs to the wave-1 layout or to its move."""
    return name in WAVE1_FILE_NAMES or name in RESOLUTIONS or name.startswith(WAVE1_MOVE_PREFIX)


# The rules below read owner_id, visibility, live_version and building_version, which
# a whole row and a playback row (delivery/playback.py's cached one) both hold.
AccessRow = Video | PlaybackVideo


def can_watch(video: AccessRow, user_id: int | None, is_admin: bool) -> bool:
    """A live version exists, and the video is public or the caller's own (admins see everything)."""
    if video.live_version is None:
        return False
    return video.visibility == "public" or is_admin or (user_id is not None and video.owner_id == user_id)


def can_watch_version(video: AccessRow, version: int, user_id: int | None, is_admin: bool) -> bool:
    """Version `version` of the video, for this caller: the live one (or an older one
    still on disk, so a player that loaded it before a switch-over plays on until the
    sweeper removes it) under can_watch; the one being built for the owner and admins."""
    if version == video.building_version and user_id is not None and can_manage(video, user_id, is_admin):
        return True
    live = video.live_version
    return live is not None and 1 <= version <= live and can_watch(video, user_id, is_admin)


def default_version(video: AccessRow, user_id: int | None, is_admin: bool) -> int | None:
    """The version the unversioned master serves to this caller: the live one, or
    while nothing is live the one being built, for the owner and admins."""
    if can_watch(video, user_id, is_admin):
        return video.live_version
    if video.building_version is not None and user_id is not None and can_manage(video, user_id, is_admin):
        return video.building_version
    return None


def can_manage(video: AccessRow, user_id: int, is_admin: bool) -> bool:
    """Owner or admin: delete, see the detail of a video that is not ready."""
    return is_admin or video.owner_id == user_id


def serve_resolution(requested: str, available: list[str]) -> str | None:
    """The rendition to serve for `requested` (API.md §3): itself, or the highest
    produced when the request is above it; None for unknown names or when a
    lower rendition was asked for that does not exist."""
    if requested not in RESOLUTIONS or not available:
        return None
    if requested in available:
        return requested
    ranked = [r for r in RESOLUTIONS if r in available]  # highest first
    highest = ranked[0]
    if RESOLUTIONS.index(requested) < RESOLUTIONS.index(highest):
        return highest
    return None


# --- subtitles (API.md §6) ------------------------------------------------------
#   media/<id>/subtitles/<language>.vtt   canonical WebVTT of one language, per video:
#                                         it survives re-transcodes (versions come and go)
#   media/<id>/subtitles/<language>.<ms>.cut  that file cut once into segments of <ms>
#                                         milliseconds (subtitle_formats.cut_segments):
#                                         a segment is one small read, never a parse
#   <version dir>/tracks/<index>.vtt      a text track of the source, extracted by the
#                                         transcode child, imported at publish
# Subtitle playlists and segments are served under these names: the playlist is made
# from the version's ladder, a segment is the cut's body after its own header
# (library/subtitle_hls.py).
SUBTITLE_SUFFIX = ".vtt"
SUBTITLE_CUT_SUFFIX = ".cut"
TRACKS_DIR_NAME = "tracks"
SUBTITLE_SEGMENT_PATTERN = "seg_%05d.vtt"
SUBTITLE_SEGMENT_NAME_RE = _segment_name_re(SUBTITLE_SEGMENT_PATTERN)
# A canonical BCP 47 tag (subtitles.check_language) is ASCII letters, digits and
# hyphens, so it is a safe file name; this is checked again before any path is made.
_LANGUAGE_FILE_RE = re.compile(r"[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8}){0,16}")


def subtitles_dir(media_dir: str, video_id: int) -> Path:
    return video_dir(media_dir, video_id) / SUBTITLES_DIR_NAME


def subtitle_file_name(language: str) -> str:
    if not _LANGUAGE_FILE_RE.fullmatch(language) or len(language) > 35:
        raise ValueError("not a canonical language tag")
    return language + SUBTITLE_SUFFIX


def subtitle_path(media_dir: str, video_id: int, language: str) -> Path:
    return subtitles_dir(media_dir, video_id) / subtitle_file_name(language)


def subtitle_cut_path(media_dir: str, video_id: int, language: str, segment_ms: int) -> Path:
    """The canonical file of `language` cut into segments of `segment_ms`."""
    name = subtitle_file_name(language).removesuffix(SUBTITLE_SUFFIX)
    return subtitles_dir(media_dir, video_id) / f"{name}.{int(segment_ms)}{SUBTITLE_CUT_SUFFIX}"


def is_subtitle_cut_of(language: str, name: str) -> bool:
    """Whether `name` (in subtitles_dir) is a cut of `language`'s file, of any length."""
    stem = subtitle_file_name(language).removesuffix(SUBTITLE_SUFFIX)
    rest = name.removeprefix(stem + ".")
    return (
        rest != name
        and rest.endswith(SUBTITLE_CUT_SUFFIX)
        and rest.removesuffix(SUBTITLE_CUT_SUFFIX).isdigit()
        and rest.isascii()
    )


def track_file_name(stream_index: int) -> str:
    """tracks/<index>.vtt relative to the version directory."""
    return f"{TRACKS_DIR_NAME}/{int(stream_index)}{SUBTITLE_SUFFIX}"


_TRACK_FILE_RE = re.compile(rf"{TRACKS_DIR_NAME}/[0-9]{{1,5}}\{SUBTITLE_SUFFIX}")


def is_track_file(name: str) -> bool:
    """A name track_file_name writes (and nothing else: no other path is read)."""
    return _TRACK_FILE_RE.fullmatch(name) is not None


def parse_subtitle_segment(name: str) -> int | None:
    """The index of a subtitle segment name (seg_00003.vtt -> 3), None if not one."""
    if SUBTITLE_SEGMENT_NAME_RE.fullmatch(name) is None:
        return None
    return int(name[len("seg_") : -len(SUBTITLE_SUFFIX)])
