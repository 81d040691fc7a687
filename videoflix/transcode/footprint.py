"""The storage ledger's transcode side (issue 23 item 5): the bytes a finished version
takes on disk, by kind, and what copying saved.

`measure_version` (blocking: the transcode child, at the end of a run) walks one version
folder: each rendition's segments and media playlist, trick play (sprite sheets, the
thumbnails track, I-frame playlists), the poster and thumbnail, the subtitle tracks the
run extracted. The library adds the original's size and keeps the ledger in PostgreSQL
(library/ledger.py).

What copying saved is an estimate, since the skipped encode never ran: the ladder ffmpeg's
own CPU-seconds shared out over the pixels it encoded plus the decode (DECODE_WEIGHT),
times the copied rung's pixels (encode CPU grows with the pixels); None when no rung was
encoded to measure by. The bytes a copy saves are counted by the library: the
original, when VIDEOFLIX_ORIGINALS=replace dropped it because the top rung is a copy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from videoflix.platform.media import IFRAME_PLAYLIST_NAME, POSTER_NAME, THUMBNAIL_NAME, THUMBS_DIR, TRACKS_DIR_NAME
from videoflix.transcode.copyfit import CopyPlan
from videoflix.transcode.ladder import Rendition

# Decoding an H.264 source costs about this share of encoding the same pixels with x264:
# fitted from bench/transcode.py --copy (1080p park clip, veryfast: the full ladder 33.0
# CPU-s, the copying one 15.0 CPU-s, so decode 3.4 s against 18.0 s for the 1080p encode).
DECODE_WEIGHT = 0.19


@dataclass(frozen=True)
class VersionStorage:
    """Bytes of one version folder by kind, and the run's CPU (picklable)."""

    renditions: dict[str, int] = field(default_factory=dict)  # rung name -> segments + media playlist
    trickplay: int = 0  # thumbs/ (sheets, thumbnails.vtt) and every iframes.m3u8
    pictures: int = 0  # poster.jpg, thumbnail.jpg
    subtitles: int = 0  # tracks/ (extracted from the source)
    encode_cpu_seconds: float = 0.0  # ffmpeg and ffprobe CPU of the run (user + system)
    copy_saved_cpu_seconds: float | None = None  # estimate (module docstring); None: nothing copied or measurable

    @property
    def total(self) -> int:
        return sum(self.renditions.values()) + self.trickplay + self.pictures + self.subtitles


def _tree_bytes(path: Path) -> int:
    return sum(_file_bytes(Path(root) / name) for root, _, files in os.walk(path) for name in files)


def _file_bytes(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def saved_cpu_estimate(
    copy: CopyPlan | None, renditions: Sequence[Rendition], ladder_cpu_seconds: float
) -> float | None:
    """CPU-seconds the copied top rung did not cost (pure; see the module docstring), from
    the CPU of the ladder's ffmpeg run."""
    if copy is None or not copy.video or len(renditions) < 2:
        return None
    encoded = sum(r.width * r.height for r in renditions[1:])
    top = renditions[0].width * renditions[0].height
    return round(ladder_cpu_seconds * top / (encoded + DECODE_WEIGHT * top), 2)


def measure_version(
    out: Path, renditions: Sequence[Rendition], cpu_seconds: float, ladder_cpu_seconds: float, copy: CopyPlan | None
) -> VersionStorage:
    """The bytes of version folder `out` by kind (blocking); `cpu_seconds` of the whole
    run, `ladder_cpu_seconds` of its ladder ffmpeg."""
    sizes: dict[str, int] = {}
    iframes = 0
    for rendition in renditions:
        folder = out / rendition.name
        iframe_bytes = _file_bytes(folder / IFRAME_PLAYLIST_NAME)
        iframes += iframe_bytes
        sizes[rendition.name] = _tree_bytes(folder) - iframe_bytes
    return VersionStorage(
        renditions=sizes,
        trickplay=_tree_bytes(out / THUMBS_DIR) + iframes,
        pictures=_file_bytes(out / POSTER_NAME) + _file_bytes(out / THUMBNAIL_NAME),
        subtitles=_tree_bytes(out / TRACKS_DIR_NAME),
        encode_cpu_seconds=round(cpu_seconds, 2),
        copy_saved_cpu_seconds=saved_cpu_estimate(copy, renditions, ladder_cpu_seconds),
    )


def storage_dict(storage: VersionStorage) -> dict[str, object]:
    """ladder.json's "storage" (pure)."""
    return {
        "renditions": dict(storage.renditions),
        "trickplay": storage.trickplay,
        "pictures": storage.pictures,
        "subtitles": storage.subtitles,
        "total": storage.total,
        "encode_cpu_seconds": storage.encode_cpu_seconds,
        "copy_saved_cpu_seconds": storage.copy_saved_cpu_seconds,
    }
