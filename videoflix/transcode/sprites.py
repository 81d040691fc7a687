"""Storyboard sprites for seek-bar previews, made in the transcode's one ffmpeg run.

The smallest rendition's frames are split off inside build_command's filter graph (no
second decode): `fps=1/<interval>:round=up` keeps the frame at each multiple of the
interval, `scale` makes it a ~160 px wide tile and `tile` packs the tiles row by row
into sheets that an `image2` output writes as thumbs/sprite_NNN.jpg (mjpeg). After
ffmpeg, the child writes thumbs/thumbnails.vtt: one WebVTT cue per tile,
`sprite_001.jpg#xywh=x,y,w,h`, relative to the track's own URL (the form JW Player,
Video.js and Vidstack read).

sprite_000.jpg holds only the first tile, in its last cell (the rest is black,
`init_padding`); every later sheet is full but the last. ffmpeg 5.1 writes no progress
line at all until every output file has written its header, and an image2 output
writes it with its first image: with a 10x10 sheet of 10 s tiles that would be after
1000 s of video, so the watchdog would see a stalled run. The first sheet comes out
with the first frame instead. Likewise the sheets' output gets the video's frame rate
(`-r`), so that a sheet's packet lasts one frame: ffmpeg's out_time is the end of its
furthest stream, and a sheet lasting its 100 tiles would push it past the real end
(hiding a truncated source from job.check_complete).

What ffmpeg 5.1 does, relied on here (tests/test_trickplay.py checks it on real runs):
- `fps` with start_time=0 starts its ticks at 0 even when the video starts later than
  the audio (bbb: +83 ms); without it the first tick is rounded up to 1 and a 2 s clip
  gets no tile at all.
- `fps` with round=up rounds the end-of-stream time up too, so a video of D seconds
  yields ceil(D / interval) tiles: the last one covers the tail, however short.
- `tile` flushes the last, partial sheet at end of stream: it has the full sheet size,
  the unused cells painted black, which no cue points into.

Everything here is pure except `write_thumbnails_vtt`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from videoflix.platform.media import SPRITE_PATTERN, THUMBNAILS_VTT_NAME, THUMBS_DIR, is_sprite_name, sprite_name

# Tiles about 160 px wide (YouTube's storyboard size), one every 2-10 s: about
# TARGET_TILES per video, so a short clip gets a tile every 2 s and a two-hour film one
# every 10 s (720 tiles, 8 sheets).
TILE_WIDTH = 160
MIN_INTERVAL_SECONDS = 2
MAX_INTERVAL_SECONDS = 10
TARGET_TILES = 300
# 10 x 10 tiles of 160x90: a 1600x900 sheet of ~100-150 KB, fetched once per 100 tiles.
DEFAULT_COLUMNS = 10
DEFAULT_ROWS = 10
# mjpeg's -q:v (2 best .. 31 worst): previews are small and blurry anyway.
JPEG_QUALITY = 5


@dataclass(frozen=True)
class SpritePlan:
    interval: int  # seconds between tiles; tile k shows the frame at k * interval
    tile_width: int
    tile_height: int
    columns: int
    rows: int

    @property
    def tiles_per_sheet(self) -> int:
        return self.columns * self.rows

    @property
    def lead_padding(self) -> int:
        """Empty cells before the first tile: it is the only tile of the first sheet."""
        return self.tiles_per_sheet - 1

    def tile_count(self, duration: float) -> int:
        """Tiles ffmpeg makes for `duration` seconds of video: ceil(duration / interval)."""
        # A hair of tolerance: 20.0000001 s of output is 20 s, not a 3rd tile for 10 s.
        return max(1, math.ceil(duration / self.interval - 1e-6))

    def sheet_count(self, tiles: int) -> int:
        return math.ceil((tiles + self.lead_padding) / self.tiles_per_sheet)

    def tile_position(self, index: int) -> tuple[str, int, int]:
        """(sheet file name, x, y) of tile `index`, row by row as `tile` packs them."""
        sheet, cell = divmod(index + self.lead_padding, self.tiles_per_sheet)
        row, column = divmod(cell, self.columns)
        return sprite_name(sheet), column * self.tile_width, row * self.tile_height


def sprite_interval(duration: float) -> int:
    """Seconds between tiles: about TARGET_TILES tiles, within 2-10 s (pure)."""
    if not duration > 0:
        return MIN_INTERVAL_SECONDS
    wanted = math.ceil(duration / TARGET_TILES)
    return min(MAX_INTERVAL_SECONDS, max(MIN_INTERVAL_SECONDS, wanted))


def plan_sprites(
    duration: float, width: int, height: int, columns: int = DEFAULT_COLUMNS, rows: int = DEFAULT_ROWS
) -> SpritePlan:
    """The storyboard of a `duration`-second video whose smallest rendition is
    width x height: tiles TILE_WIDTH wide (never upscaled), aspect kept, even sizes."""
    if width <= 0 or height <= 0 or columns <= 0 or rows <= 0:
        raise ValueError("sizes and grid must be positive")
    tile_width = min(TILE_WIDTH, width) // 2 * 2
    tile_height = max(2, round(height * tile_width / width / 2) * 2)
    return SpritePlan(sprite_interval(duration), max(2, tile_width), tile_height, columns, rows)


def filter_chain(plan: SpritePlan, source: str, output: str) -> str:
    """The graph branch from pad label `source` (a split of the smallest rendition,
    already constant-rate, square-pixel yuv420p) to sheets on pad label `output`."""
    return "[%s]fps=1/%d:round=up:start_time=0,scale=%d:%d,setsar=1,tile=%dx%d:init_padding=%d[%s]" % (
        source,
        plan.interval,
        plan.tile_width,
        plan.tile_height,
        plan.columns,
        plan.rows,
        plan.lead_padding,
        output,
    )


def output_args(label: str, out_dir: str, rate: str) -> list[str]:
    """The image2 output writing pad `label`'s sheets into <out_dir>/thumbs/.

    `out_dir` is already safe for ffmpeg's argv (command._path_arg, no '%'); `rate` is
    the video's frame rate (see the module docstring). One JPEG per sheet, numbered from
    0; passthrough timestamps: a sheet is written once, never duplicated or dropped to
    keep a constant rate; atomic writing (a .tmp renamed into place): a sheet is served
    whole or not at all while the run goes."""
    return [
        "-map",
        "[%s]" % label,
        "-map_metadata",
        "-1",
        "-c:v",
        "mjpeg",
        "-q:v",
        str(JPEG_QUALITY),
        "-fps_mode",
        "passthrough",
        "-r",
        rate,
        "-f",
        "image2",
        "-start_number",
        "0",
        "-atomic_writing",
        "1",
        os.path.join(out_dir, THUMBS_DIR, SPRITE_PATTERN),
    ]


def vtt_timestamp(seconds: float) -> str:
    """WebVTT's hh:mm:ss.ttt."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return "%02d:%02d:%02d.%03d" % (hours, minutes, rest // 1000, rest % 1000)


def thumbnails_vtt(plan: SpritePlan, duration: float, tiles: int) -> str:
    """The WebVTT thumbnails track: cue k covers [k*interval, (k+1)*interval), the last
    one ends at `duration`, so the cues tile the whole video with no gap (pure)."""
    if tiles <= 0 or not duration > 0:
        raise ValueError("a track needs tiles and a duration")
    lines = ["WEBVTT", ""]
    for index in range(tiles):
        start = index * plan.interval
        if start >= duration:
            break  # ffmpeg made a tile for a sliver past the end: no cue for it
        end = duration if index == tiles - 1 else min(duration, start + plan.interval)
        sheet, x, y = plan.tile_position(index)
        lines += [
            "%s --> %s" % (vtt_timestamp(start), vtt_timestamp(end)),
            "%s#xywh=%d,%d,%d,%d" % (sheet, x, y, plan.tile_width, plan.tile_height),
            "",
        ]
    return "\n".join(lines)


def tiles_made(plan: SpritePlan, duration: float, sheets: int) -> int:
    """How many tiles the run made: ceil(duration / interval) as ffmpeg counts, held
    within what `sheets` written sheets can hold (the video's own end may differ from
    the playlist's by a frame)."""
    expected = plan.tile_count(duration)
    if sheets <= 0:
        return 0
    most = sheets * plan.tiles_per_sheet - plan.lead_padding
    least = (sheets - 1) * plan.tiles_per_sheet - plan.lead_padding + 1
    return min(most, max(least, expected))


def write_thumbnails_vtt(out_dir: str | os.PathLike[str], plan: SpritePlan, duration: float) -> str | None:
    """Write thumbs/thumbnails.vtt for the sheets ffmpeg wrote; its path relative to
    `out_dir`, or None when there are no sheets (runs in the transcode child)."""
    thumbs = Path(out_dir) / THUMBS_DIR
    try:
        names = sorted(name for name in os.listdir(thumbs) if is_sprite_name(name))
    except FileNotFoundError:
        return None
    if names != [sprite_name(i) for i in range(len(names))]:
        raise ValueError("sprite sheets are not numbered 0..n-1: %s" % names)
    tiles = tiles_made(plan, duration, len(names))
    if tiles == 0 or not duration > 0:
        return None
    temporary = thumbs / (THUMBNAILS_VTT_NAME + ".tmp")
    temporary.write_text(thumbnails_vtt(plan, duration, tiles), encoding="utf-8")
    temporary.replace(thumbs / THUMBNAILS_VTT_NAME)
    return "%s/%s" % (THUMBS_DIR, THUMBNAILS_VTT_NAME)
