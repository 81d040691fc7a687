"""Subtitles over HLS (API.md §6, README, Architecture: Transcode): the master's SUBTITLES group and a
version's WebVTT playlist and segments, made per request, with a real transcode."""
from __future__ import annotations

import json
import re

import pytest
from test_subtitles_api import post_subtitles

from videoflix.library import subtitle_formats
from videoflix.platform import media

from helpers import login, untokened, upload, wait_for_status
from media import ffprobe_json

SRT = (b"1\n00:00:00,500 --> 00:00:01,500\nfirst\n\n"
       b"2\n00:00:03,000 --> 00:00:05,000\nacross the boundary\n\n"
       b"3\n00:00:05,200 --> 00:00:05,900\nlast\n")


def media_lines(master: str) -> list[str]:
    return [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA:")]


def segment_entries(playlist: str) -> list[tuple[float, str]]:
    lines = playlist.splitlines()
    return [(float(lines[i][len("#EXTINF:"):].rstrip(",")), lines[i + 1])
            for i in range(len(lines)) if lines[i].startswith("#EXTINF:")]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=300)
async def test_master_lists_the_group_and_the_segmented_playlist_covers_the_video(
        client, new_client, make_user, runner, small_clip, config):
    await make_user()
    response = await upload(client, small_clip, visibility="private")
    assert response.status == 201, response.body
    video_id = response.json()["id"]
    assert (await post_subtitles(client, video_id, "en.srt", SRT, language="en", label="English")).status == 201
    assert (await post_subtitles(client, video_id, "de.vtt", b"WEBVTT\n\n00:01.000 --> 00:02.000\nHallo\n",
                                 language="de")).status == 201
    detail = await wait_for_status(client, video_id, "ready")

    master = untokened((await client.get(f"/api/video/{video_id}/master.m3u8")).body.decode())
    version = re.search(r"^(v[0-9]+)/", master, re.M).group(1)
    assert media_lines(master) == [
        f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=NO,AUTOSELECT=YES,'
        f'URI="{version}/subtitles/en/index.m3u8"',
        f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="German",LANGUAGE="de",DEFAULT=NO,AUTOSELECT=YES,'
        f'URI="{version}/subtitles/de/index.m3u8"',
    ]
    stream_infs = [line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF:")]
    assert stream_infs and all(line.endswith(',SUBTITLES="subs"') for line in stream_infs)

    base = f"/api/video/{video_id}/{version}/subtitles/en/"
    answer = await client.get(base + "index.m3u8")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    playlist = answer.body.decode()
    assert "#EXT-X-ENDLIST" in playlist and "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    entries = segment_entries(playlist)
    assert sum(length for length, _ in entries) == pytest.approx(detail["duration"], abs=0.002)
    ladder = json.loads(media.ladder_path(config.media_dir, video_id, int(version[1:])).read_text())
    assert int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", playlist).group(1)) == ladder["segment_seconds"]
    assert len(entries) == -(-round(ladder["duration"] * 1000) // (ladder["segment_seconds"] * 1000))

    # Each segment parses, maps cue time 0 to the first video frame, and holds the cues it overlaps.
    texts = []
    for _, name in entries:
        segment = await client.get(base + name)
        assert segment.status == 200, name
        assert segment.headers["Content-Type"].startswith("text/vtt")
        body = segment.body.decode()
        assert body.splitlines()[1] == f"X-TIMESTAMP-MAP=MPEGTS:{ladder['start_pts']},LOCAL:00:00:00.000"
        texts.append([cue.text for cue in subtitle_formats.parse_vtt(segment.body)])
    assert texts == [["first", "across the boundary"], ["across the boundary", "last"]]
    # start_pts is the PTS of the first video frame of the first segment.
    lowest = detail["resolutions"][-1]
    first_segment = media.version_dir(config.media_dir, video_id, int(version[1:])) / lowest / "seg_00000.ts"
    frames = ffprobe_json(first_segment, "-select_streams", "v:0", "-show_entries", "packet=pts",
                          "-read_intervals", "%+#1")
    assert int(frames["packets"][0]["pts"]) == ladder["start_pts"]

    # Revalidation: the ETag answers 304 without a body.
    again = await client.get(base + entries[0][1])
    etag = again.headers["Etag"]
    not_modified = await client.get(base + entries[0][1], headers={"If-None-Match": etag})
    assert not_modified.status == 304 and not not_modified.body

    # The same under the signed stream URL, without cookies.
    stream = (await client.get(f"/api/video/{video_id}/stream/")).json()["url"]
    prefix = stream.rsplit("/", 1)[0]
    cookieless = new_client()
    signed = await cookieless.http.fetch(f"{prefix}/{version}/subtitles/en/{entries[1][1]}", raise_error=False)
    assert signed.code == 200 and b"last" in signed.body
    signed_master = await cookieless.http.fetch(stream, raise_error=False)
    assert f"{version}/subtitles/en/index.m3u8".encode() in signed_master.body

    # Who may not watch the video gets 404; nobody 401; unknown names 404.
    other = new_client()
    await make_user("other@example.com", log_in=False)
    await login(other, "other@example.com")
    assert (await other.get(base + "index.m3u8")).status == 404
    assert (await other.get(base + entries[0][1])).status == 404
    anonymous = new_client()
    assert (await anonymous.get(base + "index.m3u8")).status == 401
    for path in (f"/api/video/{video_id}/{version}/subtitles/fr/index.m3u8",
                 f"/api/video/{video_id}/{version}/subtitles/en/seg_00099.vtt",
                 f"/api/video/{video_id}/{version}/subtitles/en/seg_1.vtt",
                 f"/api/video/{video_id}/{version}/subtitles/en/..%2Fde.vtt",
                 f"/api/video/{video_id}/{version}/subtitles/EN/index.m3u8",
                 f"/api/video/{video_id}/v99/subtitles/en/index.m3u8",
                 f"/api/video/{video_id}/v0/subtitles/en/index.m3u8",
                 f"/api/video/{video_id}/{version}/subtitles/..%2F..%2Fsources/index.m3u8"):
        assert (await client.get(path)).status == 404, path

    # Removing a language removes it from the master and its playlist.
    assert (await client.fetch("DELETE", f"/api/video/{video_id}/subtitles/de/")).status == 204
    master = untokened((await client.get(f"/api/video/{video_id}/master.m3u8")).body.decode())
    assert [line for line in media_lines(master) if 'LANGUAGE="de"' in line] == []
    assert (await client.get(f"/api/video/{video_id}/{version}/subtitles/de/index.m3u8")).status == 404


@pytest.mark.slow
@pytest.mark.gen_test(timeout=300)
async def test_master_without_subtitles_has_no_group(client, make_user, runner, small_clip):
    await make_user()
    video_id = (await upload(client, small_clip)).json()["id"]
    await wait_for_status(client, video_id, "ready")
    master = untokened((await client.get(f"/api/video/{video_id}/master.m3u8")).body.decode())
    assert media_lines(master) == [] and "SUBTITLES=" not in master
