"""The one-decode transcode: command building (pure) and real ffmpeg runs (slow).

Each slow source is transcoded once per module (the `job` fixture caches it); the
parametrised tests then check the files on disk with ffprobe.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest

from videoflix.transcode import iframes
from videoflix.transcode.command import TranscodeSettings, build_command, build_poster_command, time_limit_seconds
from videoflix.transcode.errors import TranscodeError
from videoflix.transcode.ffmpeg import parse_progress, run_ffmpeg
from videoflix.transcode.job import JobResult, check_complete, transcode
from videoflix.transcode.ladder import pick_renditions
from videoflix.transcode.ladderfile import provisional_variants, read_ladder
from videoflix.transcode.playlist import (
    avc1_codec,
    measure_rendition,
    parse_media_playlist,
    render_master,
)
from videoflix.transcode.probe import parse_probe, probe_file_sync

from media import (
    BBB_ROTATED,
    BBB_WEBM,
    FIRE_VFR,
    PARK,
    PEOPLE,
    STREET,
    clip,
    ffmpeg,
    ffprobe_json,
    probe_facts,
)

# The encode ladder: copy off, or the people clip (H.264 Main, 1 s GOPs) would be copied;
# tests/test_copyfit.py checks the copy path.
SETTINGS = TranscodeSettings(copy_when_fits=False)


# --- command building (pure) -------------------------------------------------------------

def command_for(name: str, out_dir: str = "/out") -> list[str]:
    probe = parse_probe(probe_facts(name))
    return build_command("/in/source.mp4", out_dir, probe, pick_renditions(probe), SETTINGS)


def tee_slaves(command: list[str]) -> list[str]:
    at = command.index("tee")
    assert command[at - 1] == "-f"
    return command[at + 1].split("|")


def test_command_decodes_the_source_once_and_cascades_down_the_ladder():
    command = command_for(PARK)
    assert command.count("-i") == 1
    graph = command[command.index("-filter_complex") + 1]
    assert graph == (
        "[0:0]fps=30[c0];"
        "[c0]scale=1920:1080,setsar=1,format=yuv420p,split=2[v0][c1];"
        "[c1]scale=1280:720,setsar=1,format=yuv420p,split=2[v1][c2];"
        "[c2]scale=854:480,setsar=1,format=yuv420p,split=2[v2][sprite_in];"
        "[sprite_in]fps=1/2:round=up:start_time=0,scale=160:90,setsar=1,tile=10x10:init_padding=99[sprites]"
    )  # each rung scaled once, from the one above it; the storyboard from the smallest
    assert command[:command.index("-i")].count("-progress") == 1
    assert "-nostats" in command


def test_command_encodes_audio_once_and_muxes_it_into_every_rendition():
    command = command_for(BBB_ROTATED)
    assert command.count("-c:a") == 1
    assert command[command.index("-ac") + 1] == "2"  # 5.1 downmixed
    assert command[command.index("-ar") + 1] == "48000"
    assert command.count("-map") == 5  # three scaled videos, one audio (+ the sprite sheets)
    slaves = tee_slaves(command)
    assert len(slaves) == 3
    for index, slave in enumerate(slaves):
        assert "select='\\''%d,3'\\''" % index in slave  # its video + the shared audio
        assert "/out/%s/index.m3u8" % ["1080p", "720p", "480p"][index] in slave


def test_command_without_audio_maps_video_only():
    command = command_for(PEOPLE)
    assert "-c:a" not in command
    assert command.count("-map") == 2  # the video (+ the sprite sheets)
    assert "select='\\''0'\\''" in tee_slaves(command)[0]


def test_command_forces_identical_closed_gops_in_every_encoder():
    command = command_for(STREET)
    assert command[command.index("-force_key_frames:v") + 1] == "expr:gte(t,n_forced*2)"
    assert command[command.index("-g") + 1] == "60"  # 2 s at 30000/1001
    assert command[command.index("-sc_threshold") + 1] == "0"
    assert command[command.index("-flags:v") + 1] == "+cgop"
    assert command[command.index("-forced-idr") + 1] == "1"
    assert command[command.index("-filter_complex") + 1].startswith("[0:0]fps=30000/1001[c0];")


def test_command_caps_every_rendition_with_crf_and_vbv():
    command = command_for(PARK)
    assert command[command.index("-crf") + 1] == "21"
    assert command[command.index("-profile:v") + 1] == "high"
    caps = [(command[i], command[i + 1]) for i, arg in enumerate(command) if arg.startswith(("-maxrate", "-bufsize"))]
    assert caps == [
        ("-maxrate:v:0", "6000k"), ("-bufsize:v:0", "12000k"),
        ("-maxrate:v:1", "3000k"), ("-bufsize:v:1", "6000k"),
        ("-maxrate:v:2", "1400k"), ("-bufsize:v:2", "2800k"),
    ]


def test_command_writes_growing_event_hls_with_whole_segments_and_bare_five_digit_names():
    slave = tee_slaves(command_for(PARK))[0]
    assert "hls_playlist_type='\\''event'\\''" in slave
    assert "hls_flags='\\''independent_segments+temp_file'\\''" in slave
    assert "hls_time='\\''4'\\''" in slave
    assert "/out/1080p/seg_%05d.ts" in slave


def test_command_refuses_an_out_dir_with_a_percent_sign():
    with pytest.raises(ValueError):
        command_for(PARK, "/tmp/100%d")


def test_segments_must_be_a_whole_number_of_gops():
    with pytest.raises(ValueError):
        TranscodeSettings(segment_seconds=5, gop_seconds=2)


def test_time_limit_is_ten_times_the_duration_with_a_two_minute_floor():
    assert time_limit_seconds(5.0, SETTINGS) == 120.0
    assert time_limit_seconds(139.4, SETTINGS) == pytest.approx(1394.0)


def test_poster_is_searched_from_a_third_of_the_way_in():
    probe = parse_probe(probe_facts(PEOPLE))
    command = build_poster_command("/in/source.mp4", "/out", probe)
    assert command[command.index("-ss") + 1] == "46.467"
    graph = command[command.index("-filter_complex") + 1]
    assert "thumbnail=n=30" in graph  # 3 s of 10 fps
    assert command[-1] == "/out/thumbnail.jpg"


def test_progress_lines_give_the_latest_out_time():
    lines = ["frame=10", "out_time_us=N/A", "out_time_us=1500000", "progress=continue",
             "out_time_us=2000000", "progress=end"]
    assert parse_progress(lines) == 2.0
    assert parse_progress(["out_time_us=N/A"]) is None


def test_output_ending_well_before_the_source_is_truncation():
    check_complete(5.7, 5.759)  # audio runs a little longer than video: fine
    with pytest.raises(TranscodeError, match="truncated"):
        check_complete(1.2, 2.38)


# --- real ffmpeg (slow) --------------------------------------------------------------------

EXPECTED_LADDERS: dict[str, list[tuple[str, int, int]]] = {
    "park": [("1080p", 1920, 1080), ("720p", 1280, 720), ("480p", 854, 480)],
    "bbb_rotated": [("1080p", 1080, 1920), ("720p", 720, 1280), ("480p", 480, 854)],
    "street_hevc": [("1080p", 1080, 1444), ("720p", 720, 962), ("480p", 480, 642)],
    "fire_vfr": [("720p", 1280, 720), ("480p", 854, 480)],
    "people_no_audio": [("480p", 768, 432)],
    "webm_vp8": [("720p", 1280, 720), ("480p", 854, 480)],
}
HAS_AUDIO = {"park": True, "bbb_rotated": True, "street_hevc": True, "fire_vfr": True,
             "people_no_audio": False, "webm_vp8": True}
SOURCES = list(EXPECTED_LADDERS)


def prepare_source(name: str, scratch: Path) -> Path:
    """The clip for `name`; long clips are cut (stream copy) to keep the suite fast."""
    if name == "people_no_audio":
        target = scratch / "people_12s.mp4"
        ffmpeg("-i", str(clip(PEOPLE)), "-t", "12", "-c", "copy", str(target))
        return target
    if name == "webm_vp8":
        target = scratch / "bbb_6s.webm"
        ffmpeg("-i", str(clip(BBB_WEBM)), "-t", "6", "-c", "copy", str(target))
        return target
    return clip({"park": PARK, "bbb_rotated": BBB_ROTATED, "street_hevc": STREET,
                 "fire_vfr": FIRE_VFR}[name])


@dataclass
class Job:
    out: Path
    result: JobResult
    progress: list[float] = field(default_factory=list)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Callable[[str], Job]:
    cache: dict[str, Job] = {}

    def get(name: str) -> Job:
        if name not in cache:
            scratch = tmp_path_factory.mktemp(name)
            out = scratch / "out"
            progress: list[float] = []
            result = transcode(prepare_source(name, scratch), out, SETTINGS, progress.append)
            cache[name] = Job(out, result, progress)
        return cache[name]

    return get


def segment_paths(rendition_dir: Path) -> list[Path]:
    _, entries = parse_media_playlist((rendition_dir / "index.m3u8").read_text())
    return [rendition_dir / uri for uri, _ in entries]


def video_packets(segment: Path) -> list[dict]:
    data = ffprobe_json(segment, "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags")
    return data["packets"]


def master_text(out: Path) -> str:
    """The master playlist served for this output (rendered from its ladder.json)."""
    return render_master(read_ladder(out / "ladder.json"))


def master_variants(out: Path) -> list[tuple[dict[str, str], str]]:
    lines = master_text(out).splitlines()
    variants = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attributes = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.partition(":")[2]))
            variants.append(({k: v.strip('"') for k, v in attributes.items()}, lines[i + 1]))
    return variants


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_ladder_on_disk_matches_the_source(job, name):
    done = job(name)
    expected = EXPECTED_LADDERS[name]
    assert done.result.resolutions == [rung for rung, _, _ in expected]
    assert (done.result.width, done.result.height) == expected[0][1:]
    assert done.result.has_audio is HAS_AUDIO[name]
    assert sorted(p.name for p in done.out.iterdir()) == sorted(
        ["ladder.json", "poster.jpg", "thumbnail.jpg", "thumbs", *done.result.resolutions])
    for rung, width, height in expected:
        names = sorted(p.name for p in (done.out / rung).iterdir())
        assert names[-1] == "seg_%05d.ts" % (len(names) - 3)  # iframes.m3u8, index.m3u8 + seg_00000..
        assert all(re.fullmatch(r"seg_\d{5}\.ts", n) for n in names if n not in ("iframes.m3u8", "index.m3u8"))
        stream = ffprobe_json(segment_paths(done.out / rung)[0], "-select_streams", "v:0",
                              "-show_streams")["streams"][0]
        assert (stream["codec_name"], stream["profile"], stream["pix_fmt"]) == ("h264", "High", "yuv420p")
        assert (stream["width"], stream["height"]) == (width, height)


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_every_segment_starts_with_an_idr_keyframe(job, name):
    done = job(name)
    for rung in done.result.resolutions:
        for segment in segment_paths(done.out / rung):
            assert video_packets(segment)[0]["flags"].startswith("K"), segment
            first = ffprobe_json(segment, "-select_streams", "v:0", "-read_intervals", "%+#1",
                                 "-show_entries", "frame=key_frame,pict_type")["frames"][0]
            assert (first["key_frame"], first["pict_type"]) == (1, "I"), segment


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_segments_last_the_target_within_half_a_second(job, name):
    done = job(name)
    for rung in done.result.resolutions:
        _, entries = parse_media_playlist((done.out / rung / "index.m3u8").read_text())
        durations = [duration for _, duration in entries]
        assert max(durations) <= SETTINGS.segment_seconds + 0.5, (rung, durations)
        for duration in durations[:-1]:
            assert duration >= SETTINGS.segment_seconds - 0.5, (rung, durations)


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_keyframe_times_are_identical_across_renditions(job, name):
    done = job(name)
    keyframes = {}
    for rung in done.result.resolutions:
        keyframes[rung] = [
            packet["pts_time"]
            for segment in segment_paths(done.out / rung)
            for packet in video_packets(segment) if packet["flags"].startswith("K")
        ]
    first = keyframes[done.result.resolutions[0]]
    assert all(times == first for times in keyframes.values()), keyframes
    gaps = [float(b) - float(a) for a, b in zip(first, first[1:])]
    assert all(abs(gap - SETTINGS.gop_seconds) < 0.1 for gap in gaps), gaps


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_finished_run_leaves_vod_playlists_and_a_complete_ladder(job, name):
    done = job(name)
    ladder = read_ladder(done.out / "ladder.json")
    assert ladder["complete"] is True and ladder["thumbnails_vtt"] == "thumbs/thumbnails.vtt"
    # Trick-play: an I-frame stream per rendition, its video codec only, measured.
    assert [i["name"] for i in ladder["iframes"]] == done.result.resolutions
    for stream, variant in zip(ladder["iframes"], ladder["variants"]):
        assert stream["codecs"] == variant["codecs"].split(",")[0]
        assert (stream["width"], stream["height"]) == (variant["width"], variant["height"])
        assert stream["peak_bps"] >= stream["average_bps"] > 0
    assert ladder["segment_seconds"] == SETTINGS.segment_seconds
    assert [v["name"] for v in ladder["variants"]] == done.result.resolutions
    lowest = done.out / done.result.resolutions[-1]
    first = ffprobe_json(lowest / "seg_00000.ts", "-select_streams", "v:0", "-read_intervals", "%+#1",
                         "-show_entries", "packet=pts")["packets"][0]
    assert ladder["start_pts"] == int(first["pts"])
    for rung in done.result.resolutions:
        text = (done.out / rung / "index.m3u8").read_text()
        assert "#EXT-X-PLAYLIST-TYPE:VOD\n" in text and text.endswith("#EXT-X-ENDLIST\n")
        assert "EVENT" not in text and text.count("#EXT-X-ENDLIST") == 1
        assert not [p.name for p in (done.out / rung).iterdir() if p.name.endswith((".tmp", ".vod"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_provisional_codecs_name_the_level_x264_chose(job, name):
    """The master rendered while a run goes (from the caps) announces the codec the
    segments then have: a player that set up its decoder from it need not reset."""
    done = job(name)
    probe = probe_file_sync(prepare_source(name, done.out.parent))
    provisional = provisional_variants(pick_renditions(probe), probe.has_audio, SETTINGS.audio_kbps)
    measured = read_ladder(done.out / "ladder.json")["variants"]
    assert [v.codecs for v in provisional] == [v["codecs"] for v in measured]


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_peak_bitrate_is_at_most_twice_the_average(job, name):
    for attributes, _ in master_variants(job(name).out):
        assert int(attributes["BANDWIDTH"]) <= 2 * int(attributes["AVERAGE-BANDWIDTH"])


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_master_playlist_attributes_match_the_files(job, name):
    done = job(name)
    variants = master_variants(done.out)
    assert master_text(done.out).startswith(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n")
    uris = [uri for _, uri in variants]
    expected_order = sorted(done.result.resolutions, key=lambda rung: rung != "720p")
    assert uris == ["%s/index.m3u8" % rung for rung in expected_order]
    for attributes, uri in variants:
        rendition = done.out / Path(uri).parent
        stats = measure_rendition(rendition)
        assert int(attributes["BANDWIDTH"]) == stats.peak_bps
        assert int(attributes["AVERAGE-BANDWIDTH"]) == stats.average_bps
        stream = ffprobe_json(segment_paths(rendition)[0], "-select_streams", "v:0",
                              "-show_streams")["streams"][0]
        assert attributes["RESOLUTION"] == "%dx%d" % (stream["width"], stream["height"])
        codecs = attributes["CODECS"].split(",")
        assert codecs[0] == avc1_codec(stream["profile"], stream["level"])
        assert codecs[1:] == (["mp4a.40.2"] if HAS_AUDIO[name] else [])
        assert float(attributes["FRAME-RATE"]) == pytest.approx(
            float(Fraction(stream["avg_frame_rate"])), abs=0.001)


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_every_rendition_plays_standalone_with_the_shared_audio(job, name):
    done = job(name)
    for rung in done.result.resolutions:
        for segment in segment_paths(done.out / rung):
            audio = ffprobe_json(segment, "-select_streams", "a", "-show_streams")["streams"]
            if not HAS_AUDIO[name]:
                assert audio == []
                continue
            assert len(audio) == 1, segment
            assert (audio[0]["codec_name"], audio[0]["profile"], audio[0]["channels"],
                    audio[0]["sample_rate"]) == ("aac", "LC", 2, "48000")


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_poster_and_thumbnail_fit_their_limits(job, name):
    done = job(name)
    source_w, source_h = EXPECTED_LADDERS[name][0][1:]
    for file, limit in (("poster.jpg", 1280), ("thumbnail.jpg", 480)):
        stream = ffprobe_json(done.out / file, "-show_streams")["streams"][0]
        assert stream["codec_name"] == "mjpeg"
        assert max(stream["width"], stream["height"]) <= limit
        # Same orientation and aspect as the video.
        assert stream["width"] / stream["height"] == pytest.approx(source_w / source_h, rel=0.02)


def keyframes_by_ffprobe(segment: Path) -> list[tuple[int, int]]:
    """(byte position, PTS) of every video keyframe packet, as ffprobe demuxes them."""
    data = ffprobe_json(segment, "-select_streams", "v:0", "-show_entries", "packet=pos,pts,flags")
    return [(int(p["pos"]), int(p["pts"])) for p in data["packets"] if p["flags"].startswith("K")]


def iframe_playlist_entries(path: Path) -> list[tuple[float, int, int, str]]:
    """[(EXTINF, length, offset, uri), ...] of an I-frame playlist."""
    lines = path.read_text().splitlines()
    assert lines[:6] == ["#EXTM3U", "#EXT-X-VERSION:4", lines[2], "#EXT-X-MEDIA-SEQUENCE:0",
                         "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-I-FRAMES-ONLY"]
    assert lines[-1] == "#EXT-X-ENDLIST"
    target = int(lines[2].removeprefix("#EXT-X-TARGETDURATION:"))
    entries = []
    for extinf, byterange, uri in zip(lines[6:-1:3], lines[7:-1:3], lines[8:-1:3]):
        duration = float(extinf.removeprefix("#EXTINF:").rstrip(","))
        length, offset = byterange.removeprefix("#EXT-X-BYTERANGE:").split("@")
        assert round(duration) <= target
        entries.append((duration, int(length), int(offset), uri))
    return entries


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_ts_scan_finds_the_keyframes_ffprobe_finds(job, name):
    done = job(name)
    for rung in done.result.resolutions:
        for segment in segment_paths(done.out / rung):
            found = [(f.offset, f.pts) for f in iframes.scan_iframes(segment.read_bytes())]
            assert found == keyframes_by_ffprobe(segment), segment
            assert len(found) == 2 or segment == segment_paths(done.out / rung)[-1]  # a 4 s segment, 2 s GOPs


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_iframe_playlist_lists_every_keyframe_with_the_time_to_the_next(job, name):
    done = job(name)
    for rung in done.result.resolutions:
        directory = done.out / rung
        entries = iframe_playlist_entries(directory / "iframes.m3u8")
        keyframes = [(segment.name, pos, pts) for segment in segment_paths(directory)
                     for pos, pts in keyframes_by_ffprobe(segment)]
        assert [(uri, offset) for _, _, offset, uri in entries] == [(uri, pos) for uri, pos, _ in keyframes]
        gaps = [(b[2] - a[2]) / 90000 for a, b in zip(keyframes, keyframes[1:])]
        assert [d for d, *_ in entries[:-1]] == pytest.approx(gaps, abs=1e-5)
        total = sum(d for _, d in parse_media_playlist((directory / "index.m3u8").read_text())[1])
        assert sum(d for d, *_ in entries) == pytest.approx(total, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["park", "people_no_audio", "webm_vp8"])
def test_each_iframe_byte_range_decodes_as_exactly_one_keyframe(job, name, tmp_path):
    """What a player does with an I-frame entry: the segment's PAT/PMT (its start, up to
    the first video packet), then the byte range; ffprobe must decode one I-frame from it."""
    done = job(name)
    for rung in done.result.resolutions:
        directory = done.out / rung
        for number, (_, length, offset, uri) in enumerate(iframe_playlist_entries(directory / "iframes.m3u8")):
            data = (directory / uri).read_bytes()
            header = data[:keyframes_by_ffprobe(directory / uri)[0][0]]
            piece = tmp_path / ("%s-%d.ts" % (rung, number))
            piece.write_bytes(header + data[offset:offset + length])
            frames = ffprobe_json(piece, "-select_streams", "v:0",
                                  "-show_entries", "frame=key_frame,pict_type")["frames"]
            assert [(f["key_frame"], f["pict_type"]) for f in frames] == [(1, "I")], (uri, offset)


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_thumbnail_track_covers_the_video(job, name):
    done = job(name)
    smallest = done.out / done.result.resolutions[-1]
    total = sum(d for _, d in parse_media_playlist((smallest / "index.m3u8").read_text())[1])
    text = (done.out / "thumbs" / "thumbnails.vtt").read_text()
    times = re.findall(r"^(\d\d):(\d\d):(\d\d\.\d{3}) --> (\d\d):(\d\d):(\d\d\.\d{3})$", text, re.M)
    seconds = [(int(a) * 3600 + int(b) * 60 + float(c), int(d) * 3600 + int(e) * 60 + float(f))
               for a, b, c, d, e, f in times]
    assert seconds[0][0] == 0 and seconds[-1][1] == pytest.approx(total, abs=0.001)
    assert len(seconds) == math.ceil(total / 2 - 1e-6)
    for sheet in set(re.findall(r"^(sprite_\d{3}\.jpg)#xywh=", text, re.M)):
        assert (done.out / "thumbs" / sheet).is_file()


@pytest.mark.slow
def test_progress_rises_to_100(job):
    progress = job("park").progress
    assert len(progress) > 3
    assert progress == sorted(progress)
    assert 0 <= progress[0] < 50 and progress[-1] == 100.0


@pytest.mark.slow
def test_variable_frame_rate_comes_out_constant(job):
    done = job("fire_vfr")
    assert done.result.fps == 11.0
    for rung in done.result.resolutions:
        times = [float(p["pts_time"]) for s in segment_paths(done.out / rung) for p in video_packets(s)]
        times.sort()
        gaps = {round(b - a, 3) for a, b in zip(times, times[1:])}
        assert gaps == {round(1 / 11, 3)}, gaps


@pytest.mark.slow
def test_high_frame_rate_source_is_halved_to_60(tmp_path):
    source = tmp_path / "hfr.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=120:duration=2",
           "-c:v", "libx264", "-preset", "ultrafast", str(source))
    result = transcode(source, tmp_path / "out", SETTINGS)
    assert (result.fps, result.resolutions, result.has_audio) == (60.0, ["480p"], False)
    stream = ffprobe_json(tmp_path / "out" / "480p" / "seg_00000.ts", "-show_streams")["streams"][0]
    assert stream["avg_frame_rate"] == "60/1"
    assert "FRAME-RATE=60.000" in master_text(tmp_path / "out")


@pytest.mark.slow
def test_out_dir_with_quotes_colons_pipes_and_brackets_works(tmp_path):
    source = tmp_path / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1",
           "-f", "lavfi", "-i", "sine=duration=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", "-shortest", str(source))
    out = tmp_path / "it's a:b|c [x]" / "out"
    result = transcode(source, out, SETTINGS)
    assert result.resolutions == ["480p"]
    assert (out / "480p" / "seg_00000.ts").is_file()
    assert (out / "ladder.json").is_file() and (out / "poster.jpg").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["it's a:b|c [x]", "tiny.mp4"]


@pytest.mark.slow
def test_truncated_file_fails_with_transcode_error(tmp_path):
    source = tmp_path / "truncated.mp4"  # moov first, so only decoding finds the cut
    source.write_bytes(clip(FIRE_VFR).read_bytes()[:700_000])
    with pytest.raises(TranscodeError, match="truncated or corrupt"):
        transcode(source, tmp_path / "out", SETTINGS)


@pytest.mark.slow
def test_file_cut_before_its_index_fails_as_unreadable(tmp_path):
    source = tmp_path / "cut.mp4"  # moov at the end: nothing to index the data with
    source.write_bytes(clip(PARK).read_bytes()[:1_000_000])
    with pytest.raises(TranscodeError, match="^Unreadable media file.$"):
        transcode(source, tmp_path / "out", SETTINGS)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_audio_only_file_fails_cleanly_without_output(tmp_path):
    source = tmp_path / "song.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(source))
    with pytest.raises(TranscodeError, match="^No video stream found.$"):
        transcode(source, tmp_path / "out", SETTINGS)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_text_file_fails_cleanly_as_unreadable(tmp_path):
    source = tmp_path / "movie.mp4"
    source.write_text("definitely not a movie\n" * 100)
    with pytest.raises(TranscodeError, match="^Unreadable media file.$"):
        transcode(source, tmp_path / "out", SETTINGS)


@pytest.mark.slow
def test_stalled_ffmpeg_is_killed_by_the_watchdog(tmp_path):
    fifo = tmp_path / "upload.mp4"
    os.mkfifo(fifo)  # nobody ever writes: ffmpeg blocks reading its input
    probe = parse_probe(probe_facts(PARK))
    command = build_command(fifo, tmp_path / "out", probe, pick_renditions(probe), SETTINGS)
    started = time.monotonic()
    with pytest.raises(TranscodeError, match="stalled: no progress for 0.5 s"):
        run_ffmpeg(command, duration=probe.duration, stall_seconds=0.5, time_limit=60)
    assert time.monotonic() - started < 10
    with pytest.raises(OSError):  # no reader left on the FIFO: ffmpeg is gone
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)


@pytest.mark.slow
def test_run_over_the_time_limit_is_killed():
    command = ["ffmpeg", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=duration=60",
               "-progress", "pipe:1", "-nostats", "-f", "null", "-"]
    with pytest.raises(TranscodeError, match="time limit of 1 s"):
        run_ffmpeg(command, duration=60, stall_seconds=30, time_limit=1)


@pytest.mark.slow
def test_ffmpeg_failure_reports_its_last_error_lines(tmp_path):
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "missing.mp4"),
               "-progress", "pipe:1", "-f", "null", "-"]
    with pytest.raises(TranscodeError, match=r"exit 1\).*No such file or directory"):
        run_ffmpeg(command, duration=1, stall_seconds=30, time_limit=30)
