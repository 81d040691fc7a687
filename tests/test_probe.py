"""parse_probe on the ffprobe facts of the shared clips (pure), plus the two probe runners."""

from __future__ import annotations

import os

import pytest

from videoflix.transcode.probe import ProbeError, parse_probe, probe_file, probe_file_sync

from media import BBB_ROTATED, BBB_WEBM, FIRE_VFR, PARK, PEOPLE, STREET, clip, probe_facts


def test_landscape_clip_reports_size_duration_fps_and_audio():
    probe = parse_probe(probe_facts(PARK))
    assert (probe.width, probe.height) == (1920, 1080)
    assert probe.duration == pytest.approx(5.759)
    assert probe.fps == 30.0
    assert probe.has_audio is True
    assert probe.video_codec == "h264"
    assert probe.rotation == 0
    assert (probe.video_stream_index, probe.audio_stream_index) == (0, 1)


def test_rotation_side_data_of_minus_90_swaps_to_displayed_portrait():
    probe = parse_probe(probe_facts(BBB_ROTATED))
    assert (probe.width, probe.height) == (1080, 1920)
    assert probe.rotation == 270  # -90 normalised to 0..359


def test_legacy_rotate_tag_of_90_swaps_to_portrait():
    data = probe_facts(PARK)
    data["streams"][0]["tags"] = {"rotate": "90"}
    probe = parse_probe(data)
    assert (probe.width, probe.height) == (1080, 1920)
    assert probe.rotation == 270  # clockwise tag, counter-clockwise convention


def test_rotation_of_180_keeps_landscape():
    probe = parse_probe(probe_facts(FIRE_VFR))
    assert (probe.width, probe.height) == (1280, 720)
    assert probe.rotation == 180


def test_variable_frame_rate_uses_average_rate_not_the_90000_time_base():
    probe = parse_probe(probe_facts(FIRE_VFR))
    assert probe.fps == pytest.approx(750000 / 71393)  # about 10.5
    assert probe.nominal_fps is None  # r_frame_rate 90000/1 is no frame rate


def test_frame_rate_falls_back_to_r_frame_rate_when_average_is_unknown():
    data = probe_facts(PARK)
    data["streams"][0]["avg_frame_rate"] = "0/0"
    assert parse_probe(data).fps == 30.0


def test_irregular_timing_keeps_average_and_nominal_rates():
    probe = parse_probe(probe_facts(STREET))
    assert probe.fps == pytest.approx(547500 / 19019)  # 28.79: dropped frames
    assert probe.nominal_fps == pytest.approx(30000 / 1001)


def test_odd_size_hevc_portrait_stored_upright():
    probe = parse_probe(probe_facts(STREET))
    assert (probe.width, probe.height) == (1376, 1840)
    assert probe.video_codec == "hevc"
    assert probe.rotation == 0


def test_five_point_one_audio_is_detected():
    probe = parse_probe(probe_facts(BBB_ROTATED))
    assert probe.has_audio is True
    assert probe.audio_channels == 6


def test_clip_without_audio_track_has_no_audio():
    probe = parse_probe(probe_facts(PEOPLE))
    assert probe.has_audio is False
    assert probe.audio_stream_index is None
    assert (probe.width, probe.height) == (768, 432)
    assert probe.duration == pytest.approx(139.4)


def test_webm_with_vp8_and_vorbis_is_a_video():
    probe = parse_probe(probe_facts(BBB_WEBM))
    assert probe.video_codec == "vp8"
    assert probe.has_audio is True


def test_non_square_pixels_stretch_the_displayed_width():
    data = probe_facts(PARK)
    data["streams"][0].update(width=720, height=480, sample_aspect_ratio="32:27")
    probe = parse_probe(data)
    assert (probe.width, probe.height) == (853, 480)


def test_cover_art_alone_is_not_a_video_stream():
    data = {
        "streams": [
            {"index": 0, "codec_type": "audio", "codec_name": "mp3", "disposition": {"attached_pic": 0}},
            {"index": 1, "codec_type": "video", "codec_name": "mjpeg", "width": 600, "height": 600,
             "r_frame_rate": "90000/1", "avg_frame_rate": "0/0", "disposition": {"attached_pic": 1}},
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "181.0"},  # an .m4a with cover art
    }
    with pytest.raises(ProbeError, match="^No video stream found.$"):
        parse_probe(data)


def test_cover_art_before_the_real_video_is_skipped():
    data = probe_facts(PARK)
    for stream in data["streams"]:
        stream["index"] += 1
    data["streams"].insert(0, {
        "index": 0, "codec_type": "video", "codec_name": "png", "width": 300, "height": 300,
        "disposition": {"default": 0, "attached_pic": 1},
    })
    probe = parse_probe(data)
    assert probe.video_stream_index == 1
    assert (probe.width, probe.height) == (1920, 1080)


def test_audio_only_file_has_no_video_stream():
    data = probe_facts(PARK)
    del data["streams"][0]
    with pytest.raises(ProbeError, match="^No video stream found.$"):
        parse_probe(data)


def test_zero_duration_is_rejected():
    data = probe_facts(PARK)
    data["format"]["duration"] = "0.000000"
    with pytest.raises(ProbeError, match="^Zero duration.$"):
        parse_probe(data)


def test_missing_duration_falls_back_to_the_video_stream():
    data = probe_facts(PARK)
    del data["format"]["duration"]
    data["streams"][0]["duration"] = "5.700000"
    assert parse_probe(data).duration == pytest.approx(5.7)


def test_unknown_duration_is_rejected():
    data = probe_facts(PARK)
    data["format"]["duration"] = "N/A"
    with pytest.raises(ProbeError, match="duration"):
        parse_probe(data)


@pytest.mark.parametrize("garbage", [{}, {"streams": "x", "format": {}}, {"streams": []}, [], None])
def test_garbage_is_an_unreadable_media_file(garbage):
    with pytest.raises(ProbeError, match="^Unreadable media file.$"):
        parse_probe(garbage)


def test_video_without_picture_size_is_rejected():
    data = probe_facts(PARK)
    del data["streams"][0]["width"]
    with pytest.raises(ProbeError):
        parse_probe(data)


def test_probe_file_sync_reads_a_real_clip():
    probe = probe_file_sync(clip(BBB_ROTATED))
    assert (probe.width, probe.height) == (1080, 1920)
    assert probe.has_audio and probe.audio_channels == 6


def test_probe_file_sync_rejects_a_text_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n")
    with pytest.raises(ProbeError, match="^Unreadable media file.$"):
        probe_file_sync(path)


@pytest.mark.gen_test
async def test_probe_file_reads_a_real_clip_without_blocking_the_loop():
    probe = await probe_file(clip(STREET))
    assert (probe.width, probe.height) == (1376, 1840)
    assert probe.video_codec == "hevc"


@pytest.mark.gen_test
async def test_probe_file_kills_ffprobe_stuck_on_a_fifo(tmp_path):
    fifo = tmp_path / "upload.mp4"
    os.mkfifo(fifo)
    with pytest.raises(ProbeError, match="Timed out"):
        await probe_file(fifo, timeout=0.5)
    # Nobody holds the FIFO open for reading any more: ffprobe is gone.
    with pytest.raises(OSError):
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
