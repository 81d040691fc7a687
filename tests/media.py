"""Test media: where the shared clips live, their ffprobe facts, and small ffprobe helpers.

The clips are real footage in shared/media beside the repository (CI clones the repo
with shared/ next to it); VIDEOFLIX_TEST_MEDIA points elsewhere.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

MEDIA_DIR = Path(
    os.environ.get(
        "VIDEOFLIX_TEST_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"
    )
)

PARK = "park_1080p_h264_aac_5s.mp4"
BBB_ROTATED = "bbb_1080p_rotate90_portrait_2s.mp4"
STREET = "street_portrait_1376x1840_hevc_5s.mp4"
PEOPLE = "people_768x432_10fps_noaudio_139s.mp4"
FIRE_VFR = "fire_720p_vfr_rotate180_2s.mp4"
BBB_WEBM = "bbb_720p_vp8_vorbis_30s.webm"


def clip(name: str) -> Path:
    path = MEDIA_DIR / name
    if not path.is_file():
        raise FileNotFoundError("test clip %s missing (set VIDEOFLIX_TEST_MEDIA)" % path)
    return path


def _video(index: int = 0, **fields: Any) -> dict[str, Any]:
    return {"index": index, "codec_type": "video", "disposition": {"default": 1, "attached_pic": 0}, **fields}


def _audio(index: int = 1, **fields: Any) -> dict[str, Any]:
    return {"index": index, "codec_type": "audio", "disposition": {"default": 1, "attached_pic": 0}, **fields}


# The ffprobe facts quoted in shared/media/README.md, in the shape `ffprobe -show_format
# -show_streams -print_format json` prints them (index, codec_type and disposition are
# always present there; the README leaves them out for brevity).
_FACTS: dict[str, dict[str, Any]] = {
    PARK: {
        "streams": [
            _video(0, codec_name="h264", profile="High", width=1920, height=1080,
                   r_frame_rate="30/1", avg_frame_rate="30/1"),
            _audio(1, codec_name="aac", channels=2, r_frame_rate="0/0", avg_frame_rate="0/0"),
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "5.759000", "size": "2848208"},
    },
    BBB_ROTATED: {
        "streams": [
            _video(0, codec_name="h264", width=1920, height=1080, r_frame_rate="24/1",
                   avg_frame_rate="24/1",
                   side_data_list=[{"side_data_type": "Display Matrix", "rotation": -90}]),
            _audio(1, codec_name="aac", channels=6, channel_layout="5.1",
                   r_frame_rate="0/0", avg_frame_rate="0/0"),
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "2.005333", "size": "675899"},
    },
    STREET: {
        "streams": [
            _video(0, codec_name="hevc", width=1376, height=1840, r_frame_rate="30000/1001",
                   avg_frame_rate="547500/19019"),
            _audio(1, codec_name="aac", channels=2, r_frame_rate="0/0", avg_frame_rate="0/0"),
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "5.005000", "size": "4020201"},
    },
    PEOPLE: {
        "streams": [
            _video(0, codec_name="h264", width=768, height=432, r_frame_rate="10/1",
                   avg_frame_rate="10/1"),
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "139.400000", "size": "3291918"},
    },
    FIRE_VFR: {
        "streams": [
            _video(0, codec_name="h264", width=1280, height=720, r_frame_rate="90000/1",
                   avg_frame_rate="750000/71393",
                   side_data_list=[{"side_data_type": "Display Matrix", "rotation": -180}]),
            _audio(1, codec_name="aac", channels=1, r_frame_rate="0/0", avg_frame_rate="0/0"),
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "2.380000"},
    },
    BBB_WEBM: {
        "streams": [
            _video(0, codec_name="vp8", width=1280, height=720, r_frame_rate="24/1",
                   avg_frame_rate="24/1"),
            _audio(1, codec_name="vorbis", channels=2, r_frame_rate="0/0", avg_frame_rate="0/0"),
        ],
        "format": {"format_name": "matroska,webm", "duration": "30.003000"},
    },
}


def probe_facts(name: str) -> dict[str, Any]:
    """A fresh copy of the README's ffprobe facts for clip `name` (safe to mutate)."""
    return copy.deepcopy(_FACTS[name])


def ffprobe_json(path: Path | str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)],
        capture_output=True, check=True,
    )
    return json.loads(done.stdout)


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly to prepare test input; raise on failure."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
        check=True, capture_output=True,
    )


def looped(name: str, times: int, target: Path) -> Path:
    """`name` played `times` times in a row (stream copy, no re-encode) at `target`:
    a longer real source for tests that must still be transcoding a while."""
    if not target.exists():
        temporary = target.with_name(target.name + ".part.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(times - 1), "-i", str(clip(name)),
                        "-c", "copy", str(temporary)], check=True)
        temporary.replace(target)
    return target
