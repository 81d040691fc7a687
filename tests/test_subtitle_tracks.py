"""Text subtitle tracks of the source: probe lists them, the child extracts them to
WebVTT (real ffmpeg), the loop side imports them at publish unless uploaded."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_subtitles_api import VTT, post_subtitles

from videoflix.library import subtitle_formats, subtitle_tracks
from videoflix.platform import media
from videoflix.transcode import subtracks
from videoflix.transcode.command import TranscodeSettings
from videoflix.transcode.job import transcode
from videoflix.transcode.probe import SubtitleStream, parse_probe, probe_file_sync
from videoflix.transcode.subtracks import ExtractedTrack

from helpers import upload, wait_for_status
from media import PARK, ffmpeg, probe_facts

SRT = "1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n00:00:04,000 --> 00:00:05,500\nWorld <i>again</i>\n"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Made with ffmpeg: an MP4 with two mov_text tracks (eng, fre) and an MKV with a
    SubRip (ger) and an ASS (spa, forced) track, plus a PGS-free bitmap-less control."""
    folder = tmp_path_factory.mktemp("subtitle-sources")
    srt = folder / "a.srt"
    srt.write_text(SRT, encoding="utf-8")
    video = folder / "v.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=44100", "-t", "6", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(video))
    mp4 = folder / "movtext.mp4"
    ffmpeg("-i", str(video), "-i", str(srt), "-i", str(srt), "-map", "0", "-map", "1", "-map", "2",
           "-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text", "-metadata:s:s:0", "language=eng",
           "-metadata:s:s:1", "language=fre", str(mp4))
    mkv = folder / "subrip.mkv"
    ffmpeg("-i", str(video), "-i", str(srt), "-i", str(srt), "-map", "0", "-map", "1", "-map", "2",
           "-c:v", "copy", "-c:a", "copy", "-c:s:0", "srt", "-c:s:1", "ass",
           "-metadata:s:s:0", "language=ger", "-metadata:s:s:0", "title=Deutsch",
           "-metadata:s:s:1", "language=spa", "-disposition:s:1", "forced", str(mkv))
    return {"mp4": mp4, "mkv": mkv}


# --- probe (pure) ------------------------------------------------------------------

def test_probe_lists_text_subtitle_streams_and_ignores_bitmap_ones():
    data = probe_facts(PARK)
    data["streams"] += [
        {"index": 2, "codec_type": "subtitle", "codec_name": "mov_text",
         "tags": {"language": "eng", "title": " English SDH "}, "disposition": {"default": 1}},
        {"index": 3, "codec_type": "subtitle", "codec_name": "hdmv_pgs_subtitle", "tags": {"language": "ger"}},
        {"index": 4, "codec_type": "subtitle", "codec_name": "dvd_subtitle", "tags": {"language": "fre"}},
        {"index": 5, "codec_type": "subtitle", "codec_name": "ass", "disposition": {"forced": 1}},
        {"index": 6, "codec_type": "subtitle", "codec_name": "subrip", "tags": "garbage", "disposition": None},
    ]
    streams = parse_probe(data).subtitle_streams
    assert streams == (
        SubtitleStream(2, "mov_text", "eng", "English SDH", default=True),
        SubtitleStream(5, "ass", None, None, forced=True),
        SubtitleStream(6, "subrip", None, None),
    )


def test_full_tracks_come_before_forced_ones_and_the_default_first():
    streams = [SubtitleStream(1, "ass", "eng", None, forced=True), SubtitleStream(2, "subrip", "eng", None),
               SubtitleStream(3, "subrip", "eng", None, default=True)]
    assert [s.index for s in subtracks.order_streams(streams)] == [3, 2, 1]
    many = [SubtitleStream(i, "subrip", None, None) for i in range(40)]
    assert len(subtracks.order_streams(many)) == subtracks.MAX_TRACKS


def test_extract_command_forces_the_probed_demuxer_and_writes_into_tracks(sources):
    probe = probe_file_sync(sources["mkv"])
    command = subtracks.build_extract_command(sources["mkv"], "/out", probe, probe.subtitle_streams)
    assert command[command.index("-f") + 1] == "matroska"
    assert command[command.index("-format_whitelist") + 1] == "matroska"
    assert command[command.index("-protocol_whitelist") + 1] == "file"
    assert "file:" + str(sources["mkv"]) in command
    assert command[-1] == "/out/tracks/3.vtt" and "/out/tracks/2.vtt" in command


# --- the child (real ffmpeg) -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind, expected", [
    ("mp4", [("eng", "en"), ("fre", "fr")]),
    ("mkv", [("ger", "de"), ("spa", "es")]),  # the forced ASS track last
])
def test_transcode_extracts_each_text_track_to_webvtt(sources, tmp_path, kind, expected):
    result = transcode(sources[kind], tmp_path, TranscodeSettings(preset="ultrafast"))
    tracks = result.subtitle_tracks
    assert [track.language for track in tracks] == [raw for raw, _ in expected]
    assert [subtitle_formats.container_language(track.language) for track in tracks] == [bcp for _, bcp in expected]
    for track in tracks:
        cues = subtitle_formats.parse_vtt((tmp_path / track.file).read_bytes())
        # ffmpeg shifts every output by the file's start time (an MKV whose AAC
        # priming starts at -23 ms moves the cues by +23 ms, as it moves the video).
        starts_ends = [(cue.start_ms, cue.end_ms) for cue in cues]
        assert len(starts_ends) == 2
        for (start, end), (want_start, want_end) in zip(starts_ends, [(1000, 2000), (4000, 5500)]):
            assert abs(start - want_start) <= 50 and end - start == want_end - want_start
        assert cues[0].text == "Hello" and "World" in cues[1].text
    if kind == "mkv":
        assert tracks[0].title == "Deutsch"


@pytest.mark.slow
def test_a_source_without_subtitles_extracts_nothing(tmp_path, small_clip):
    result = transcode(small_clip, tmp_path, TranscodeSettings(preset="ultrafast"))
    assert result.subtitle_tracks == []
    assert not (tmp_path / media.TRACKS_DIR_NAME).exists()


# --- import at publish (loop side) ----------------------------------------------------

@pytest.mark.parametrize("storage_backend", ["local", "s3", "s3-remote"])
@pytest.mark.gen_test(timeout=60)
async def test_import_skips_broken_tracks_and_keeps_uploads(tmp_path, config, services, make_user,
                                                            storage_backend):
    """The runner's import, on the local store and on a bucket: from the run's folder on
    this host, or ("s3-remote") from the version in the bucket when this host has none."""
    from helpers import make_ready_video
    from store_helpers import put_tree, read_stored

    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    version = tmp_path / "v1"
    (version / "tracks").mkdir(parents=True)
    (version / "tracks" / "1.vtt").write_bytes(b"WEBVTT\n\n00:01.000 --> 00:02.000\nfrom the source\n")
    (version / "tracks" / "2.vtt").write_bytes(b"not webvtt at all")
    (version / "tracks" / "3.vtt").write_bytes(b"WEBVTT\n\n00:01.000 --> 00:02.000\nsecond english\n")
    (version / "tracks" / "4.vtt").write_bytes(b"WEBVTT\n\n00:01.000 --> 00:02.000\nsin idioma\n")
    await subtitle_tracks.add_from_upload(config, services, video_id, user["id"], False,
                                         {"language": "de", "label": "Deutsch"}, "de.vtt", VTT)
    tracks = [ExtractedTrack("tracks/1.vtt", "eng", "English", 1),
              ExtractedTrack("tracks/2.vtt", "fre", None, 2),
              ExtractedTrack("tracks/3.vtt", "eng", "Second", 3),
              ExtractedTrack("tracks/4.vtt", None, 'Bad "quoted" title', 4),
              ExtractedTrack("tracks/5.vtt", "spa", None, 5),  # never written
              ExtractedTrack("tracks/1.vtt", "ger", "Deutsch", 1),  # uploaded one wins
              ExtractedTrack("../../../etc/passwd", "ita", None, 6)]
    if storage_backend == "s3-remote":
        stored_version = media.version_dir(config.media_dir, video_id, 1)
        await put_tree(services, version, stored_version)
        version = stored_version  # (no such folder on this host)
    imported = await subtitle_tracks.import_tracks(config, services, video_id, version, tracks)
    assert imported == ["en", "und"]
    items = {item["language"]: item["label"] for item in await subtitle_tracks.list_items(config, services, video_id)}
    assert items == {"de": "Deutsch", "en": "English", "und": "Unknown language"}
    assert b"from the source" in await read_stored(services, media.subtitle_path(config.media_dir, video_id, "en"))
    assert b"Bonjour" in await read_stored(services, media.subtitle_path(config.media_dir, video_id, "de"))


@pytest.mark.slow
@pytest.mark.gen_test(timeout=240)
async def test_uploaded_source_tracks_become_the_videos_subtitles(client, make_user, runner, sources, config):
    await make_user()
    response = await upload(client, sources["mp4"], filename="movtext.mp4")
    assert response.status == 201, response.body
    video_id = response.json()["id"]
    # An upload made while the video is queued survives the transcode and beats the track.
    assert (await post_subtitles(client, video_id, "fr.vtt", VTT, language="fr", label="Mes sous-titres")).status == 201
    detail = await wait_for_status(client, video_id, "ready")
    assert {(s["language"], s["label"]) for s in detail["subtitles"]} == {("en", "English"),
                                                                         ("fr", "Mes sous-titres")}
    english = await client.get(f"/api/video/{video_id}/subtitles/en/")
    assert [cue.text for cue in subtitle_formats.parse_vtt(english.body)] == ["Hello", "World <i>again</i>"]
    french = await client.get(f"/api/video/{video_id}/subtitles/fr/")
    assert [cue.text for cue in subtitle_formats.parse_vtt(french.body)] == ["Bonjour"]
