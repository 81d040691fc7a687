"""Originals by policy (issue 23 item 4): what becomes of an uploaded original once a run
has published, and what a later run reads when it is gone (pure).

    keep      the original stays (the behaviour before issue 23)
    replace   removed when the published top rung is the source's own streams, copied
              (copyfit.py: the video, and the audio unless there is none): nothing is lost,
              the top rung is the original from then on
    remove    removed after every successful run

Without an original, a re-transcode reads the live version's top rung (its segments,
joined into one MPEG-TS file inside the run's folder, job.py) and its ladder.json says so.
Playback only ever reads renditions, so it never needs the original.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from videoflix.platform.media import MEDIA_PLAYLIST_NAME, RUNG_INPUT_NAME
from videoflix.transcode.copyfit import CopyPlan
from videoflix.transcode.playlist import parse_media_playlist

# Segment names a rung's playlist may list (ffmpeg's, media.SEGMENT_PATTERN): never a path.
SEGMENT_NAME = re.compile(r"seg_\d{5}\.ts")


def drop_original(policy: str, copy: CopyPlan | None, has_audio: bool) -> bool:
    """Whether the original goes once a run with this copy plan has published (pure)."""
    if policy == "remove":
        return True
    if policy == "replace":
        return copy is not None and copy.video and (copy.audio or not has_audio)
    return False


def join_rung(rung_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> tuple[Path, str]:
    """The segments of a finished rendition, in playlist order, as one MPEG-TS file in
    `out_dir` (blocking: the transcode child), and what to call that input
    ("the 1080p rung of v3")."""
    rung = Path(rung_dir)
    _, entries = parse_media_playlist((rung / MEDIA_PLAYLIST_NAME).read_text(encoding="utf-8"))
    names = [uri for uri, _ in entries]
    if not names or not all(SEGMENT_NAME.fullmatch(name) for name in names):
        raise ValueError("not a finished rendition: %s" % rung)
    target = Path(out_dir) / RUNG_INPUT_NAME
    with open(target, "wb") as joined:
        for name in names:
            with open(rung / name, "rb") as segment:
                while chunk := segment.read(1 << 20):
                    joined.write(chunk)
    return target, "the %s rung of %s (no original)" % (rung.name, rung.parent.name)
