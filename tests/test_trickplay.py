"""Trick-play: storyboard sprites + thumbnails.vtt, and I-frame playlists.

The pure parts (interval, tile geometry, WebVTT text, TS scanning, playlist text) are
checked directly; the real ffmpeg run of a 45 s clip with a small 4x3 grid checks the
sheets ffmpeg 5.1 writes (count, size, the partial last sheet) against the track.
The I-frame playlists of every test clip are checked against ffprobe in test_ffmpeg.py,
where those clips are transcoded anyway.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from videoflix.platform.media import is_sprite_name
from videoflix.transcode import iframes, sprites
from videoflix.transcode.command import TranscodeSettings, build_command, prepare_output
from videoflix.transcode.ffmpeg import run_ffmpeg
from videoflix.transcode.job import transcode
from videoflix.transcode.ladder import pick_renditions
from videoflix.transcode.playlist import PlaylistError, parse_media_playlist
from videoflix.transcode.probe import parse_probe, probe_file_sync

from media import PARK, PEOPLE, clip, ffmpeg, ffprobe_json, probe_facts

CUE_RE = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})")
XYWH_RE = re.compile(r"(sprite_\d{3}\.jpg)#xywh=(\d+),(\d+),(\d+),(\d+)")


def parse_vtt(text: str) -> list[tuple[float, float, str, tuple[int, int, int, int]]]:
    """[(start, end, sheet, (x, y, w, h)), ...] of a thumbnails track; strict about its shape."""
    blocks = text.strip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        timing, target = block.split("\n")
        t = [int(v) for v in CUE_RE.fullmatch(timing).groups()]
        start = t[0] * 3600 + t[1] * 60 + t[2] + t[3] / 1000
        end = t[4] * 3600 + t[5] * 60 + t[6] + t[7] / 1000
        sheet, *xywh = XYWH_RE.fullmatch(target).groups()
        cues.append((start, end, sheet, tuple(int(v) for v in xywh)))
    return cues


# --- storyboard (pure) ---------------------------------------------------------------

@pytest.mark.parametrize("duration,interval", [
    (0.5, 2), (5.8, 2), (139.4, 2), (600, 2), (601, 3), (1800, 6), (2999, 10), (7200, 10), (40000, 10),
])
def test_sprite_interval_grows_with_the_duration_from_2_to_10_seconds(duration, interval):
    assert sprites.sprite_interval(duration) == interval


def test_sprite_interval_is_monotonic_and_bounded():
    values = [sprites.sprite_interval(d) for d in range(0, 20000, 7)]
    assert values == sorted(values)
    assert min(values) == 2 and max(values) == 10


def test_sprite_interval_of_an_unknown_duration_is_the_shortest():
    assert sprites.sprite_interval(float("nan")) == 2
    assert sprites.sprite_interval(0) == 2


@pytest.mark.parametrize("size,tile", [
    ((854, 480), (160, 90)),  # 480p landscape
    ((768, 432), (160, 90)),
    ((480, 854), (160, 284)),  # portrait: same width, taller tiles
    ((642, 480), (160, 120)),
    ((100, 56), (100, 56)),  # never upscaled
    ((3, 2), (2, 2)),  # even, at least 2
])
def test_tiles_are_160_wide_even_and_keep_the_aspect(size, tile):
    plan = sprites.plan_sprites(60, *size)
    assert (plan.tile_width, plan.tile_height) == tile


def test_plan_refuses_empty_sizes_and_grids():
    for args in [(0, 480), (854, 0)]:
        with pytest.raises(ValueError):
            sprites.plan_sprites(60, *args)
    with pytest.raises(ValueError):
        sprites.plan_sprites(60, 854, 480, columns=0)


def test_tiles_are_packed_row_by_row_sheet_by_sheet_after_a_first_sheet_of_one():
    plan = sprites.SpritePlan(interval=2, tile_width=160, tile_height=90, columns=4, rows=3)
    assert plan.tile_position(0) == ("sprite_000.jpg", 480, 180)  # the first sheet's last cell
    assert plan.tile_position(1) == ("sprite_001.jpg", 0, 0)
    assert plan.tile_position(4) == ("sprite_001.jpg", 480, 0)
    assert plan.tile_position(5) == ("sprite_001.jpg", 0, 90)
    assert plan.tile_position(12) == ("sprite_001.jpg", 480, 180)
    assert plan.tile_position(13) == ("sprite_002.jpg", 0, 0)
    assert [plan.sheet_count(n) for n in (1, 2, 13, 14, 25)] == [1, 2, 2, 3, 3]


@pytest.mark.parametrize("duration,tiles", [(45.1, 23), (44.0, 22), (44.0000001, 22), (0.3, 1), (2.0, 1), (2.1, 2)])
def test_tile_count_is_the_duration_over_the_interval_rounded_up(duration, tiles):
    plan = sprites.SpritePlan(2, 160, 90, 4, 3)
    assert plan.tile_count(duration) == tiles


def test_tiles_made_trusts_the_sheets_written_over_the_estimate():
    plan = sprites.SpritePlan(2, 160, 90, 4, 3)  # 1 tile on the first sheet, then 12 per sheet
    assert sprites.tiles_made(plan, 45.1, 3) == 23
    assert sprites.tiles_made(plan, 26.0, 3) == 14  # a frame more than the playlist said
    assert sprites.tiles_made(plan, 28.0, 2) == 13  # a frame less
    assert sprites.tiles_made(plan, 26.0, 0) == 0


def test_vtt_cues_tile_the_whole_duration_and_point_inside_the_sheets():
    plan = sprites.SpritePlan(interval=6, tile_width=160, tile_height=90, columns=10, rows=10)
    duration = 1234.5
    tiles = plan.tile_count(duration)
    cues = parse_vtt(sprites.thumbnails_vtt(plan, duration, tiles))
    assert len(cues) == tiles == 206
    assert cues[0][0] == 0 and cues[-1][1] == duration
    for (_, end, _, _), (start, _, _, _) in zip(cues, cues[1:]):
        assert end == start  # no gap, no overlap
    for index, (start, end, sheet, (x, y, w, h)) in enumerate(cues):
        assert start == index * 6 and 0 < end - start <= 6
        assert sheet == "sprite_%03d.jpg" % ((index + 99) // 100)
        assert (w, h) == (160, 90) and 0 <= x <= 1440 and 0 <= y <= 810
    assert cues[0][2:] == ("sprite_000.jpg", (1440, 810, 160, 90))
    assert cues[1][2:] == ("sprite_001.jpg", (0, 0, 160, 90))
    assert cues[101][2:] == ("sprite_002.jpg", (0, 0, 160, 90))


def test_vtt_drops_a_tile_that_starts_at_the_very_end():
    plan = sprites.SpritePlan(2, 160, 90, 4, 3)
    cues = parse_vtt(sprites.thumbnails_vtt(plan, 4.0, 3))  # ffmpeg made one for a sliver past 4 s
    assert [(c[0], c[1]) for c in cues] == [(0, 2), (2, 4)]


def test_vtt_timestamps_carry_hours():
    assert sprites.vtt_timestamp(3723.4567) == "01:02:03.457"
    assert sprites.vtt_timestamp(0) == "00:00:00.000"


def test_vtt_refuses_no_tiles_or_no_duration():
    plan = sprites.SpritePlan(2, 160, 90, 4, 3)
    with pytest.raises(ValueError):
        sprites.thumbnails_vtt(plan, 10, 0)
    with pytest.raises(ValueError):
        sprites.thumbnails_vtt(plan, 0, 3)


def test_sprite_names_are_validated_strictly():
    assert is_sprite_name("sprite_000.jpg") and is_sprite_name("sprite_999.jpg")
    for bad in ["sprite_1.jpg", "sprite_0000.jpg", "sprite_००0.jpg", "sprite_000.jpg\n", "../sprite_000.jpg",
                "sprite_000.jpeg", "SPRITE_000.jpg", "sprite_000.jpg/", "thumbnails.vtt", ""]:
        assert not is_sprite_name(bad), bad


def test_command_branches_the_storyboard_off_the_smallest_rendition_into_an_image2_output():
    probe = parse_probe(probe_facts(PARK))
    command = build_command("/in/source.mp4", "/out", probe, pick_renditions(probe), TranscodeSettings())
    graph = command[command.index("-filter_complex") + 1]
    assert graph.count("fps=") == 2  # the decode's constant rate, then one frame per interval
    assert "[c2]scale=854:480,setsar=1,format=yuv420p,split=2[v2][sprite_in]" in graph
    assert graph.endswith(
        "[sprite_in]fps=1/2:round=up:start_time=0,scale=160:90,setsar=1,tile=10x10:init_padding=99[sprites]")
    sprite_output = command[command.index("[sprites]") - 1:]
    assert sprite_output == ["-map", "[sprites]", "-map_metadata", "-1", "-c:v", "mjpeg", "-q:v", "5",
                             "-fps_mode", "passthrough", "-r", "30", "-f", "image2", "-start_number", "0",
                             "-atomic_writing", "1", "/out/thumbs/sprite_%03d.jpg"]
    assert command.count("-i") == 1  # no second decode


def test_command_without_the_storyboard_has_no_sprite_branch():
    probe = parse_probe(probe_facts(PARK))
    command = build_command("/in/source.mp4", "/out", probe, pick_renditions(probe),
                            TranscodeSettings(storyboard=False))
    assert "sprite" not in " ".join(command)
    assert command[command.index("tee") + 1].endswith("/out/480p/index.m3u8'")


# --- storyboard: a real run ----------------------------------------------------------------

GRID = TranscodeSettings(sprite_columns=4, sprite_rows=3)  # 12 tiles a sheet: several sheets


@pytest.fixture(scope="module")
def storyboard(tmp_path_factory) -> Path:
    """45 s of the 10 fps people clip (480p only), transcoded with a 4x3 grid."""
    scratch = tmp_path_factory.mktemp("storyboard")
    source = scratch / "people_45s.mp4"
    ffmpeg("-i", str(clip(PEOPLE)), "-t", "45", "-c", "copy", str(source))
    out = scratch / "out"
    transcode(source, out, GRID)
    return out


def luma_mean(image: Path, x: int, y: int, w: int, h: int) -> float:
    """Average luma (0-255) of a rectangle of `image`, measured by ffmpeg's signalstats."""
    data = ffprobe_json(f"movie={image},crop={w}:{h}:{x}:{y},signalstats", "-f", "lavfi",
                        "-show_entries", "frame_tags=lavfi.signalstats.YAVG")
    return float(data["frames"][0]["tags"]["lavfi.signalstats.YAVG"])


@pytest.mark.slow
def test_sprite_sheets_count_and_geometry_follow_the_duration(storyboard):
    _, entries = parse_media_playlist((storyboard / "480p" / "index.m3u8").read_text())
    duration = sum(d for _, d in entries)
    assert duration == pytest.approx(45.1, abs=0.05)
    tiles = math.ceil(duration / 2)  # interval 2 s for a short video
    names = sorted(p.name for p in (storyboard / "thumbs").iterdir())
    sheets = 1 + math.ceil((tiles - 1) / 12)
    assert names == ["sprite_%03d.jpg" % i for i in range(sheets)] + ["thumbnails.vtt"]
    assert sheets == 3  # 23 tiles: the first alone, a full sheet of 12, a partial one of 10
    for name in names[:-1]:
        stream = ffprobe_json(storyboard / "thumbs" / name, "-show_streams")["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 640, 270)


@pytest.mark.slow
def test_thumbnail_cues_cover_the_video_and_point_at_pictures_not_padding(storyboard):
    _, entries = parse_media_playlist((storyboard / "480p" / "index.m3u8").read_text())
    duration = sum(d for _, d in entries)
    cues = parse_vtt((storyboard / "thumbs" / "thumbnails.vtt").read_text())
    assert cues[0][0] == 0 and cues[-1][1] == pytest.approx(duration, abs=0.001)
    assert all(a[1] == b[0] for a, b in zip(cues, cues[1:]))
    assert len(cues) == 23
    for _, _, sheet, (x, y, w, h) in cues:
        assert (storyboard / "thumbs" / sheet).is_file()
        assert x + w <= 640 and y + h <= 270
    # The first sheet: the first tile in its last cell, black before it.
    assert cues[0][2:] == ("sprite_000.jpg", (480, 180, 160, 90))
    assert luma_mean(storyboard / "thumbs" / "sprite_000.jpg", 480, 180, 160, 90) > 40
    assert luma_mean(storyboard / "thumbs" / "sprite_000.jpg", 0, 0, 640, 180) < 20
    # The last cue's tile is a picture; the cell after it is the partial sheet's black padding.
    _, _, sheet, (x, y, w, h) = cues[-1]
    assert luma_mean(storyboard / "thumbs" / sheet, x, y, w, h) > 40
    assert luma_mean(storyboard / "thumbs" / sheet, x + w, y, w, h) < 20


@pytest.mark.slow
def test_a_tile_shows_the_frame_at_the_start_of_its_cue(storyboard, tmp_path):
    """Tile k against the source at k*interval and at the next interval: nearer the first."""
    cues = parse_vtt((storyboard / "thumbs" / "thumbnails.vtt").read_text())
    start, _, sheet, (x, y, w, h) = cues[9]  # 18 s
    tile = tmp_path / "tile.png"
    ffmpeg("-i", str(storyboard / "thumbs" / sheet), "-vf", f"crop={w}:{h}:{x}:{y}", str(tile))

    def psnr_at(seconds: float) -> float:
        frame = tmp_path / f"frame_{seconds}.png"
        ffmpeg("-ss", str(seconds), "-i", str(clip(PEOPLE)), "-frames:v", "1",
               "-vf", f"scale={w}:{h}", str(frame))
        data = ffprobe_json(f"movie={tile}[a];movie={frame}[b];[a][b]psnr", "-f", "lavfi",
                            "-show_entries", "frame_tags=lavfi.psnr.psnr_avg")
        return float(data["frames"][0]["tags"]["lavfi.psnr.psnr_avg"])

    at_start = psnr_at(start)  # ~34 dB here, ~17-23 dB for the frames 2 s before or after
    assert at_start > psnr_at(start + 2) + 5
    assert at_start > psnr_at(start - 2) + 5


@pytest.mark.slow
def test_sheets_neither_hold_back_progress_nor_push_out_time_past_the_end(tmp_path):
    """ffmpeg reports nothing until every output wrote its header (an image2 one: with
    its first sheet), and its out_time is the end of the furthest stream: the first
    sheet comes with the first frame, and a sheet lasts one frame."""
    source = tmp_path / "people_45s.mp4"
    ffmpeg("-i", str(clip(PEOPLE)), "-t", "45", "-c", "copy", str(source))
    probe = probe_file_sync(source)
    renditions = pick_renditions(probe)
    out = tmp_path / "out"
    prepare_output(out, probe, renditions, TranscodeSettings())
    seen: list[float] = []
    produced = run_ffmpeg(build_command(source, out, probe, renditions, TranscodeSettings()),
                          duration=probe.duration, stall_seconds=60, time_limit=600, on_progress=seen.append)
    assert produced == pytest.approx(probe.duration, abs=0.5)  # not the end of a 100-tile sheet: 202 s
    assert len(seen) >= 2 and seen[0] < 60  # reported from the start, not only at the end
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == ["sprite_000.jpg", "sprite_001.jpg"]


# --- I-frames (pure) ------------------------------------------------------------------------

def test_scan_refuses_what_is_not_a_transport_stream():
    for data in [b"", b"\x47" * 100, b"\x00" * 188 * 3, b"\x47" + b"\x00" * 187]:
        with pytest.raises(iframes.TSError):
            iframes.scan_iframes(data)


def entry(pts: int, offset: int = 564) -> iframes.IFrame:
    return iframes.IFrame(offset=offset, length=188 * 10, pts=pts)


def test_iframe_durations_run_to_the_next_iframe_and_the_last_to_the_end():
    entries = iframes.iframe_entries(
        [("seg_00000.ts", [entry(6000), entry(186000, 90000)]), ("seg_00001.ts", [entry(366000)])], 5.7)
    assert [e.duration for e in entries] == [2.0, 2.0, pytest.approx(1.7)]
    assert [(e.uri, e.offset) for e in entries] == [("seg_00000.ts", 564), ("seg_00000.ts", 90000),
                                                   ("seg_00001.ts", 564)]


def test_iframe_times_survive_the_33_bit_clock_wrap():
    near_wrap = (1 << 33) - 90000
    entries = iframes.iframe_entries([("seg_00000.ts", [entry(near_wrap), entry(90000)])], 4.0)
    assert [e.duration for e in entries] == [2.0, 2.0]


def test_iframes_out_of_order_or_missing_are_an_error():
    with pytest.raises(PlaylistError):
        iframes.iframe_entries([("seg_00000.ts", [])], 4.0)
    with pytest.raises(PlaylistError):
        iframes.iframe_entries([("seg_00000.ts", [entry(180000), entry(90000)])], 4.0)


def test_iframe_playlist_is_version_4_iframes_only_with_byte_ranges():
    entries = iframes.iframe_entries(
        [("seg_00000.ts", [entry(0), entry(180000, 9400)]), ("seg_00001.ts", [entry(360000)])], 5.5)
    text = iframes.iframe_playlist(entries)
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n"
        "#EXTINF:2.000000,\n#EXT-X-BYTERANGE:1880@564\nseg_00000.ts\n"
        "#EXTINF:2.000000,\n#EXT-X-BYTERANGE:1880@9400\nseg_00000.ts\n"
        "#EXTINF:1.500000,\n#EXT-X-BYTERANGE:1880@564\nseg_00001.ts\n"
        "#EXT-X-ENDLIST\n"
    )


def test_iframe_bandwidth_is_the_largest_iframe_over_its_duration():
    entries = iframes.iframe_entries([("s.ts", [iframes.IFrame(0, 188 * 100, 0),
                                                iframes.IFrame(188 * 500, 188 * 300, 180000)])], 4.0)
    stats = iframes.iframe_stats(entries)
    assert stats.peak_bps == math.ceil(188 * 300 * 8 / 2)
    assert stats.average_bps == math.ceil(188 * 400 * 8 / 4)
