"""Master playlist text and segment measurements (pure, plus measure_rendition on tmp files)."""

from __future__ import annotations

import pytest

from videoflix.transcode.playlist import (
    PlaylistError,
    Segment,
    Variant,
    avc1_codec,
    codecs_attribute,
    master_playlist,
    measure_rendition,
    parse_media_playlist,
    peak_bitrate,
    rendition_stats,
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
