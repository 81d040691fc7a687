"""Trick-play over HTTP (issue 12 item 3, API.md §6): the detail's thumbnails_vtt, the
master's I-frame streams, and the track, sheets and I-frame playlists served with the
segments' access rules, on the files of a real transcode of a real clip (made once per
session) published as the runner publishes them: into MEDIA_DIR, and into a real SeaweedFS
bucket (STORAGE_BACKENDS).
"""
from __future__ import annotations

import dataclasses
import gzip
import re
from urllib.parse import urljoin

import pytest
from test_hls import get as raw_get
from test_trickplay import parse_vtt

from videoflix.platform import media
from videoflix.transcode import ladderfile

from helpers import login, make_ready_video, publish_ladder, untokened, upload
from store_helpers import STORAGE_BACKENDS

IMMUTABLE = "private, max-age=31536000, immutable"


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


@pytest.fixture
def config(config):
    # ultrafast: these tests are about what is served, not how it looks (test_trickplay.py).
    return dataclasses.replace(config, x264_preset="ultrafast")


def iframe_streams(master: str) -> list[dict[str, str]]:
    streams = []
    for line in master.splitlines():
        if line.startswith("#EXT-X-I-FRAME-STREAM-INF:"):
            attributes = re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.partition(":")[2])
            streams.append({key: value.strip('"') for key, value in attributes})
    return streams


@pytest.fixture
def transcoded(io_loop, client, new_client, make_user, config, services, small_ladder):
    """A private video of owner@example.com (on `client`), transcoded: (id, stranger's client).
    The small 640x360 clip: one rendition (480p); its ladder is the session's (conftest)."""
    async def make() -> tuple[int, object]:
        owner = await make_user("owner@example.com")
        video_id = await publish_ladder(services, config, owner["id"], *small_ladder, title="Small",
                                        visibility="private")
        stranger = new_client()
        await make_user("stranger@example.com", log_in=False)
        await login(stranger, "stranger@example.com")
        return video_id, stranger
    return io_loop.run_sync(make, timeout=300)


@pytest.mark.gen_test(timeout=120)
async def test_detail_links_the_live_versions_thumbnails_track_and_its_sheets_are_served(
        client, config, transcoded):
    video_id, _ = transcoded
    detail = (await client.get(f"/api/video/{video_id}/")).json()
    track_url = f"{config.public_url}/api/video/{video_id}/v1/thumbs/thumbnails.vtt"
    assert detail["thumbnails_vtt"] == track_url

    response = await client.get(track_url[len(config.public_url):])
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/vtt; charset=utf-8"
    assert response.headers["Cache-Control"] == IMMUTABLE
    cues = parse_vtt(response.body.decode())
    assert cues[0][0] == 0 and cues[-1][1] == pytest.approx(detail["duration"], abs=0.2)
    for sheet in sorted({cue[2] for cue in cues}):
        image = await client.get(urljoin(track_url, sheet)[len(config.public_url):])
        assert image.status == 200, sheet
        assert image.headers["Content-Type"] == "image/jpeg"
        assert image.headers["Cache-Control"] == IMMUTABLE
        assert image.body[:3] == b"\xff\xd8\xff"  # a JPEG

    zipped = await raw_get(client, track_url[len(config.public_url):], gzip_ok=True)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.body) == response.body


@pytest.mark.gen_test(timeout=120)
async def test_master_lists_an_iframe_stream_per_rendition_and_each_playlist_is_served(
        client, config, transcoded, small_ladder):
    video_id, _ = transcoded
    master = untokened((await client.get(f"/api/video/{video_id}/master.m3u8")).body.decode())
    streams = iframe_streams(master)
    assert [s["URI"] for s in streams] == ["v1/480p/iframes.m3u8"]  # one per rendition
    ladder = ladderfile.read_ladder(small_ladder[0] / media.LADDER_NAME)  # what was published
    measured = {item["name"]: item for item in ladder["iframes"]}
    for stream in streams:
        rung = stream["URI"].split("/")[1]
        assert int(stream["BANDWIDTH"]) == measured[rung]["peak_bps"] > 0
        assert stream["RESOLUTION"] == "%dx%d" % (measured[rung]["width"], measured[rung]["height"])
        # The rendition's video codec, without its audio.
        variant = re.search(r'#EXT-X-STREAM-INF:[^\n]*CODECS="([^"]*)"[^\n]*\nv1/%s/index.m3u8' % rung, master)
        assert variant and variant.group(1) == stream["CODECS"] + ",mp4a.40.2"
        playlist = await client.get(f"/api/video/{video_id}/{stream['URI']}")
        assert playlist.status == 200
        assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert playlist.headers["Cache-Control"] == IMMUTABLE
        text = playlist.body.decode()
        assert "#EXT-X-I-FRAMES-ONLY" in text and "#EXT-X-VERSION:4" in text
        # The byte ranges point into the segments served beside it.
        length, offset = re.search(r"#EXT-X-BYTERANGE:(\d+)@(\d+)\n(seg_\d{5}\.ts)", text).groups()[:2]
        segment = await client.get(f"/api/video/{video_id}/v1/{rung}/seg_00000.ts",
                                   headers={"Range": "bytes=%d-%d" % (int(offset), int(offset) + int(length) - 1)})
        assert segment.status == 206 and segment.body[0] == 0x47 and len(segment.body) == int(length)


@pytest.mark.gen_test(timeout=120)
async def test_trickplay_files_follow_the_segments_access_rules(client, new_client, config, transcoded):
    video_id, stranger = transcoded
    paths = [f"/api/video/{video_id}/v1/thumbs/thumbnails.vtt", f"/api/video/{video_id}/v1/thumbs/sprite_000.jpg",
             f"/api/video/{video_id}/v1/480p/iframes.m3u8"]
    for path in paths:
        assert (await client.get(path)).status == 200, path
        anonymous = await new_client().get(path)
        assert anonymous.status == 401, path
        other = await stranger.get(path)
        assert (other.status, other.json()) == (404, {"detail": "Not found."}), path
    # The signed stream URL carries them too, without cookies; a forged token does not.
    stream = (await client.get(f"/api/video/{video_id}/stream/")).json()["url"]
    prefix = stream[len(config.public_url):].rsplit("/", 1)[0]
    for tail in ("v1/thumbs/thumbnails.vtt", "v1/thumbs/sprite_000.jpg", "v1/480p/iframes.m3u8"):
        assert (await new_client().get(f"{prefix}/{tail}")).status == 200, tail
        forged = prefix.replace("/api/stream/", "/api/stream/x")
        assert (await new_client().get(f"{forged}/{tail}")).status == 401, tail


BAD_TAILS = [
    "v1/thumbs/sprite_1.jpg", "v1/thumbs/sprite_0000.jpg", "v1/thumbs/sprite_999.jpg",  # 999: not written
    "v1/thumbs/sprite_000.jpg.tmp", "v1/thumbs/thumbnails.vtt.tmp", "v1/thumbs/THUMBNAILS.vtt",
    "v1/thumbs/ladder.json", "v1/thumbs/..%2Fladder.json", "v1/thumbs/%2e%2e", "v1/thumbs/sprite_000.jpg%00",
    "v1/thumbs/sprite_%D9%A0%D9%A0%D9%A0.jpg", "v1/thumbs/sprite_000.jpg%0A", "v1/2160p/iframes.m3u8",
    "v1/thumbs/iframes.m3u8", "v1/..%2F1080p/iframes.m3u8", "v0/thumbs/thumbnails.vtt",
    "v01/thumbs/thumbnails.vtt", "v2/thumbs/thumbnails.vtt", "v2/480p/iframes.m3u8", "v1/poster.jpg",
    "v1/thumbs/thumbnails.vtt/", "v1/thumbs/%2Fetc%2Fpasswd",
]


@pytest.mark.gen_test(timeout=120)
async def test_bad_or_unknown_trickplay_names_are_404(client, transcoded):
    video_id, _ = transcoded
    for tail in BAD_TAILS:
        response = await client.get(f"/api/video/{video_id}/{tail}")
        assert response.status == 404, (tail, response.status)
        assert response.json() == {"detail": "Not found."}, tail


@pytest.mark.gen_test
async def test_thumbnails_vtt_is_null_without_a_versioned_track(client, make_user, services, small_clip):
    owner = await make_user("owner@example.com")
    trackless = await make_ready_video(services, owner["id"])  # live, no ladder.json: no track
    assert (await client.get(f"/api/video/{trackless}/")).json()["thumbnails_vtt"] is None
    queued = await upload(client, small_clip, title="Waiting")  # no runner here: it stays queued
    assert queued.status == 201 and queued.json()["thumbnails_vtt"] is None
    assert (await client.get(f"/api/video/{queued.json()['id']}/")).json()["thumbnails_vtt"] is None
