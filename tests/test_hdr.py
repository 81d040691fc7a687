"""HDR sources (PQ and HLG) come out as BT.709 SDR; SDR sources are left as they are.

The HDR clips are made here with ffmpeg from the shared park clip: SDR white placed at
the HDR reference white (203 cd/m2, ITU-R BT.2408), BT.2020, 10-bit, as a phone or a
grading suite writes it (HEVC for PQ, VP9 for HLG). The transcode's output is compared
with that SDR original: colour tags, bit depth, and average brightness and saturation
(ffmpeg's signalstats) within a sane range of the original's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from videoflix.platform.media import SEGMENT_PATTERN
from videoflix.transcode import colour
from videoflix.transcode.command import TranscodeSettings, build_command, build_poster_command
from videoflix.transcode.job import transcode
from videoflix.transcode.ladder import pick_renditions
from videoflix.transcode.probe import parse_probe, probe_file_sync

from media import PARK, clip, ffprobe_json, probe_facts

SIZE = (640, 360)
SECONDS = 2
# The SDR original at the test size: what the HDR clips were mastered from.
REFERENCE = "trim=duration=%d,scale=%d:%d" % (SECONDS, *SIZE)
# BT.709 SDR -> BT.2020 linear light, SDR white at 203 cd/m2, then the HDR transfer.
MASTER = ("scale=%d:%d,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv,"
          "zscale=t=linear:npl=203,format=gbrpf32le,"
          "zscale=p=bt2020:t={transfer}:m=bt2020nc:r=tv:npl=203,format=yuv420p10le" % SIZE)
HDR_CLIPS = {
    "pq-hevc": ("smpte2084", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
                "mp4"),
    "hlg-vp9": ("arib-std-b67", ["-c:v", "libvpx-vp9", "-profile:v", "2", "-deadline", "realtime",
                                 "-cpu-used", "8", "-b:v", "1M"], "webm"),
}
# How far from the original a tone-mapped picture may be. Measured: average luma 89 vs
# 94, saturation 15.5-16 vs 16.5. Without tone mapping the saturation is 7-8.6 (washed
# out), which these bounds refuse (test_the_measure_tells_washed_out_from_right).
LUMA_TOLERANCE = 0.2
MIN_SATURATION_RATIO = 0.75


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


def picture_stats(path: Path, filters: str = "null") -> dict[str, float]:
    """Average YAVG and SATAVG over every frame, in 8-bit units."""
    out = run("ffmpeg", "-v", "error", "-i", str(path), "-vf",
              filters + ",format=yuv420p,signalstats,metadata=print:file=-", "-f", "null", "-")
    sums: dict[str, list[float]] = {"YAVG": [], "SATAVG": []}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in sums:
            sums[name].append(float(value))
    assert sums["YAVG"], out
    return {name: sum(values) / len(values) for name, values in sums.items()}


@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory):
    made: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in made:
            transfer, codec, extension = HDR_CLIPS[kind]
            path = tmp_path_factory.mktemp("hdr") / f"{kind}.{extension}"
            run("ffmpeg", "-v", "error", "-y", "-t", str(SECONDS), "-i", str(clip(PARK)),
                "-vf", MASTER.format(transfer=transfer), *codec,
                "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc",
                "-an", str(path))
            made[kind] = path
        return made[kind]
    return make


@pytest.fixture(scope="module")
def reference():
    return picture_stats(clip(PARK), REFERENCE)


# --- which sources, which filters (pure) ------------------------------------------------

@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67", "SMPTE2084 "])
def test_pq_and_hlg_are_tone_mapped_to_bt709(transfer):
    filters = colour.tone_map_filters(transfer, "bt2020", "bt2020nc", (1280, 720))
    assert filters[0].startswith("zscale=w=1280:h=720:tin=%s:pin=bt2020:min=bt2020nc:t=linear:npl=203"
                                 % transfer.strip().lower())
    assert "tonemap=tonemap=mobius:desat=0" in filters
    assert filters[-2:] == ["zscale=t=bt709:m=bt709:r=tv", "format=yuv420p"]
    assert colour.output_args(filters) == list(colour.SDR_OUTPUT_ARGS)


@pytest.mark.parametrize("transfer", [None, "", "bt709", "smpte170m", "bt2020-10", "unknown",
                                      "smpte2084:t=linear", "arib-std-b67,drawtext"])
def test_sdr_unknown_and_forged_transfers_are_left_alone(transfer):
    assert colour.tone_map_filters(transfer, "bt2020", "bt2020nc") == []
    assert colour.output_args([]) == []


def test_unstated_or_forged_primaries_and_matrix_fall_back_to_bt2020():
    filters = colour.tone_map_filters("smpte2084", "bt2020;[x]", None)
    assert filters[0] == "zscale=tin=smpte2084:pin=bt2020:min=bt2020nc:t=linear:npl=203"


def test_probe_reads_the_colour_description():
    facts = probe_facts(PARK)
    facts["streams"][0].update(color_transfer="smpte2084", color_primaries="bt2020",
                               color_space="bt2020nc")
    probe = parse_probe(facts)
    assert (probe.color_transfer, probe.color_primaries, probe.color_space) == (
        "smpte2084", "bt2020", "bt2020nc")
    facts["streams"][0].update(color_transfer="unknown", color_primaries=7, color_space="x" * 40)
    probe = parse_probe(facts)
    assert (probe.color_transfer, probe.color_primaries, probe.color_space) == (None, None, None)


def test_sdr_commands_have_no_tone_mapping_and_no_forced_tags():
    probe = parse_probe(probe_facts(PARK))
    command = build_command("/in/x", "/out", probe, pick_renditions(probe), TranscodeSettings())
    assert "tonemap" not in " ".join(command) and "-color_trc" not in command
    assert "tonemap" not in " ".join(build_poster_command("/in/x", "/out", probe))


def test_hdr_command_tone_maps_once_before_the_ladder_and_tags_the_output():
    facts = probe_facts(PARK)
    facts["streams"][0].update(color_transfer="arib-std-b67", color_primaries="bt2020")
    probe = parse_probe(facts)
    command = build_command("/in/x", "/out", probe, pick_renditions(probe), TranscodeSettings())
    graph = command[command.index("-filter_complex") + 1]
    assert graph.count("tonemap=tonemap=") == 1
    first_chain = graph.split(";")[0]
    assert first_chain.startswith("[0:0]fps=30,zscale=w=1920:h=1080:tin=arib-std-b67")
    assert command[command.index("-color_trc") + 1] == "bt709"
    assert command[command.index("-colorspace") + 1] == "bt709"
    poster = " ".join(build_poster_command("/in/x", "/out", probe))
    assert "tonemap=tonemap=mobius" in poster


# --- real HDR sources through the real pipeline (slow) ----------------------------------

@pytest.mark.slow
def test_the_measure_tells_washed_out_from_right(hdr_clip, reference):
    """Decoding PQ as if it were SDR (no tone mapping) fails the bounds the tests use."""
    washed_out = picture_stats(hdr_clip("pq-hevc"), "scale")
    assert washed_out["SATAVG"] < MIN_SATURATION_RATIO * reference["SATAVG"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(HDR_CLIPS))
def test_hdr_source_becomes_tagged_bt709_sdr_close_to_the_original(kind, hdr_clip, reference, tmp_path):
    source = hdr_clip(kind)
    probe = probe_file_sync(source)
    assert colour.hdr_transfer(probe.color_transfer) is not None
    assert probe.video_codec in ("hevc", "vp9")

    result = transcode(source, tmp_path)
    segment = tmp_path / result.resolutions[0] / (SEGMENT_PATTERN % 0)
    (stream,) = ffprobe_json(segment, "-select_streams", "v", "-show_streams")["streams"]
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert (stream.get("color_primaries"), stream.get("color_transfer"), stream.get("color_space"),
            stream.get("color_range")) == ("bt709", "bt709", "bt709", "tv")

    stats = picture_stats(segment)
    assert abs(stats["YAVG"] - reference["YAVG"]) <= LUMA_TOLERANCE * reference["YAVG"], (stats, reference)
    assert stats["SATAVG"] >= MIN_SATURATION_RATIO * reference["SATAVG"], (stats, reference)
    poster = picture_stats(tmp_path / "poster.jpg")
    assert poster["SATAVG"] >= MIN_SATURATION_RATIO * reference["SATAVG"], (poster, reference)


@pytest.mark.slow
def test_sdr_source_output_keeps_the_original_brightness(reference, tmp_path):
    source = tmp_path / "sdr.mp4"
    run("ffmpeg", "-v", "error", "-y", "-t", str(SECONDS), "-i", str(clip(PARK)), "-vf",
        "scale=%d:%d" % SIZE, "-c:v", "libx264", "-preset", "ultrafast", "-an", str(source))
    out = tmp_path / "out"
    result = transcode(source, out)
    stats = picture_stats(out / result.resolutions[0] / (SEGMENT_PATTERN % 0))
    assert abs(stats["YAVG"] - reference["YAVG"]) <= 0.05 * reference["YAVG"]
    assert abs(stats["SATAVG"] - reference["SATAVG"]) <= 0.1 * reference["SATAVG"]
