"""ladder.json: what a transcode run produces, written by the child, read by the loop side.

The shape (README, Architecture: Transcode):

    {"complete": false|true,
     "variants": [{"name": "720p", "width": 1280, "height": 720, "fps": 30.0,
                   "codecs": "avc1.64001f,mp4a.40.2", "peak_bps": ..., "average_bps": ...}, ...],
     "iframes": [{"name", "width", "height", "codecs", "peak_bps", "average_bps"}, ...],
     "thumbnails_vtt": "thumbs/thumbnails.vtt" | null,
     "start_pts": 126000 | null,
     "duration": 123.4, "segment_seconds": 4,
     "copy": {"video": true|false, "audio": true|false, "reason": "source GOP 10 s" | null,
              "audio_reason": "audio 6 channels" | null, "note": "copied" | "encoded: ..."}}

"copy" says whether the top rung is the source's own video stream (copyfit.py) and,
when it is not, why; "input" what the run read: "the original", or without one
(transcode/originals.py) "the 1080p rung of v3 (no original)". Ladders written before
issue 23 have neither. A complete ladder also has "storage": the version's bytes by kind
and the run's CPU (transcode/footprint.py).

A provisional ladder (complete=false) is written before ffmpeg starts, with BANDWIDTH
from the rungs' caps and CODECS from the H.264 level the size and rate need, so a
master can be rendered while the run goes; the final one (complete=true) after the
segments were measured. Both are written atomically (tmp + rename): a reader sees
one or the other, never half of one. `playlist.render_master` turns either into the
master playlist text.

Everything here is pure except `write_ladder` and `read_ladder` (blocking: the
child calls write, the loop side calls read in its file executor).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from videoflix.transcode.copyfit import CopyPlan
from videoflix.transcode.ladder import Rendition
from videoflix.transcode.playlist import AAC_LC_CODEC, Variant, avc1_codec

# H.264 Table A-1: (level_idc, MaxMBPS, MaxFS, MaxDpbMbs, MaxBR kb/s, MaxCPB kb) for the
# levels a ladder rung can need. High profile allows 1.25x MaxBR and MaxCPB (Table A-2).
H264_LEVELS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (20, 11880, 396, 2376, 2000, 2000),
    (21, 19800, 792, 4752, 4000, 4000),
    (22, 20250, 1620, 8100, 4000, 4000),
    (30, 40500, 1620, 8100, 10000, 10000),
    (31, 108000, 3600, 18000, 14000, 14000),
    (32, 216000, 5120, 20480, 20000, 20000),
    (40, 245760, 8192, 32768, 20000, 25000),
    (41, 245760, 8192, 32768, 50000, 62500),
    (42, 522240, 8704, 34816, 50000, 62500),
    (50, 589824, 22080, 110400, 135000, 135000),
    (51, 983040, 36864, 184320, 240000, 240000),
    (52, 2073600, 36864, 184320, 240000, 240000),
)
HIGH_PROFILE_BR_FACTOR = 1.25
# Reference frames x264's fast presets keep (ref 1-2 plus a B-pyramid reference).
ASSUMED_DPB_FRAMES = 4
# MPEG-TS packaging (headers, PES, PAT/PMT, stuffing) on top of the encoders' caps: the
# measured average of a capped 1080p rendition comes out ~3 % above video + audio cap.
TS_OVERHEAD_PERCENT = 10


def h264_level(width: int, height: int, fps: float, max_kbps: int, bufsize_kbps: int) -> int:
    """The lowest level_idc whose limits fit the picture, rate and VBV (as x264 picks it)."""
    mbs = math.ceil(width / 16) * math.ceil(height / 16)
    for level, max_mbps, max_fs, max_dpb_mbs, max_br, max_cpb in H264_LEVELS:
        if (
            mbs <= max_fs
            and mbs * fps <= max_mbps
            and mbs * min(ASSUMED_DPB_FRAMES, 16) <= max_dpb_mbs
            and max_kbps <= max_br * HIGH_PROFILE_BR_FACTOR
            and bufsize_kbps <= max_cpb * HIGH_PROFILE_BR_FACTOR
        ):
            return level
    return H264_LEVELS[-1][0]


def _variant_dict(variant: Variant) -> dict[str, Any]:
    return {
        "name": variant.name,
        "width": variant.width,
        "height": variant.height,
        "fps": variant.fps,
        "codecs": variant.codecs,
        "peak_bps": variant.peak_bps,
        "average_bps": variant.average_bps,
    }


def provisional_variants(renditions: Sequence[Rendition], has_audio: bool, audio_kbps: int) -> list[Variant]:
    """Variants before anything is measured: the caps and the level they imply."""
    variants = []
    for r in renditions:
        codecs = avc1_codec("High", h264_level(r.width, r.height, r.fps, r.max_kbps, r.bufsize_kbps))
        if has_audio:
            codecs += "," + AAC_LC_CODEC
        caps_bps = (r.max_kbps + (audio_kbps if has_audio else 0)) * 1000
        bps = -(-caps_bps * (100 + TS_OVERHEAD_PERCENT) // 100)  # rounded up, in integers
        variants.append(Variant(r.name, r.width, r.height, r.fps, codecs, bps, bps))
    return variants


def make_ladder(
    variants: Iterable[Variant],
    *,
    complete: bool,
    duration: float,
    segment_seconds: int,
    start_pts: int | None = None,
    iframes: Sequence[dict[str, Any]] = (),
    thumbnails_vtt: str | None = None,
    copy: CopyPlan | None = None,
    input_note: str | None = None,
    storage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ladder = {
        "complete": bool(complete),
        "variants": [_variant_dict(v) for v in variants],
        "iframes": [dict(item) for item in iframes],
        "thumbnails_vtt": thumbnails_vtt,
        "start_pts": start_pts,
        "duration": float(duration),
        "segment_seconds": int(segment_seconds),
    }
    if copy is not None:
        ladder["copy"] = copy_dict(copy)
    if input_note is not None:
        ladder["input"] = input_note
    if storage is not None:
        ladder["storage"] = storage
    return ladder


def copy_dict(copy: CopyPlan) -> dict[str, Any]:
    return {
        "video": copy.video,
        "audio": copy.audio,
        "reason": copy.reason,
        "audio_reason": copy.audio_reason,
        "note": copy.note(),
    }


def write_ladder(path: str | os.PathLike[str], ladder: dict[str, Any]) -> None:
    """Atomically replace `path` (blocking)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(ladder, indent=1) + "\n", encoding="utf-8")
    temporary.replace(path)


def read_ladder(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ladder at `path`, or None when there is none (yet) or it is unreadable (blocking)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("variants"), list) else None
