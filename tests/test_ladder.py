"""pick_renditions: which rungs, sizes, frame rates and caps each kind of source gets (pure)."""

from __future__ import annotations

import pytest

from videoflix.transcode.ladder import Rendition, output_fps, pick_renditions
from videoflix.transcode.probe import Probe, parse_probe

from media import BBB_ROTATED, BBB_WEBM, FIRE_VFR, PARK, PEOPLE, STREET, probe_facts


def source(width: int, height: int, fps: float = 30.0, nominal: float | None = None) -> Probe:
    return Probe(width=width, height=height, duration=10.0, fps=fps, has_audio=True,
                 video_codec="h264", nominal_fps=fps if nominal is None else nominal)


def sizes(renditions: list[Rendition]) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in renditions]


def test_1080p_landscape_gets_three_rungs_highest_first():
    renditions = pick_renditions(parse_probe(probe_facts(PARK)))
    assert sizes(renditions) == [("1080p", 1920, 1080), ("720p", 1280, 720), ("480p", 854, 480)]


def test_rungs_carry_caps_and_a_buffer_of_twice_the_cap():
    renditions = pick_renditions(parse_probe(probe_facts(PARK)))
    assert [(r.max_kbps, r.bufsize_kbps) for r in renditions] == [
        (6000, 12000), (3000, 6000), (1400, 2800)]


def test_rotated_portrait_is_named_by_its_shorter_side():
    renditions = pick_renditions(parse_probe(probe_facts(BBB_ROTATED)))
    assert sizes(renditions) == [("1080p", 1080, 1920), ("720p", 720, 1280), ("480p", 480, 854)]


def test_odd_sized_portrait_gets_even_dimensions_with_its_aspect_kept():
    renditions = pick_renditions(parse_probe(probe_facts(STREET)))
    assert sizes(renditions) == [("1080p", 1080, 1444), ("720p", 720, 962), ("480p", 480, 642)]
    for r in renditions:
        assert r.height / r.width == pytest.approx(1840 / 1376, abs=2 / r.width)


def test_720p_source_is_never_upscaled_to_1080p():
    assert sizes(pick_renditions(parse_probe(probe_facts(BBB_WEBM)))) == [
        ("720p", 1280, 720), ("480p", 854, 480)]


def test_source_between_rungs_gets_only_the_rungs_below_it():
    assert sizes(pick_renditions(source(1066, 600))) == [("480p", 852, 480)]
    assert [r.name for r in pick_renditions(source(1778, 1000))] == ["720p", "480p"]


def test_source_below_480_gets_one_rendition_at_its_own_size_named_480p():
    renditions = pick_renditions(parse_probe(probe_facts(PEOPLE)))
    assert sizes(renditions) == [("480p", 768, 432)]
    assert (renditions[0].max_kbps, renditions[0].bufsize_kbps) == (1400, 2800)


def test_odd_tiny_source_is_rounded_down_to_even():
    assert sizes(pick_renditions(source(333, 187))) == [("480p", 332, 186)]


def test_4k_source_tops_out_at_1080p():
    assert sizes(pick_renditions(source(3840, 2160)))[0] == ("1080p", 1920, 1080)


@pytest.mark.parametrize("width,height", [
    (1920, 1080), (1080, 1920), (1376, 1840), (1281, 721), (1279, 719), (854, 480), (853, 481),
    (720, 576), (1440, 1080), (2560, 1080), (1080, 1080), (481, 2000), (3840, 2160), (100, 50),
])
def test_renditions_are_even_never_upscaled_and_keep_the_aspect(width, height):
    renditions = pick_renditions(source(width, height))
    for r in renditions:
        assert r.width % 2 == 0 and r.height % 2 == 0
        assert r.width <= width and r.height <= height
        assert r.width / r.height == pytest.approx(width / height, rel=0.01)
    if min(width, height) >= 480:
        assert [min(r.width, r.height) for r in renditions] == [
            int(r.name.rstrip("p")) for r in renditions]


def test_constant_rate_is_kept():
    for fps in (24.0, 25.0, 30.0, 50.0, 60.0, 12.5):
        assert output_fps(source(1920, 1080, fps)) == fps


def test_ntsc_rates_stay_exact():
    assert output_fps(source(1920, 1080, 23.976)) == 24000 / 1001
    assert output_fps(source(1920, 1080, 30000 / 1001)) == 30000 / 1001
    assert output_fps(source(1920, 1080, 60000 / 1001)) == 60000 / 1001


def test_variable_frame_rate_becomes_the_rounded_average():
    assert output_fps(parse_probe(probe_facts(FIRE_VFR))) == 11.0


def test_dropped_frames_keep_the_nominal_rate():
    assert output_fps(parse_probe(probe_facts(STREET))) == 30000 / 1001


def test_rates_above_60_are_halved():
    assert output_fps(source(1920, 1080, 120.0)) == 60.0
    assert output_fps(source(1920, 1080, 120000 / 1001)) == 60000 / 1001
    assert output_fps(source(1920, 1080, 90.0)) == 45.0
    assert output_fps(source(1920, 1080, 240.0)) == 60.0


def test_every_rendition_shares_one_frame_rate():
    renditions = pick_renditions(parse_probe(probe_facts(STREET)))
    assert {r.fps for r in renditions} == {30000 / 1001}
