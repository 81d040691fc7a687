"""Master playlist text and segment measurements (pure, plus measure_rendition on tmp files)."""

from __future__ import annotations

import pytest

from videoflix.transcode.ladder import Rendition
from videoflix.transcode.ladderfile import h264_level, provisional_variants, read_ladder, write_ladder
from videoflix.transcode.playlist import (
    PlaylistError,
    Segment,
    SubtitleTrack,
    Variant,
    avc1_codec,
    codecs_attribute,
    master_playlist,
    measure_rendition,
    parse_media_playlist,
    peak_bitrate,
    render_master,
    rendition_stats,
    vod_playlist,
)

# What ffmpeg 5.1's hls muxer writes for a 5.7 s clip with 4 s segments.
MEDIA_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:4.000000,
seg_00000.ts
#EXTINF:1.700000,
seg_00001.ts
#EXT-X-ENDLIST
"""


def variant(name: str, width: int, height: int, peak: int, average: int,
            codecs: str = "avc1.640028,mp4a.40.2", fps: float = 30.0) -> Variant:
    return Variant(name, width, height, fps, codecs, peak, average)


LADDER = [
    variant("1080p", 1920, 1080, 6_300_000, 5_900_000),
    variant("720p", 1280, 720, 3_200_000, 3_000_000, "avc1.64001f,mp4a.40.2"),
    variant("480p", 854, 480, 1_500_000, 1_400_000, "avc1.64001e,mp4a.40.2"),
]


def test_media_playlist_gives_target_and_extinf_durations():
    target, entries = parse_media_playlist(MEDIA_PLAYLIST)
    assert target == 4
    assert entries == [("seg_00000.ts", 4.0), ("seg_00001.ts", 1.7)]


def test_text_that_is_not_a_playlist_is_rejected():
    with pytest.raises(PlaylistError):
        parse_media_playlist("<html>")


def test_segment_without_extinf_is_rejected():
    with pytest.raises(PlaylistError):
        parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:4\nseg_00000.ts\n")


def test_average_is_total_bits_over_total_duration():
    stats = rendition_stats([Segment("a", 4.0, 1_000_000), Segment("b", 4.0, 3_000_000)], 4)
    assert stats.average_bps == 4_000_000
    assert stats.total_bytes == 4_000_000
    assert stats.duration == 8.0
    assert stats.segment_count == 2


def test_peak_of_full_segments_is_the_biggest_segment_bitrate():
    segments = [Segment("a", 4.0, 1_000_000), Segment("b", 4.0, 3_000_000), Segment("c", 4.0, 2_000_000)]
    assert peak_bitrate(segments, 4) == 6_000_000


def test_short_final_segment_is_measured_with_its_neighbour():
    # Alone, 0.4 s holding an IDR frame would claim 8 Mb/s; RFC 8216 windows of 2-6 s
    # merge it with the segment before.
    segments = [Segment("a", 4.0, 1_000_000), Segment("b", 0.4, 400_000)]
    assert peak_bitrate(segments, 4) == pytest.approx(1_400_000 * 8 / 4.4)


def test_video_shorter_than_half_a_segment_is_measured_whole():
    assert peak_bitrate([Segment("a", 1.0, 250_000)], 4) == 2_000_000


def test_measure_rendition_reads_extinf_and_segment_sizes(tmp_path):
    (tmp_path / "index.m3u8").write_text(MEDIA_PLAYLIST)
    (tmp_path / "seg_00000.ts").write_bytes(b"\x47" * 2_000_000)
    (tmp_path / "seg_00001.ts").write_bytes(b"\x47" * 850_000)
    stats = measure_rendition(tmp_path)
    assert stats.segment_count == 2
    assert stats.total_bytes == 2_850_000
    assert stats.target_duration == 4
    assert stats.average_bps == 4_000_000  # 2.85 MB * 8 / 5.7 s
    assert stats.peak_bps == 4_000_000  # the 5.7 s pair beats the 4.0 s segment alone


def test_measure_rendition_of_a_missing_segment_fails(tmp_path):
    (tmp_path / "index.m3u8").write_text(MEDIA_PLAYLIST)
    with pytest.raises(PlaylistError):
        measure_rendition(tmp_path)


@pytest.mark.parametrize("profile,level,expected", [
    ("High", 40, "avc1.640028"),
    ("High", 31, "avc1.64001f"),
    ("High", 30, "avc1.64001e"),
    ("Main", 30, "avc1.4d001e"),
    ("Constrained Baseline", 30, "avc1.42e01e"),
])
def test_avc1_codec_string_from_profile_and_level(profile, level, expected):
    assert avc1_codec(profile, level) == expected


def test_codecs_name_aac_lc_only_when_there_is_audio():
    assert codecs_attribute("High", 40, True) == "avc1.640028,mp4a.40.2"
    assert codecs_attribute("High", 40, False) == "avc1.640028"


def test_master_playlist_starts_with_720p_then_the_rest_highest_first():
    text = master_playlist(LADDER)
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == ["720p/index.m3u8", "1080p/index.m3u8", "480p/index.m3u8"]


def test_master_playlist_without_720p_is_highest_first():
    text = master_playlist([LADDER[2], LADDER[0]])
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == ["1080p/index.m3u8", "480p/index.m3u8"]


def test_master_playlist_text():
    assert master_playlist([LADDER[1], variant("480p", 480, 642, 1_872_864, 1_848_673,
                                               "avc1.64001e", 30000 / 1001)]) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3200000,AVERAGE-BANDWIDTH=3000000,RESOLUTION=1280x720,"
        'CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=30.000\n'
        "720p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1872864,AVERAGE-BANDWIDTH=1848673,RESOLUTION=480x642,"
        'CODECS="avc1.64001e",FRAME-RATE=29.970\n'
        "480p/index.m3u8\n"
    )


def test_master_playlist_needs_a_variant():
    with pytest.raises(PlaylistError):
        master_playlist([])


# --- versions: the master rendered from ladder.json, EVENT -> VOD ------------------------

def ladder_json(**extra) -> dict:
    return {"complete": True, "variants": [
        {"name": v.name, "width": v.width, "height": v.height, "fps": v.fps, "codecs": v.codecs,
         "peak_bps": v.peak_bps, "average_bps": v.average_bps} for v in LADDER],
        "iframes": [], "thumbnails_vtt": None, "start_pts": 126000, "duration": 5.8, "segment_seconds": 4,
        **extra}


def test_render_master_prefixes_every_uri_with_the_version():
    text = render_master(ladder_json(), prefix="v3/")
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == ["v3/720p/index.m3u8", "v3/1080p/index.m3u8", "v3/480p/index.m3u8"]
    assert text == master_playlist(LADDER).replace("\n720p/", "\nv3/720p/").replace(
        "\n1080p/", "\nv3/1080p/").replace("\n480p/", "\nv3/480p/")


def test_render_master_lists_iframe_playlists_from_the_ladder():
    iframes = [{"name": "720p", "width": 1280, "height": 720, "codecs": "avc1.64001f", "peak_bps": 900_000,
                "average_bps": 300_000}]
    text = render_master(ladder_json(iframes=iframes), prefix="v2/")
    assert text.splitlines()[-1] == ('#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=300000,'
                                     'RESOLUTION=1280x720,CODECS="avc1.64001f",URI="v2/720p/iframes.m3u8"')


def test_render_master_with_subtitles_names_the_group_on_every_variant():
    text = render_master(ladder_json(), [SubtitleTrack("en", "English", default=True),
                                         SubtitleTrack("de", 'Deutsch "DE"')], prefix="v1/")
    lines = text.splitlines()
    assert lines[3] == ('#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=YES,'
                        'AUTOSELECT=YES,URI="v1/subtitles/en/index.m3u8"')
    assert 'NAME="Deutsch \'DE\'"' in lines[4]  # no quote can end the attribute early
    stream_infs = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(stream_infs) == 3 and all(line.endswith(',SUBTITLES="subs"') for line in stream_infs)


@pytest.mark.parametrize("broken", [{}, {"variants": [{"name": "720p"}]}, {"variants": None},
                                    {"variants": [{"name": "x", "width": "wide", "height": 1, "codecs": "c",
                                                   "peak_bps": 1, "average_bps": 1}]}])
def test_render_master_refuses_a_malformed_ladder(broken):
    with pytest.raises(PlaylistError):
        render_master(broken)


def test_vod_playlist_keeps_the_segments_and_ends_the_list():
    event = MEDIA_PLAYLIST.replace("VOD", "EVENT")
    assert vod_playlist(event) == MEDIA_PLAYLIST
    without_end = event.replace("#EXT-X-ENDLIST\n", "")
    assert vod_playlist(without_end) == MEDIA_PLAYLIST
    assert vod_playlist(MEDIA_PLAYLIST) == MEDIA_PLAYLIST  # idempotent


def test_vod_playlist_refuses_a_playlist_without_segments():
    with pytest.raises(PlaylistError):
        vod_playlist("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n")


@pytest.mark.parametrize("size, fps, max_kbps, level", [
    ((1920, 1080), 30.0, 6000, 40), ((1920, 1080), 60.0, 6000, 42), ((1280, 720), 30.0, 3000, 31),
    ((1280, 720), 60.0, 3000, 32), ((854, 480), 25.0, 1400, 30), ((854, 480), 30.0, 1400, 31),
    ((3840, 2160), 30.0, 6000, 51), ((854, 480), 11.0, 1400, 22), ((768, 432), 10.0, 1400, 22),
])
def test_h264_level_is_the_lowest_that_fits(size, fps, max_kbps, level):
    assert h264_level(*size, fps, max_kbps, 2 * max_kbps) == level


def test_provisional_variants_bandwidth_is_the_caps_plus_audio():
    rendition = Rendition("720p", 1280, 720, 30.0, 3000, 6000)
    (with_audio,) = provisional_variants([rendition], True, 128)
    # The caps plus 10 % for the MPEG-TS packaging.
    assert (with_audio.peak_bps, with_audio.average_bps, with_audio.codecs) == (3_440_800, 3_440_800,
                                                                                "avc1.64001f,mp4a.40.2")
    (silent,) = provisional_variants([rendition], False, 128)
    assert (silent.peak_bps, silent.codecs) == (3_300_000, "avc1.64001f")


def test_ladder_file_is_replaced_atomically_and_unreadable_is_none(tmp_path):
    path = tmp_path / "ladder.json"
    assert read_ladder(path) is None
    write_ladder(path, ladder_json())
    assert read_ladder(path) == ladder_json()
    assert [p.name for p in tmp_path.iterdir()] == ["ladder.json"]
    path.write_text("{not json")
    assert read_ladder(path) is None
    path.write_text('{"variants": 3}')
    assert read_ladder(path) is None
