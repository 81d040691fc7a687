"""Serving from the bucket (issue 21 item 5): what only object storage has.

Against a real SeaweedFS (the session's, tests/conftest.py); the suites about what is
served (test_hls.py, test_trickplay_http.py, test_private_images.py) run against both
stores. Here: the hot cache (a miss streamed and copied, the copy sent like a local file
with the store's validators, by the segment lane too; bounded in bytes, least recently
used out), a version being built watched from the bucket, and a store that does not
answer (a 503 JSON error in bounded time, never a 500 or a hang).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest
from test_hls import get

from videoflix.delivery import storefiles
from videoflix.delivery.answer import ObjectFacts
from videoflix.delivery.hotcache import HotCache
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.platform.embedded import free_port
from videoflix.tables import videos
from videoflix.web import segment_lane

from helpers import publish_ladder

IMMUTABLE = "private, max-age=31536000, immutable"


@pytest.fixture
def storage_backend():
    return "s3"


@pytest.mark.gen_test(timeout=120)
async def test_a_segment_miss_is_streamed_from_the_bucket_then_sent_from_the_hot_copy(
        client, make_user, services, config, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder)
    segment = small_ladder[0] / "480p" / "seg_00000.ts"
    expected = segment.read_bytes()
    path = f"/api/video/{video_id}/v1/480p/seg_00000.ts"
    stored = await services.storage.head(media.version_dir(config.media_dir, video_id, 1) / "480p" / segment.name)
    assert not (Path(config.media_dir) / str(video_id)).exists()  # nothing of it on this host's scratch

    first = await get(client, path)
    assert first.code == 200 and first.body == expected
    assert first.headers["Etag"] == stored.etag  # the store's validators, not a local file's
    assert first.headers["Cache-Control"] == IMMUTABLE
    hot = storefiles.hot_cache(config, services)
    copy = hot.root / str(video_id) / "v1" / "480p" / segment.name
    assert len(hot) == 1 and hot.bytes == len(expected) and copy.read_bytes() == expected

    lane_before = segment_lane.answered
    for _ in range(3):  # the handler opens the copy, then the lane sends it (sendfile)
        again = await get(client, path)
        assert again.code == 200 and again.body == expected
        assert {k: again.headers[k] for k in ("Etag", "Last-Modified", "Cache-Control", "Content-Length")} == {
            k: first.headers[k] for k in ("Etag", "Last-Modified", "Cache-Control", "Content-Length")}
    assert hot.hits >= 1 and segment_lane.answered > lane_before
    ranged = await get(client, path, headers={"Range": "bytes=188-375"})
    assert ranged.code == 206 and ranged.body == expected[188:376]
    assert ranged.headers["Content-Range"] == f"bytes 188-375/{len(expected)}"
    assert (await get(client, path, headers={"If-None-Match": stored.etag})).code == 304
    unsatisfiable = await get(client, path, headers={"Range": f"bytes={len(expected)}-"})
    assert unsatisfiable.code == 416 and unsatisfiable.headers["Content-Range"] == f"bytes */{len(expected)}"


@pytest.mark.gen_test(timeout=120)
async def test_a_range_miss_streams_only_that_range_and_keeps_nothing(
        client, make_user, services, config, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder)
    expected = (small_ladder[0] / "480p" / "seg_00001.ts").read_bytes()
    response = await get(client, f"/api/video/{video_id}/v1/480p/seg_00001.ts", headers={"Range": "bytes=-1000"})
    assert response.code == 206 and response.body == expected[-1000:]
    assert len(storefiles.hot_cache(config, services)) == 0  # only whole objects are copied


@pytest.mark.gen_test(timeout=60)
async def test_the_hot_cache_is_bounded_in_bytes_least_recently_used_out(tmp_path, services):
    cache = HotCache(tmp_path / ".hot", 8 * 3000, services.file_executor)
    stale = tmp_path / ".hot" / "deadbeef"  # a crashed process's folder: no one holds its lock
    stale.mkdir(parents=True)
    (stale / "1").write_bytes(b"x")
    for name in ("a", "b", "c"):
        fill = await cache.start_fill(f"9/v1/480p/{name}.ts", ObjectFacts(3000, f'"{name}"', None))
        await fill.write(name.encode() * 3000)
        await fill.commit()
    assert not stale.exists()
    assert cache.lookup("9/v1/480p/a.ts") is not None  # a is now the most recently used
    fill = await cache.start_fill("9/v1/480p/d.ts", ObjectFacts(3000, '"d"', None))
    for _ in range(3):
        await fill.write(b"d" * 1000)
    await fill.commit()
    assert cache.bytes == 12000 and len(cache) == 4
    cache.limit_bytes = 7000  # now past the bound: the next copy pushes the least recently used out
    fill = await cache.start_fill("9/v1/480p/e.ts", ObjectFacts(500, '"e"', None))
    await fill.write(b"e" * 500)
    await fill.commit()
    assert [key.rsplit("/", 1)[1] for key in cache._index] == ["a.ts", "d.ts", "e.ts"]  # b, then c out
    assert cache.bytes == 6500
    left = sorted(p.name for p in (cache.root / "9" / "v1" / "480p").iterdir())
    assert left == ["a.ts", "d.ts", "e.ts"]
    short = await cache.start_fill("9/v1/480p/f.ts", ObjectFacts(500, '"f"', None))
    await short.write(b"f" * 10)
    await short.commit()  # fewer bytes than the object has: not kept
    assert cache.lookup("9/v1/480p/f.ts") is None
    assert sorted(p.name for p in (cache.root / "9" / "v1" / "480p").iterdir()) == ["a.ts", "d.ts", "e.ts"]
    cache.close()
    assert not cache.root.exists()


@pytest.mark.gen_test(timeout=120)
async def test_a_version_being_built_is_watched_from_the_bucket(client, make_user, services, config, small_ladder):
    """Its EVENT playlist and finished segments appear in the bucket one by one: served as
    they come, a segment not there yet waited for (then 503), nothing of it kept hot."""
    owner = await make_user("owner@example.com")
    async with cursor(services.pool) as cur:
        video_id = await videos.insert_video(cur, owner_id=owner["id"], title="Live", description="",
                                             category="Test", visibility="private", status="queued")
        version = (await videos.mark_processing(cur, video_id)).building_version
    folder = media.version_dir(config.media_dir, video_id, version) / "480p"
    source = small_ladder[0] / "480p"
    event = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:EVENT\n"
    await services.storage.put_file(folder / "seg_00000.ts", source / "seg_00000.ts")
    await services.storage.write_bytes(folder / "index.m3u8", (event + "#EXTINF:4.0,\nseg_00000.ts\n").encode())
    base = f"/api/video/{video_id}/v{version}/480p"

    # Its master: rendered from the provisional ladder the run puts beside (ladder.json comes last).
    assert (await get(client, f"/api/video/{video_id}/master.m3u8")).code == 404  # nothing of it yet
    provisional = {**json.loads((small_ladder[0] / media.LADDER_NAME).read_text()), "complete": False}
    await services.storage.write_bytes(media.building_ladder_path(config.media_dir, video_id, version),
                                       json.dumps(provisional).encode())
    master = await get(client, f"/api/video/{video_id}/master.m3u8")
    assert master.code == 200 and f"/{video_id}/v{version}/480p/index.m3u8".encode() in master.body

    playlist = await get(client, f"{base}/index.m3u8")
    assert playlist.code == 200 and b"seg_00000.ts" in playlist.body
    assert playlist.headers["Cache-Control"] == "private, no-cache"
    first = await get(client, f"{base}/seg_00000.ts")
    assert first.code == 200 and first.body == (source / "seg_00000.ts").read_bytes()

    # A segment asked for before it is in the bucket is answered once it is.
    waiting = asyncio.ensure_future(get(client, f"{base}/seg_00001.ts"))
    await services.storage.put_file(folder / "seg_00001.ts", source / "seg_00001.ts")
    arrived = await waiting
    assert arrived.code == 200 and arrived.body == (source / "seg_00001.ts").read_bytes()

    started = time.monotonic()
    missing = await get(client, f"{base}/seg_00009.ts")
    assert missing.code == 503 and missing.headers["Retry-After"] == "1"
    assert json.loads(missing.body) == {"detail": "Not transcoded yet: try again shortly."}
    assert time.monotonic() - started < 10
    assert (await get(client, f"/api/video/{video_id}/v{version}/720p/seg_00000.ts")).code == 404  # no such rendition
    assert len(storefiles.hot_cache(config, services)) == 0  # nothing of a version being built is kept


@pytest.mark.gen_test(timeout=120)
async def test_a_store_that_does_not_answer_is_a_503_json_error(client, make_user, services, config, app):
    owner = await make_user("owner@example.com")
    async with cursor(services.pool) as cur:
        video_id = await videos.insert_video(cur, owner_id=owner["id"], title="Gone", description="",
                                             category="Test", visibility="public", status="queued")
        version = (await videos.mark_processing(cur, video_id)).building_version
        assert await videos.mark_ready(cur, video_id, version=version, duration=6.0, width=640, height=360,
                                       fps=25.0, has_audio=True, resolutions=["480p"])
    from videoflix.platform.s3store import S3Storage, s3_settings
    dead = dataclasses.replace(config, s3_endpoint=f"http://127.0.0.1:{free_port()}")
    healthy = services.storage
    services.storage = S3Storage(s3_settings(dead), config.media_dir, services.file_executor)
    try:
        for tail in ("v1/480p/seg_00000.ts", "v1/480p/index.m3u8", "master.m3u8", "480p/seg_00000.ts"):
            started = time.monotonic()
            response = await get(client, f"/api/video/{video_id}/{tail}")
            assert response.code == 503, (tail, response.code, response.body[:200])
            assert response.headers["Content-Type"].startswith("application/json")
            assert json.loads(response.body) == {"detail": "Media storage is unavailable: try again shortly."}
            assert response.headers["Retry-After"] == "5"
            assert time.monotonic() - started < storefiles.STORE_WAIT_SECONDS + 5, tail
        download = await get(client, f"/api/video/{video_id}/480p/download.mp4")
        assert download.code == 503 and json.loads(download.body)["detail"].startswith("Media storage")
        image = await get(client, f"/media/poster/{video_id}.jpg")
        assert image.code == 503 and json.loads(image.body)["detail"].startswith("Media storage")
        detail = await client.get(f"/api/video/{video_id}/")  # the detail still answers
        assert detail.status == 200 and detail.json()["thumbnails_vtt"] is None
    finally:
        await services.storage.close()
        services.storage = healthy
