"""subtitles.py, pure: SRT -> WebVTT, WebVTT validation, language tags, labels, segmenting."""
from __future__ import annotations

import re

import pytest

from videoflix.library import subtitle_formats
from videoflix.library.subtitle_formats import Cue, SubtitleError
from videoflix.platform import media

SRT = (b"1\n00:00:01,000 --> 00:00:02,500\nHello <i>world</i>\n\n"
       b"2\n00:00:03,000 --> 00:00:04,000\nSecond\nline\n")
VTT = b"WEBVTT\n\n00:01.000 --> 00:02.500\nHello\n\n00:00:03.000 --> 00:00:04.000 align:start\nSecond\n"


# --- SRT ---------------------------------------------------------------------------

def test_srt_converts_to_webvtt_cues_with_millisecond_times():
    cues = subtitle_formats.parse_srt(SRT)
    assert cues == [Cue(1000, 2500, "Hello <i>world</i>"), Cue(3000, 4000, "Second\nline")]
    text = subtitle_formats.render_vtt(cues)
    assert text.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello <i>world</i>\n")
    assert subtitle_formats.parse_vtt(text.encode()) == cues  # our output is valid WebVTT


def test_srt_with_bom_and_crlf_line_endings_parses():
    data = b"\xef\xbb\xbf" + SRT.replace(b"\n", b"\r\n")
    assert subtitle_formats.parse_srt(data) == subtitle_formats.parse_srt(SRT)


def test_srt_markup_is_escaped_except_bold_italic_underline():
    data = (b"1\n00:00:01,000 --> 00:00:02,000\n{\\an8}<font color=\"red\">Tom & Jerry</font> "
            b"<B>a</B> <script>x</script> 1 < 2 --> 3\n")
    (cue,) = subtitle_formats.parse_srt(data)
    assert cue.text == "Tom &amp; Jerry <b>a</b> x 1 &lt; 2 --&gt; 3"
    assert "-->" not in cue.text


def test_srt_without_index_lines_and_with_dot_milliseconds_parses():
    cues = subtitle_formats.parse_srt(b"00:00:01.000 --> 00:00:02.000\nA\n\n00:00:03,000 --> 00:00:04,000\nB\n")
    assert [cue.text for cue in cues] == ["A", "B"]


def test_srt_out_of_order_cues_are_sorted_by_start():
    data = b"1\n00:00:05,000 --> 00:00:06,000\nlate\n\n2\n00:00:01,000 --> 00:00:02,000\nearly\n"
    assert [cue.text for cue in subtitle_formats.parse_srt(data)] == ["early", "late"]


@pytest.mark.parametrize("data, message", [
    (b"just some text\n", "Line 1: expected a cue timing"),
    (b"1\n00:00:01,000 -> 00:00:02,000\nx\n", "Line 2: expected a cue timing"),
    (b"1\n0:0:1,0 --> 0:0:2,0\nx\n", "Line 2: expected a cue timing"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nx\n\n\nstray text\n", "Line 6: expected a cue timing"),
    (b"1\n00:00:05,000 --> 00:00:02,000\nbackwards\n", "Line 2: the cue ends before it starts"),
    (b"1\n00:00:05,000 --> 00:00:05,000\nzero\n", "Line 2: the cue ends before it starts"),
    (b"1\n00:61:00,000 --> 00:62:00,000\nx\n", "Line 2: expected a cue timing"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nx\x00y\n", "NUL"),
    (b"1\n00:00:01,000 --> 00:00:02,000\n\xff\xfe bad\n", "Line 3: the subtitle file is not valid UTF-8"),
    (b"", "no cues"),
    (b"\n\n  \n", "no cues"),
    (b"WEBVTT\n\n00:01.000 --> 00:02.000\nx\n", "This is a WebVTT file"),
])
def test_bad_srt_is_refused_with_the_reason(data, message):
    with pytest.raises(SubtitleError, match=re.escape(message)):
        subtitle_formats.parse_srt(data)


def test_binary_file_is_refused():
    with pytest.raises(SubtitleError):
        subtitle_formats.parse_subtitles(bytes(range(256)) * 10, "srt")
    with pytest.raises(SubtitleError):
        subtitle_formats.parse_subtitles(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "vtt")


def test_oversized_file_is_refused_before_parsing():
    data = b"1\n00:00:01,000 --> 00:00:02,000\n" + b"x" * subtitle_formats.MAX_FILE_BYTES
    with pytest.raises(SubtitleError, match="too large"):
        subtitle_formats.parse_srt(data)


def test_too_many_cues_are_refused():
    cue = b"00:00:01.000 --> 00:00:02.000\nx\n\n"
    with pytest.raises(SubtitleError, match="Too many cues"):
        subtitle_formats.parse_vtt(b"WEBVTT\n\n" + cue * (subtitle_formats.MAX_CUES + 1))


def test_overlong_cue_text_is_refused():
    with pytest.raises(SubtitleError, match="longer than"):
        subtitle_formats.parse_srt(b"1\n00:00:01,000 --> 00:00:02,000\n" + b"x" * (subtitle_formats.MAX_CUE_CHARS + 1) + b"\n")


def test_times_past_the_cap_are_refused():
    with pytest.raises(SubtitleError, match="after 100 hours"):
        subtitle_formats.parse_vtt(b"WEBVTT\n\n100:00:00.000 --> 100:00:01.000\nx\n")


# --- WebVTT ------------------------------------------------------------------------

def test_vtt_header_notes_styles_identifiers_and_bad_settings_are_dropped():
    data = (b"WEBVTT - a title\nX-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000\n\n"
            b"NOTE a comment\nover two lines\n\nSTYLE\n::cue { color: red }\n\n"
            b"intro\n00:01.000 --> 00:03.000 align:start bogus:1 line:10% position:200\n<v Bob>hi</v>\n")
    (cue,) = subtitle_formats.parse_vtt(data)
    assert cue == Cue(1000, 3000, "<v Bob>hi</v>", "align:start line:10%")
    assert "MPEGTS:900000" not in subtitle_formats.render_vtt([cue])


@pytest.mark.parametrize("data, message", [
    (b"WEBVTTX\n\n00:01.000 --> 00:02.000\nx\n", "Line 1: a WebVTT file starts with 'WEBVTT'"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nx\n", "Line 1: a WebVTT file starts with 'WEBVTT'"),
    (b"WEBVTT\n00:01.000 --> 00:02.000\nx\n", "Line 2: a blank line must separate"),
    (b"WEBVTT\n\n00:01.000 --> 00:02.000\nx\n00:03.000 --> 00:04.000\ny\n", "Line 5: cue text may not contain"),
    (b"WEBVTT\n\n1:2:3.4 --> 1:2:3.5\nx\n", "Line 3: expected a cue timing"),
    (b"WEBVTT\n\n00:01,000 --> 00:02,000\nx\n", "Line 3: expected a cue timing"),
    (b"WEBVTT\n\n00:60.000 --> 00:61.000\nx\n", "Line 3: expected a cue timing"),
    (b"WEBVTT\n\n00:05.000 --> 00:01.000\nx\n", "Line 3: the cue ends before it starts"),
    (b"WEBVTT\n\nid\nnot a timing\nx\n", "Line 4: expected a cue timing"),
    (b"WEBVTT\n\nNOTE a --> b\n", "may not contain '-->'"),
    (b"WEBVTT\n\n00:01.000 --> 00:02.000\nx\x00\n", "NUL"),
    (b"WEBVTT\n", "no cues"),
])
def test_bad_vtt_is_refused_with_the_reason(data, message):
    with pytest.raises(SubtitleError, match=re.escape(message)):
        subtitle_formats.parse_vtt(data)


def test_file_kind_comes_from_the_extension():
    assert subtitle_formats.file_kind("Film.EN.SRT") == "srt"
    assert subtitle_formats.file_kind("a.vtt") == "vtt"
    for name in ("a.txt", "srt", "a.vtt.exe", ""):
        with pytest.raises(SubtitleError):
            subtitle_formats.file_kind(name)


# --- languages and labels -------------------------------------------------------------

@pytest.mark.parametrize("raw, canonical", [
    ("en", "en"), ("EN-us", "en-US"), ("pt-BR", "pt-BR"), ("zh-hant-tw", "zh-Hant-TW"),
    (" de ", "de"), ("eng", "en"), ("ger", "de"), ("fre", "fr"), ("iw", "he"), ("und", "und"),
    ("x-klingon", "x-klingon"), ("en-US-x-sdh", "en-US-x-sdh"),
])
def test_language_tags_are_checked_and_canonicalised(raw, canonical):
    assert subtitle_formats.check_language(raw) == canonical


@pytest.mark.parametrize("raw", ["", "e", "xx", "en-YQ", "fr-YY", "en_US", "en-", "-en", "en--US", "english language",
                                 "a" * 40, "en/../../etc", "ënglish", "de\x00", "123", "en-US-" + "a" * 9])
def test_bad_language_tags_are_refused(raw):
    with pytest.raises(SubtitleError):
        subtitle_formats.check_language(raw)


def test_container_languages_map_to_bcp47_or_und():
    assert subtitle_formats.container_language("eng") == "en"
    assert subtitle_formats.container_language("spa") == "es"
    assert subtitle_formats.container_language(None) == "und"
    assert subtitle_formats.container_language("") == "und"
    assert subtitle_formats.container_language("qqq1") == "und"


def test_default_labels_are_language_names():
    assert subtitle_formats.default_label("en") == "English"
    assert subtitle_formats.default_label("pt-BR") == "Portuguese (Brazil)"


@pytest.mark.parametrize("raw", ["", "   ", 'Say "hi"', "x" * 65, "bell\x07", "\ud800"])
def test_bad_labels_are_refused(raw):
    with pytest.raises(SubtitleError):
        subtitle_formats.clean_label(raw)


def test_labels_are_trimmed_and_made_unique():
    assert subtitle_formats.clean_label("  English   SDH ") == "English SDH"
    assert subtitle_formats.clean_label("two\nlines") == "two lines"
    assert subtitle_formats.unique_label("English", {"English", "English (2)"}) == "English (3)"
    assert subtitle_formats.unique_label("Deutsch", {"English"}) == "Deutsch"


def test_language_file_names_are_only_canonical_tags():
    assert media.subtitle_file_name("pt-BR") == "pt-BR.vtt"
    for bad in ("../x", "en/US", "", "a" * 40, "en.vtt"):
        with pytest.raises(ValueError):
            media.subtitle_file_name(bad)


# --- segmenting ------------------------------------------------------------------------

def _playlist_segments(text: str) -> list[tuple[float, str]]:
    lines = text.splitlines()
    return [(float(lines[i].split(":")[1].rstrip(",")), lines[i + 1])
            for i in range(len(lines)) if lines[i].startswith("#EXTINF:")]


def test_playlist_covers_the_whole_duration_with_segments_of_the_version_length():
    text = subtitle_formats.media_playlist(10.5, 4, media.SUBTITLE_SEGMENT_PATTERN)
    assert text.startswith("#EXTM3U\n") and text.endswith("#EXT-X-ENDLIST\n")
    assert "#EXT-X-TARGETDURATION:4\n" in text and "#EXT-X-PLAYLIST-TYPE:VOD\n" in text
    segments = _playlist_segments(text)
    assert segments == [(4.0, "seg_00000.vtt"), (4.0, "seg_00001.vtt"), (2.5, "seg_00002.vtt")]
    assert sum(duration for duration, _ in segments) == pytest.approx(10.5)


def test_playlist_of_an_exact_multiple_has_no_empty_tail():
    assert len(_playlist_segments(subtitle_formats.media_playlist(8.0, 4, "s%05d.vtt"))) == 2
    assert len(_playlist_segments(subtitle_formats.media_playlist(0.5, 4, "s%05d.vtt"))) == 1


def test_segment_carries_the_timestamp_map_and_the_cues_it_overlaps():
    cues = [Cue(1000, 2000, "a"), Cue(3500, 4500, "spans"), Cue(9000, 9500, "c")]
    first = subtitle_formats.render_segment(cues, 0, 4, 126000)
    second = subtitle_formats.render_segment(cues, 1, 4, 126000)
    third = subtitle_formats.render_segment(cues, 2, 4, 126000)
    assert first.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n")
    assert [cue.text for cue in subtitle_formats.parse_vtt(first.encode())] == ["a", "spans"]
    assert [cue.text for cue in subtitle_formats.parse_vtt(second.encode())] == ["spans"]
    assert [cue.text for cue in subtitle_formats.parse_vtt(third.encode())] == ["c"]
    # The spanning cue keeps its own times in both segments.
    assert "00:00:03.500 --> 00:00:04.500" in first and "00:00:03.500 --> 00:00:04.500" in second


def test_segment_without_cues_is_a_valid_empty_webvtt_file():
    text = subtitle_formats.render_segment([Cue(1000, 2000, "a")], 5, 4, 0)
    assert text == "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n"


def test_subtitle_segment_names_are_strict():
    assert media.parse_subtitle_segment("seg_00003.vtt") == 3
    for bad in ("seg_3.vtt", "seg_00003.ts", "seg_00003.vtt\n", "seg_٠٠٠٠٣.vtt", "../seg_00003.vtt"):
        assert media.parse_subtitle_segment(bad) is None


# --- a version's subtitle playlist and segments (subtitle_tracks, pure) ------------------

LADDER = {"complete": True, "variants": [], "iframes": [], "start_pts": 126000, "duration": 9.5,
          "segment_seconds": 4}


def segment_from_cut(cues: list[Cue], name: str) -> str:
    """What a version's subtitle segment `name` is: its head, then its body in the cut."""
    from videoflix.library import subtitle_hls

    index, segment_ms, start_pts = subtitle_hls.segment_of(LADDER, name)
    cut = subtitle_formats.cut_segments(cues, segment_ms, 0, 0)
    head = subtitle_formats.read_cut_head(cut[:subtitle_formats.CUT_HEAD_BYTES])
    body = b""
    if index < head.count:
        at = subtitle_formats.cut_offsets_at(index)
        start, end = subtitle_formats.read_cut_span(cut[at:at + 2 * subtitle_formats.CUT_OFFSET_BYTES])
        body = cut[head.bodies_at + start:head.bodies_at + end]
    return (subtitle_formats.segment_head(start_pts) + body).decode()


def test_version_playlist_and_segments_come_from_the_ladder():
    from videoflix.library import subtitle_hls

    cues = [Cue(1000, 2000, "one"), Cue(7000, 9000, "two")]
    playlist = subtitle_hls.render_hls_playlist(LADDER)
    names = [name for _, name in _playlist_segments(playlist)]
    assert names == ["seg_00000.vtt", "seg_00001.vtt", "seg_00002.vtt"]
    texts = [segment_from_cut(cues, name) for name in names]
    # The cut is exactly what rendering each segment from the cues gives.
    assert texts == [subtitle_formats.render_segment(cues, i, 4, 126000) for i in range(3)]
    assert all("X-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000" in text for text in texts)
    assert [[cue.text for cue in subtitle_formats.parse_vtt(text.encode())] for text in texts] == [["one"], ["two"], ["two"]]


@pytest.mark.parametrize("name", ["seg_00003.vtt", "seg_99999.vtt", "seg_0.vtt", "seg_00000.ts", "index.m3u8"])
def test_segments_outside_the_playlist_are_unavailable(name):
    from videoflix.library import subtitle_hls

    with pytest.raises(subtitle_hls.SubtitleUnavailable):
        subtitle_hls.segment_of(LADDER, name)


@pytest.mark.parametrize("broken", [{}, {"duration": "x", "segment_seconds": 4}, {"duration": 0, "segment_seconds": 4},
                                    {"duration": 5, "segment_seconds": 0}, {"duration": 5, "segment_seconds": 4,
                                                                            "start_pts": -1}])
def test_a_broken_ladder_makes_no_playlist(broken):
    from videoflix.library import subtitle_hls

    with pytest.raises(subtitle_hls.SubtitleUnavailable):
        subtitle_hls.render_hls_playlist(broken)
