"""VIDEOFLIX_MEDIA_TOKEN_FORM (issue 20 item 4; README "Edge delivery"): the setting, and
delivery/tokenforms.py (pure): the token a request carries in a query parameter or a
header, and the query form's token on every URI a playlist or thumbnails track names."""
from __future__ import annotations

import pytest

from videoflix.delivery import tokenforms
from videoflix.platform.config import Config, ConfigError, MediaTokenForm
from videoflix.platform.preflight import effective_configuration
from videoflix.transcode.playlist import SubtitleTrack, render_master

from test_playlist import ladder_json

TOKEN = "1a.0.t5k3xz.0.0123456789abcdef0123456789abcdef.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd"
QUERY = f"token={TOKEN}".encode()


# --- the setting ------------------------------------------------------------------------------

def test_the_path_form_is_the_default():
    assert Config().media_token_form == MediaTokenForm("path", "")
    assert Config.from_env({}).media_token_form == MediaTokenForm()
    assert Config.from_env({"VIDEOFLIX_MEDIA_TOKEN_FORM": " path "}).media_token_form == MediaTokenForm()


@pytest.mark.parametrize("value, form", [
    ("query:token", MediaTokenForm("query", "token")),
    ("query:__token__", MediaTokenForm("query", "__token__")),  # Akamai's default name
    ("query:bcdn_token", MediaTokenForm("query", "bcdn_token")),
    ("query:Key-Pair.Id~1", MediaTokenForm("query", "Key-Pair.Id~1")),
    ("header:X-Media-Token", MediaTokenForm("header", "X-Media-Token")),
    ("header:Token", MediaTokenForm("header", "Token")),
])
def test_query_and_header_forms_name_their_carrier(value, form):
    assert Config.from_env({"VIDEOFLIX_MEDIA_TOKEN_FORM": value}).media_token_form == form
    assert str(form) == value


@pytest.mark.parametrize("value", [
    "query", "query:", "header", "header:", "cookie:token", "Path", "path:x", "QUERY:token",
    "query:to ken", "query:to&ken", "query:to=ken", "query:tok%65n", "query:t/k", "query:" + "t" * 65,
    "query:tök", "header:X_Media_Token", "header:-token", "header:token-", "header:X Token",
    "header:" + "x" * 65, "header:Tök", "header:X-Token:", "query:tok\nen",
    # headers that already mean something between a player, a CDN, nginx and Videoflix
    "header:Authorization", "header:cookie", "header:Host", "header:Range", "header:If-None-Match",
    "header:Content-Length", "header:X-Forwarded-For", "header:X-Request-ID", "header:Origin",
    "header:Sec-Fetch-Mode", "header:Access-Control-Request-Headers", "header:X-Accel-Redirect",
    "header:Connection", "header:Transfer-Encoding",
])
def test_a_malformed_form_is_refused_naming_the_variable(value):
    with pytest.raises(ConfigError, match="VIDEOFLIX_MEDIA_TOKEN_FORM"):
        Config.from_env({"VIDEOFLIX_MEDIA_TOKEN_FORM": value})


def test_check_prints_the_form():
    rows = dict(effective_configuration(Config(media_token_form=MediaTokenForm("query", "token"))))
    assert rows["VIDEOFLIX_MEDIA_TOKEN_FORM"] == "query:token"
    assert dict(effective_configuration(Config()))["VIDEOFLIX_MEDIA_TOKEN_FORM"] == "path"


# --- reading a carried token ----------------------------------------------------------------

@pytest.mark.parametrize("query, found", [
    (f"token={TOKEN}", TOKEN),
    (f"a=1&token={TOKEN}&b=2", TOKEN),
    (f"xtoken=1&token={TOKEN}&tokenx=2&token", TOKEN),  # other names, and a bare "token", are not it
    ("token=", ""),
    ("", ""),
    ("Token=abc", ""),  # names are case-sensitive (as nginx's match)
    (f"token={TOKEN}&token={TOKEN}", ""),  # twice: none
    (f"token=a&token={TOKEN}", ""),
    ("token=%31a.0", "%31a.0"),  # raw: never decoded (and then refused by its shape)
])
def test_token_in_query_is_the_raw_value_of_its_one_parameter(query, found):
    assert tokenforms.token_in_query("token", query) == found


def test_token_in_headers_is_the_one_value():
    assert tokenforms.token_in_headers([TOKEN]) == TOKEN
    assert tokenforms.token_in_headers([]) == ""
    assert tokenforms.token_in_headers([TOKEN, TOKEN]) == ""


# --- the query form's token on every URI -----------------------------------------------------

def test_a_media_playlist_carries_the_token_on_every_segment():
    text = (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"
            b"#EXTINF:4.000000,\nseg_00000.ts\n#EXTINF:1.800000,\nseg_00001.ts\n#EXT-X-ENDLIST\n")
    rewritten = tokenforms.with_token_query("vplaylist", "index.m3u8", text, QUERY.decode())
    assert rewritten == text.replace(b"seg_00000.ts", b"seg_00000.ts?" + QUERY).replace(
        b"seg_00001.ts", b"seg_00001.ts?" + QUERY)
    assert rewritten.count(b"token=") == 2


def test_an_iframe_playlist_keeps_its_byte_ranges_and_tags():
    text = (b"#EXTM3U\r\n#EXT-X-I-FRAMES-ONLY\r\n#EXTINF:4.0,\r\n#EXT-X-BYTERANGE:4512@376\r\nseg_00000.ts\r\n"
            b"#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"700@0\"\r\n#EXT-X-ENDLIST\r\n")
    rewritten = tokenforms.playlist_with_query(text, QUERY)
    assert rewritten.splitlines() == [
        b"#EXTM3U", b"#EXT-X-I-FRAMES-ONLY", b"#EXTINF:4.0,", b"#EXT-X-BYTERANGE:4512@376",
        b"seg_00000.ts?" + QUERY, b'#EXT-X-MAP:URI="init.mp4?' + QUERY + b'",BYTERANGE="700@0"', b"#EXT-X-ENDLIST"]
    assert rewritten.count(b"\r\n") == text.count(b"\r\n")


def test_a_master_carries_the_token_on_variants_iframes_and_subtitles():
    prefix = "https://cdn.example.com/api/media/7/v3/"
    master = render_master(ladder_json(iframes=[{"name": "480p", "width": 854, "height": 480, "codecs": "avc1",
                                                 "peak_bps": 1, "average_bps": 1}]),
                           [SubtitleTrack("en", "English", default=True)], prefix=prefix).encode()
    rewritten = tokenforms.playlist_with_query(master, QUERY).decode()
    uris = [line for line in rewritten.splitlines() if line and not line.startswith("#")]
    import re
    uris += re.findall(r'URI="([^"]+)"', rewritten)
    assert len(uris) == 5
    assert all(uri.startswith(prefix) and uri.endswith(f"?token={TOKEN}") for uri in uris), uris
    # Nothing else of the master changes.
    assert tokenforms.playlist_with_query(master, QUERY).replace(b"?" + QUERY, b"") == master


def test_a_subtitle_playlist_carries_the_token_and_its_segments_do_not():
    text = b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.000,\nseg_00000.vtt\n#EXT-X-ENDLIST\n"
    assert tokenforms.rewrites("subtitles", "index.m3u8")
    assert tokenforms.with_token_query("subtitles", "index.m3u8", text, QUERY.decode()).count(b"token=") == 1
    assert not tokenforms.rewrites("subsegment", "seg_00000.vtt")  # cue text, never a URI


def test_the_thumbnails_track_carries_the_token_before_the_fragment():
    text = (b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nsprite_000.jpg#xywh=0,0,160,90\n\n"
            b"1\n00:00:02.000 --> 00:00:04.000\nsprite_000.jpg#xywh=160,0,160,90\n")
    rewritten = tokenforms.with_token_query("thumbs", "thumbnails.vtt", text, QUERY.decode())
    assert rewritten == text.replace(b".jpg#", b".jpg?" + QUERY + b"#")
    # The cue id and the timings are untouched; a sprite sheet is never rewritten.
    assert b"\n1\n00:00:02.000 --> 00:00:04.000\n" in rewritten
    assert not tokenforms.rewrites("thumbs", "sprite_000.jpg")
    assert not tokenforms.rewrites("vsegment", "seg_00000.ts")


def test_a_uri_that_has_a_query_gets_the_token_after_it():
    assert tokenforms.with_query(b"a.ts?x=1", QUERY) == b"a.ts?x=1&" + QUERY
    assert tokenforms.with_query(b"a.jpg#xywh=1,2,3,4", b"t=1") == b"a.jpg?t=1#xywh=1,2,3,4"


# --- the access log -------------------------------------------------------------------------

@pytest.mark.parametrize("uri, logged", [
    (f"/api/media/{TOKEN}/7/v1/480p/seg_00000.ts", "/api/media/***/7/v1/480p/seg_00000.ts"),
    (f"/api/media/{TOKEN}/7/v1/", "/api/media/***/7/v1/"),  # the check nginx asks
    (f"/api/media/x{TOKEN[:-3]}/7/v1/", "/api/media/***/7/v1/"),  # a near miss is most of a token
    (f"/api/media/7/v1/480p/index.m3u8?token={TOKEN}", "/api/media/7/v1/480p/index.m3u8?token=***"),
    (f"/api/media/7/v1/480p/seg_00000.ts?__token__={TOKEN}&x=1", "/api/media/7/v1/480p/seg_00000.ts?__token__=***&x=***"),
    (f"/api/media/7/v1/?{TOKEN}", "/api/media/7/v1/?***"),
    ("/api/media/7/v1/480p/seg_00000.ts", "/api/media/7/v1/480p/seg_00000.ts"),
    ("/api/video/7/480p/index.m3u8?x=1", "/api/video/7/480p/index.m3u8?x=1"),
])
def test_the_access_log_hides_media_tokens_in_the_path_and_the_query(uri, logged):
    from videoflix.platform.log import scrub_uri

    assert scrub_uri(uri) == logged


def test_media_token_expiry_is_a_step_of_its_life_so_a_master_is_stable():
    from videoflix.delivery.playback import media_token_expiry

    # 4 h tokens: a minute's step; every master of one session within it is the same bytes.
    assert {media_token_expiry(now, 14_400) for now in range(1_000_021, 1_000_081)} == {1_014_480}
    assert media_token_expiry(1_000_020, 14_400) == 1_014_420  # (on a step: as it is)
    # Short lives keep their bound: a tenth of it (10 s tokens: to the second).
    assert media_token_expiry(1_000_001, 10) == 1_000_011
    assert 1_000_060 <= media_token_expiry(1_000_001, 60) <= 1_000_066
