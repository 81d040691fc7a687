"""The segment lane (web/segment_lane.py): plain segment GETs answered without a
RequestHandler once every decision is cached, everything else left to the handlers.

- Parity: the lane's answer to a request equals the handlers' answer to the same
  request (every header but Date, and the body), for the cookie and the bearer
  token, with and without an allowed Origin, with a client's X-Request-ID, for
  single, suffix, clipped, whole, multiple, reversed and foreign-unit ranges, for an
  unversioned (API.md §3) and a versioned path, and behind nginx (X-Accel-Redirect) in
  test_deploy.py's real-nginx tests, which go through the lane too.
- What the lane must leave to the handlers (the lane's counter does not move,
  and the answer is the handlers' right one): 416, If-Range, revalidation, HEAD, no or a
  bad token, another user's private video, a logged-out session, a deleted video,
  a name that is not a segment, a playlist, and a file not yet open.
- Its access-log line and metrics are a request's like any other.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from videoflix.delivery import playback
from videoflix.platform import media, metrics
from videoflix.web import segment_lane

from helpers import login, make_ready_version

SEGMENT_BYTES = 300_001


@pytest.fixture
def videos(io_loop, make_user, client, services, config):
    """Two private videos of the logged-in owner, each with a 720p segment and playlist
    in its live version, one asked for by the unversioned path, one by the versioned;
    returns {"unversioned"|"versioned": (id, url path, bytes)}."""
    async def make():
        user = await make_user()
        made = {}
        for name in ("unversioned", "versioned"):
            video_id, number = await make_ready_version(services, user["id"])
            prefix = f"v{number}/" if name == "versioned" else ""
            folder = media.version_dir(config.media_dir, video_id, number) / "720p"
            folder.mkdir(parents=True)
            data = os.urandom(SEGMENT_BYTES)
            (folder / "seg_00000.ts").write_bytes(data)
            (folder / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
            made[name] = (video_id, f"/api/video/{video_id}/{prefix}720p/seg_00000.ts", data)
        return made
    return io_loop.run_sync(make)


def comparable(response) -> list[tuple[str, str]]:
    return sorted((name, value) for name, value in response.headers.get_all() if name != "Date")


async def handler_then_lane(app, client, path: str, **headers: str):
    """The same request answered by the handlers (the open file and the video row
    forgotten first), then by the lane; asserts which one answered each."""
    app.settings["open_files"].close()
    playback.forget_video(app.settings["services"], int(path.split("/")[3]))
    before = segment_lane.answered
    by_handler = await client.get(path, headers=headers)
    assert segment_lane.answered == before
    by_lane = await client.get(path, headers=headers)
    assert segment_lane.answered == before + 1, "the lane did not take a warm plain GET"
    return by_handler, by_lane


@pytest.mark.parametrize("layout", ["unversioned", "versioned"])
@pytest.mark.gen_test(timeout=60)
async def test_the_lane_answers_as_the_handlers_do(videos, app, client, config, layout):
    _, path, data = videos[layout]
    origin = "http://localhost:5500"
    assert origin in config.cors_origins
    token = client.cookies["access_token"]
    variants = [{}, {"Origin": origin}, {"Origin": "https://evil.example"}, {"X-Request-ID": "player-7.a"},
                {"Authorization": f"Bearer {token}"}, {"Range": "bytes=10-19"}, {"Range": "bytes=-100"},
                {"Range": f"bytes={SEGMENT_BYTES - 5}-{SEGMENT_BYTES + 50}"}, {"Range": "bytes=0-"},
                {"Range": "bytes=0-9,20-29"}, {"Range": "bytes=9-2"}, {"Range": "lines=1-2"}]
    for headers in variants:
        by_handler, by_lane = await handler_then_lane(app, client, path, **headers)
        assert by_handler.status == by_lane.status
        assert by_handler.body == by_lane.body
        assert by_lane.status == (206 if headers.get("Range", "bytes=0-") in (
            "bytes=10-19", "bytes=-100", f"bytes={SEGMENT_BYTES - 5}-{SEGMENT_BYTES + 50}") else 200), headers
        if by_lane.status == 200:
            assert by_lane.body == data
        if "X-Request-ID" not in headers:  # made per request: only their presence compares
            assert by_handler.headers["X-Request-ID"] != by_lane.headers["X-Request-ID"]
            by_handler.headers["X-Request-ID"] = by_lane.headers["X-Request-ID"] = "made"
        assert comparable(by_lane) == comparable(by_handler), headers
    cache_control = by_lane.headers["Cache-Control"]
    assert cache_control == ("private, max-age=60" if layout == "unversioned"
                             else "private, max-age=31536000, immutable")


@pytest.mark.gen_test(timeout=60)
async def test_behind_nginx_the_lane_answers_as_the_handlers_do(videos, app, client, config):
    """VIDEOFLIX_ACCEL_REDIRECT: an empty answer naming the file for nginx (which
    answers ranges and revalidation itself: test_deploy.py runs the real one)."""
    app.settings["config"] = dataclasses.replace(config, accel_redirect="/internal-media/")
    for layout in ("unversioned", "versioned"):
        video_id, path, _ = videos[layout]
        for headers in ({}, {"Range": "bytes=0-99"}, {"If-None-Match": '"x"'}, {"Origin": "http://localhost:5500"}):
            by_handler, by_lane = await handler_then_lane(app, client, path, **headers)
            assert by_handler.status == by_lane.status == 200 and by_lane.body == b""
            assert by_lane.headers["X-Accel-Redirect"].startswith(f"/internal-media/{video_id}/")
            assert by_lane.headers["X-Accel-Redirect"].endswith("/720p/seg_00000.ts")
            by_handler.headers["X-Request-ID"] = by_lane.headers["X-Request-ID"] = "made"
            assert comparable(by_lane) == comparable(by_handler), headers


@pytest.mark.gen_test(timeout=60)
async def test_what_the_lane_leaves_to_the_handlers(videos, app, client, new_client, make_user):
    video_id, path, data = videos["unversioned"]
    assert (await client.get(path)).status == 200  # the file is open now, every cache warm
    stranger = new_client()
    forged = new_client()
    forged.cookies["access_token"] = client.cookies["access_token"][:-4] + "AAAA"
    etag = (await client.get(path)).headers["Etag"]
    before = segment_lane.answered
    expected = [
        (client, "GET", path, {"Range": f"bytes={SEGMENT_BYTES}-"}, 416, None),
        (client, "GET", path, {"Range": "bytes=10-19", "If-Range": etag}, 206, data[10:20]),
        (client, "GET", path, {"Range": "bytes=10-19", "If-Range": '"stale"'}, 200, data),
        (client, "GET", path, {"If-None-Match": etag}, 304, b""),
        (client, "GET", path, {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 304, b""),
        (client, "HEAD", path, {}, 200, b""),
        (stranger, "GET", path, {}, 401, None),
        (forged, "GET", path, {}, 401, None),
        (client, "GET", path, {"Authorization": "Basic dXNlcjpwYXNz"}, 401, None),
        (client, "GET", path.replace("seg_00000.ts", "seg_00009.ts"), {}, 404, None),
        (client, "GET", path.replace("seg_00000.ts", "..%2Fseg_00000.ts"), {}, 404, None),
        (client, "GET", path.replace("720p/seg_00000.ts", "720p/index.m3u8"), {}, 200, None),
    ]
    for browser, method, url, headers, status, body in expected:
        response = await browser.fetch(method, url, headers=headers)
        assert response.status == status, (method, url, headers, response.status)
        if body is not None:
            assert response.body == body
        if status >= 400:
            assert response.body.startswith(b"{")
    other, _, _ = videos["versioned"]
    intruder = new_client()
    await make_user("other@example.com", log_in=False)
    await login(intruder, "other@example.com")
    assert (await intruder.get(path)).status == 404  # another user's private video
    assert segment_lane.answered == before
    # A logged-out session, and a deleted video: refused at once, not from the caches.
    assert (await client.get(path)).status == 200 and segment_lane.answered == before + 1
    token = client.cookies["access_token"]
    assert (await client.fetch("DELETE", f"/api/video/{other}/")).status == 204
    assert (await client.get(f"/api/video/{other}/v1/720p/seg_00000.ts")).status == 404
    assert (await client.post("/api/logout/")).status == 200
    replay = new_client()
    replay.cookies["access_token"] = token
    assert (await replay.get(path)).status == 401
    assert segment_lane.answered == before + 1


@pytest.mark.gen_test(timeout=60)
async def test_a_lane_answer_is_logged_and_counted(videos, app, client, services, caplog):
    _, path, data = videos["versioned"]
    await client.get(path)
    sent_before = bytes_sent(services)
    caplog.set_level(logging.DEBUG, logger="videoflix.access")
    before = segment_lane.answered
    response = await client.get(path, headers={"X-Request-ID": "lane-log-1"})
    assert segment_lane.answered == before + 1 and response.headers["X-Request-ID"] == "lane-log-1"
    lines = [r for r in caplog.records
             if r.name == "videoflix.access" and getattr(r, "request_id", None) == "lane-log-1"]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    assert (lines[0].status, lines[0].method, lines[0].bytes) == (200, "GET", len(data))
    assert lines[0].route.endswith("/{}/?") and lines[0].duration_ms >= 0
    route = lines[0].route
    assert bytes_sent(services) == {**sent_before, route: sent_before.get(route, 0) + len(data)}


def bytes_sent(services) -> dict[str, float]:
    """videoflix_http_response_bytes_total by route, from the /metrics text."""
    families = text_string_to_metric_families(metrics.of(services).render().decode())
    return {sample.labels["route"]: sample.value for family in families
            for sample in family.samples if sample.name == "videoflix_http_response_bytes_total"}
