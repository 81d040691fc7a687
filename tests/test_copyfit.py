"""Copy when it fits (issue 23): which sources are copied into the top rung and why the
others are not, and proof that a copying run is right: the copied rung's packets are the
source's, every rung is cut at the same times, and the rest of a run's outputs are there.

Sources are tiny clips generated with ffmpeg's lavfi (a second or three, low resolution
where the rule allows), plus the shared real clips where one exercises a rule.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from videoflix.transcode import copyfit
from videoflix.transcode.command import COPY_TS_OFFSET_SECONDS, TranscodeSettings, build_command
from videoflix.transcode.copyfit import CopyPlan, keyframe_arg, thin_keyframes
from videoflix.transcode.job import JobResult, plan_copy, transcode
from videoflix.transcode.ladder import pick_renditions
from videoflix.transcode.playlist import parse_media_playlist
from videoflix.transcode.probe import PacketScan, parse_packet_scan, parse_probe, probe_file_sync

from media import PARK, PEOPLE, clip, ffmpeg, ffprobe_json, probe_facts

FAST = TranscodeSettings(preset="ultrafast")
# Segments of 1 s, so a 3 s clip has several and the boundaries can be compared.
SHORT_SEGMENTS = TranscodeSettings(preset="ultrafast", segment_seconds=1, gop_seconds=1)

TESTSRC = "testsrc2=size=%s:rate=%s:duration=%s"


def make_clip(path: Path, *, size: str = "320x180", rate: str = "30", seconds: float = 2,
              audio: str | None = "-ac 2 -c:a aac -b:a 96k", video: str = "-c:v libx264 -preset ultrafast",
              extra_input: tuple[str, ...] = ()) -> Path:
    """A generated clip: test pattern video (and a sine tone unless audio is None)."""
    args = ["-f", "lavfi", "-i", TESTSRC % (size, rate, seconds)]
    if audio is not None:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=%s" % seconds]
    args += list(extra_input)
    args += video.split()
    if audio is not None:
        args += audio.split()
    ffmpeg(*args, str(path))
    return path


def decide(source: Path, settings: TranscodeSettings = FAST) -> CopyPlan:
    probe = probe_file_sync(source)
    return plan_copy(source, probe, pick_renditions(probe), settings)


# --- the rules (pure) ---------------------------------------------------------------------

def test_thinning_keeps_every_segment_start_and_at_most_one_keyframe_per_gop():
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    # 4 s segments: cut at 4.0; a GOP of 2 s keeps 0, 2, 4 and the tail's nothing.
    assert thin_keyframes(times, 4, 2) == [0.0, 2.0, 4.0]
    irregular = [0.0, 1.3, 2.1, 3.9, 4.2, 7.0, 8.1]
    # Cuts at the first keyframe at or past 4 (4.2) and 8 (8.1); 3.9 is dropped (under a
    # GOP after 2.1), 4.2 kept though only 0.3 s after a kept one, as it starts a segment.
    assert thin_keyframes(irregular, 4, 2) == [0.0, 2.1, 4.2, 7.0, 8.1]


def test_keyframe_argument_is_milliseconds_never_negative():
    assert keyframe_arg([0.0, 2.0, 4.0040004, -0.0001]) == "0.000,2.000,4.004,0.000"


def test_packet_scan_reads_keyframes_bytes_and_the_end():
    scan = parse_packet_scan("0.000000,0.033333,1000,K_\n0.133333,0.033333,200,__\n"
                             "0.066667,0.033333,300,__\n2.000000,0.033333,900,K_\nN/A,N/A,5,__\n")
    assert scan == PacketScan(keyframes=(0.0, 2.0), first_is_key=True, end=2.033333, total_bytes=2405)


def test_a_gop_longer_than_a_segment_is_refused_with_its_length():
    probe = probe_file_sync(clip(PEOPLE))
    top = pick_renditions(probe)[0]
    scan = PacketScan(keyframes=(0.0, 10.0, 20.0), first_is_key=True, end=139.4, total_bytes=1000)
    plan = copyfit.plan_copy(probe, scan, top, 4, 2, 128)
    assert (plan.video, plan.note()) == (False, "encoded: source GOP 119.4 s")
    scan = PacketScan(keyframes=tuple(float(t) for t in range(140)), first_is_key=True, end=139.4,
                      total_bytes=1000)
    assert copyfit.plan_copy(probe, scan, top, 4, 2, 128).video is True


def test_keyframes_off_the_frame_grid_are_refused():
    probe = probe_file_sync(clip(PEOPLE))  # 10 fps: frames every 0.1 s
    scan = PacketScan(keyframes=(0.0, 1.05, 2.0), first_is_key=True, end=3.0, total_bytes=1000)
    plan = copyfit.plan_copy(probe, scan, pick_renditions(probe)[0], 4, 2, 128)
    assert plan.reason == "source keyframes off the frame grid"


def test_copying_command_maps_the_source_stream_and_encodes_only_the_lower_rungs():
    probe = parse_probe(probe_facts(PARK))  # 1920x1080 H.264 + AAC
    renditions = pick_renditions(probe)
    plan = CopyPlan(video=True, audio=True, keyframes=(0.0, 2.0, 4.0), longest_gap=2.0)
    command = build_command("/in/source.mp4", "/out", probe, renditions, FAST, plan)
    graph = command[command.index("-filter_complex") + 1]
    assert graph.startswith("[0:0]fps=30[c1];[c1]scale=1280:720,")  # no 1080p scale: it is copied
    assert "scale=1920:1080" not in graph
    maps = [command[i + 1] for i, arg in enumerate(command) if arg == "-map"]
    assert maps[:4] == ["0:0", "[v1]", "[v2]", "0:1"]
    assert command[command.index("-c:v:0") + 1] == "copy"
    assert command[command.index("-c:a") + 1] == "copy"
    for index in (1, 2):
        assert command[command.index(f"-c:v:{index}") + 1] == "libx264"
        assert command[command.index(f"-force_key_frames:v:{index}") + 1] == "0.000,2.000,4.000"
        assert command[command.index(f"-g:v:{index}") + 1] == "62"  # 2 s at 30 fps + 2: never one of its own
    assert "-profile:v" not in command and "-force_key_frames:v" not in command  # nothing aimed at the copy
    assert command[command.index("-output_ts_offset") + 1] == str(COPY_TS_OFFSET_SECONDS)
    # The encode path's argv has none of it.
    encoded = build_command("/in/source.mp4", "/out", probe, renditions, FAST)
    assert "copy" not in encoded and "-output_ts_offset" not in encoded


def test_a_single_copied_rung_without_sprites_decodes_nothing():
    probe = parse_probe(probe_facts(PEOPLE))
    plan = CopyPlan(video=True, audio=False, keyframes=(0.0,), longest_gap=1.0)
    settings = TranscodeSettings(storyboard=False)
    command = build_command("/in/source.mp4", "/out", probe, pick_renditions(probe), settings, plan)
    assert "-filter_complex" not in command and "libx264" not in command
    with_sprites = build_command("/in/source.mp4", "/out", probe, pick_renditions(probe), FAST, plan)
    graph = with_sprites[with_sprites.index("-filter_complex") + 1]
    assert graph.startswith("[0:0]fps=10[c1];[c1]scale=768:432,setsar=1,format=yuv420p[sprite_in];")
    assert "libx264" not in with_sprites


# --- every refusal, hit by a real file --------------------------------------------------

REFUSALS = {
    "codec": (dict(video="-c:v mpeg4"), "source codec mpeg4"),
    "profile": (dict(video="-c:v libx264 -preset ultrafast -pix_fmt yuv422p"), "source profile High 4:2:2"),
    "pixel_format": (dict(video="-c:v libx264 -preset ultrafast -pix_fmt yuvj420p"),
                     "source pixel format yuvj420p"),
    "interlaced": (dict(video="-c:v libx264 -preset ultrafast -flags +ildct+ilme -x264-params tff=1"),
                   "source interlaced"),
    "non_square_pixels": (dict(video="-c:v libx264 -preset ultrafast -vf setsar=4/3"),
                          "source non-square pixels"),
    "hdr": (dict(video="-c:v libx264 -preset ultrafast -color_trc smpte2084 -color_primaries bt2020 "
                       "-colorspace bt2020nc"), "source HDR (smpte2084)"),
    "scaled": (dict(size="860x484"), "source 860x484 scaled to 852x480"),
    "variable_rate": (dict(video="-c:v libx264 -preset ultrafast -vf select='not(mod(n\\,3))+lt(n\\,10)' "
                                 "-vsync vfr"), "source variable frame rate"),
    "high_rate": (dict(rate="120", seconds=1), "source 120 fps"),
    "bitrate": (dict(video="-c:v libx264 -preset ultrafast -qp 4 -vf noise=alls=100:allf=t"),
                "over the 480p cap of 1400 kb/s"),
}


@pytest.mark.parametrize("rule", list(REFUSALS))
def test_each_refusal_reason_is_hit_by_a_generated_clip(tmp_path, rule):
    options, reason = REFUSALS[rule]
    plan = decide(make_clip(tmp_path / "source.mp4", **options))
    assert plan.video is False
    assert plan.audio is False
    assert plan.reason is not None and plan.reason.endswith(reason) or plan.reason == reason, plan


def test_rotation_that_needs_applying_is_refused(tmp_path):
    upright = make_clip(tmp_path / "upright.mp4")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(upright), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    assert decide(upright).video is True
    assert decide(rotated).reason == "source rotated 90°"


def test_a_long_gop_is_refused_with_its_length(tmp_path):
    # One keyframe in 3 s: too long for 2 s segments.
    source = make_clip(tmp_path / "source.mp4", seconds=3, video="-c:v libx264 -preset ultrafast -g 300")
    settings = TranscodeSettings(preset="ultrafast", segment_seconds=2, gop_seconds=2)
    assert decide(source, settings).reason == "source GOP 3 s"
    assert decide(source, FAST).video is True  # 4 s segments


def test_a_stream_not_starting_with_a_keyframe_is_refused(tmp_path):
    ts = make_clip(tmp_path / "source.ts", video="-c:v libx264 -preset ultrafast -g 15")
    cut = tmp_path / "cut.ts"
    ffmpeg("-i", str(ts), "-c", "copy", "-bsf:v", "noise=drop=eq(n\\,0)", str(cut))
    assert decide(cut).reason == "source does not start with a keyframe"


def test_the_shared_park_clip_is_encoded_for_its_single_gop():
    # Real camera footage: one keyframe in 5.76 s (the last frame ends at 5.7 s).
    assert decide(clip(PARK)).note() == "encoded: source GOP 5.7 s"


def test_copy_can_be_turned_off(tmp_path):
    source = make_clip(tmp_path / "source.mp4")
    assert decide(source, TranscodeSettings(copy_when_fits=False)).note() == "encoded: copy turned off"


@pytest.mark.parametrize(
    ("audio", "copied", "reason"),
    [
        ("-ac 2 -c:a aac -b:a 96k", True, None),
        ("-ac 6 -c:a aac -b:a 96k", False, "audio 6 channels"),
        ("-ac 2 -c:a aac -b:a 192k", False, "audio bitrate 192 kb/s over 128 kb/s"),
        ("-ac 2 -c:a ac3", False, "audio ac3"),
    ],
)
def test_audio_is_copied_only_when_aac_lc_stereo_within_the_cap(tmp_path, audio, copied, reason):
    plan = decide(make_clip(tmp_path / "source.mp4", audio=audio))
    assert plan.video is True
    assert (plan.audio, plan.audio_reason) == (copied, reason)


# --- a copying run, checked -------------------------------------------------------------

@dataclass
class CopyRun:
    source: Path
    out: Path
    result: JobResult


def segment_lines(playlist: Path) -> list[str]:
    return [line for line in playlist.read_text().splitlines() if line.startswith("#EXTINF:")]


def target_duration(playlist: Path) -> int:
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            return int(line.partition(":")[2])
    raise AssertionError("no target duration")


def packet_hashes(args: list[str], stream: str, bsf: str) -> list[tuple[str, str]]:
    """(size, md5) of every packet of `stream`, after the bitstream filters `bsf` (framemd5)."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", *args, "-map", stream, "-c", "copy", "-bsf", bsf, "-f", "framemd5", "-"],
        capture_output=True, check=True, text=True,
    )
    rows = [line.split(",") for line in done.stdout.splitlines() if line and not line.startswith("#")]
    return [(row[4].strip(), row[5].strip()) for row in rows]


def concatenated(rendition: Path) -> Path:
    """The rendition's segments as one transport stream, in playlist order."""
    _, entries = parse_media_playlist((rendition / "index.m3u8").read_text())
    joined = rendition.parent.parent / (rendition.name + ".ts")
    joined.write_bytes(b"".join((rendition / uri).read_bytes() for uri, _ in entries))
    return joined


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory) -> CopyRun:
    """A 720p clip with keyframes at irregular times (0, 0.5, 1.3, 2.1, 2.4 s), stereo AAC
    and a text subtitle track, transcoded with 1 s segments: 720p copied, 480p encoded."""
    scratch = tmp_path_factory.mktemp("copy")
    srt = scratch / "subs.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:02,000\nHello\n")
    source = make_clip(
        scratch / "source.mp4", size="1280x720", seconds=3,
        video="-c:v libx264 -preset veryfast -g 200 -sc_threshold 0 -force_key_frames 0,0.5,1.3,2.1,2.4 "
              "-map 0:v -map 1:a -map 2:s -c:s mov_text",
        extra_input=("-i", str(srt)),
    )
    out = scratch / "out"
    result = transcode(source, out, SHORT_SEGMENTS)
    return CopyRun(source, out, result)


@pytest.mark.slow
def test_a_fitting_source_is_copied_into_the_top_rung_and_recorded(copy_run):
    assert copy_run.result.resolutions == ["720p", "480p"]
    assert copy_run.result.copy is not None and copy_run.result.copy.video and copy_run.result.copy.audio
    ladder = json.loads((copy_run.out / "ladder.json").read_text())
    assert ladder["complete"] is True
    assert ladder["copy"] == {"video": True, "audio": True, "reason": None, "audio_reason": None,
                              "note": "copied"}


@pytest.mark.slow
def test_copied_rung_packets_are_identical_to_the_sources(copy_run):
    # The TS muxer adds parameter sets and access unit delimiters (NAL types 7, 8, 9)
    # and writes Annex B: both sides are brought to that form without them.
    strip = "filter_units=remove_types=7|8|9"
    source = packet_hashes(["-i", str(copy_run.source)], "0:v", "h264_mp4toannexb," + strip)
    copied = packet_hashes(["-f", "mpegts", "-i", str(concatenated(copy_run.out / "720p"))], "0:v", strip)
    assert len(source) == 90
    assert copied == source
    # The audio too: ADTS in the segments, raw AAC in the MP4.
    source_audio = packet_hashes(["-i", str(copy_run.source)], "0:a", "null")
    copied_audio = packet_hashes(["-f", "mpegts", "-i", str(concatenated(copy_run.out / "720p"))], "0:a",
                                 "aac_adtstoasc")
    assert copied_audio == source_audio
    # And the encoded rung is not a copy.
    encoded = packet_hashes(["-f", "mpegts", "-i", str(concatenated(copy_run.out / "480p"))], "0:v", strip)
    assert encoded != source


@pytest.mark.slow
def test_every_rung_is_cut_at_the_same_times(copy_run):
    top, lower = copy_run.out / "720p" / "index.m3u8", copy_run.out / "480p" / "index.m3u8"
    lines = segment_lines(top)
    # Cuts at the first keyframe at or past each second: 1.3, 2.1, then the end.
    assert lines == ["#EXTINF:1.300000,", "#EXTINF:0.800000,", "#EXTINF:0.900000,"]
    assert segment_lines(lower) == lines
    for playlist in (top, lower):
        target = target_duration(playlist)
        durations = [float(line[len("#EXTINF:"):].rstrip(",")) for line in segment_lines(playlist)]
        assert all(round(d) <= target for d in durations)  # RFC 8216 4.3.3.1
        assert max(durations) <= 2 * SHORT_SEGMENTS.segment_seconds
    # Each segment of both rungs starts with a keyframe at the same presentation time.
    for index in range(len(lines)):
        starts = []  # the 90 kHz PTS of each rung's first video packet
        for rung in ("720p", "480p"):
            packets = ffprobe_json(copy_run.out / rung / ("seg_%05d.ts" % index), "-select_streams", "v:0",
                                   "-show_entries", "packet=pts,flags")["packets"]
            assert packets[0]["flags"].startswith("K")
            starts.append(packets[0]["pts"])
        assert starts[0] == starts[1]


@pytest.mark.slow
def test_a_copying_run_still_makes_posters_sprites_iframes_and_subtitles(copy_run):
    names = sorted(p.name for p in copy_run.out.iterdir())
    assert names == ["480p", "720p", "ladder.json", "poster.jpg", "thumbnail.jpg", "thumbs", "tracks"]
    assert (copy_run.out / "thumbs" / "thumbnails.vtt").is_file()
    assert list((copy_run.out / "thumbs").glob("sprite_*.jpg"))
    ladder = json.loads((copy_run.out / "ladder.json").read_text())
    assert [stream["name"] for stream in ladder["iframes"]] == ["720p", "480p"]
    for rung in ("720p", "480p"):
        iframes = (copy_run.out / rung / "iframes.m3u8").read_text()
        assert iframes.count("#EXT-X-BYTERANGE:") >= 3
    assert len(copy_run.result.subtitle_tracks) == 1
    assert (copy_run.out / "tracks").is_dir()


@pytest.mark.slow
def test_the_shared_people_clip_is_copied_whole_without_an_encoder(tmp_path):
    # Real footage that fits: H.264 Main 768x432, 10 fps, a keyframe every second; its
    # one rung is the source itself.
    source = tmp_path / "people_6s.mp4"
    ffmpeg("-i", str(clip(PEOPLE)), "-t", "6", "-c", "copy", str(source))
    result = transcode(source, tmp_path / "out", FAST)
    assert result.copy is not None and result.copy.video and result.resolutions == ["480p"]
    strip = "filter_units=remove_types=7|8|9"
    assert packet_hashes(["-f", "mpegts", "-i", str(concatenated(tmp_path / "out" / "480p"))], "0:v", strip) == \
        packet_hashes(["-i", str(source)], "0:v", "h264_mp4toannexb," + strip)
    # 4 s segments cut at its keyframes, the last one to the end of the cut (6.1 s).
    assert segment_lines(tmp_path / "out" / "480p" / "index.m3u8") == ["#EXTINF:4.000000,", "#EXTINF:2.100000,"]


def _ffmpeg_children_writing(out: Path) -> list[int]:
    """Pids of this process's ffmpeg children writing into `out` (the ladder's run)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and argv[0].endswith(b"ffmpeg") and b"tee" in argv and \
                any(str(out).encode() in arg for arg in argv):
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_a_copying_run_can_be_watched_while_it_runs(tmp_path):
    # 20 s of 720p (copied) and 480p (encoded): the run outlasts its first progress
    # reports, so "playable" is reported while ffmpeg still runs; ffmpeg is held
    # (SIGSTOP) while the playlists are read, as a player would read them then.
    source = make_clip(tmp_path / "source.mp4", size="1280x720", seconds=20,
                       video="-c:v libx264 -preset ultrafast -crf 36 -g 30")
    out = tmp_path / "out"
    seen: dict[str, object] = {}

    def on_playable() -> None:
        pids = _ffmpeg_children_writing(out)
        seen["running"] = bool(pids)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            seen["playlists"] = {rung: (out / rung / "index.m3u8").read_text() for rung in ("720p", "480p")}
            seen["ladder"] = json.loads((out / "ladder.json").read_text())
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    result = transcode(source, out, SHORT_SEGMENTS, on_playable=on_playable)
    assert result.copy is not None and result.copy.video
    assert seen["running"] is True, "playable was only reported after ffmpeg had finished"
    for rung, text in seen["playlists"].items():
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text, rung
        assert "#EXTINF:" in text and "#EXT-X-ENDLIST" not in text, rung
        first = ffprobe_json(out / rung / "seg_00000.ts", "-select_streams", "v:0", "-show_entries",
                             "packet=flags")["packets"][0]
        assert first["flags"].startswith("K")
    ladder = seen["ladder"]
    assert ladder["complete"] is False and ladder["copy"]["video"] is True and ladder["start_pts"] is not None
    # And the finished run is VOD with the same first segments.
    final = (out / "720p" / "index.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in final and "#EXT-X-ENDLIST" in final
