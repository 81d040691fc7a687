"""`X-Content-Type-Options: nosniff` on every answer (issue 18 item 11): JSON and its
errors, media files (200, 206, 304, 404, 416; the handlers' and the segment lane's),
pages and assets, preflights, the gate's refusals."""
from __future__ import annotations

import os

import pytest

from videoflix.platform import media
from videoflix.web import segment_lane

from helpers import make_ready_version


@pytest.fixture
def segment(io_loop, make_user, services, config):
    """A private video of the logged-in owner with a 720p playlist and segment."""
    async def make():
        user = await make_user()
        video_id, number = await make_ready_version(services, user["id"])
        folder = media.version_dir(config.media_dir, video_id, number) / "720p"
        folder.mkdir(parents=True)
        (folder / "seg_00000.ts").write_bytes(os.urandom(10_000))
        (folder / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
        return video_id
    return io_loop.run_sync(make)


def nosniff(response) -> bool:
    return response.headers.get_list("X-Content-Type-Options") == ["nosniff"]


@pytest.mark.gen_test(timeout=60)
async def test_every_kind_of_answer_says_nosniff(client, new_client, segment):
    video = f"/api/video/{segment}"
    stranger = new_client()
    answers = {
        "json 200": await client.get("/api/health/"),
        "json 401": await stranger.get("/api/video/"),
        "json 404": await client.get("/no/such/path"),
        "json 405": await client.fetch("PUT", "/api/health/", {}),
        "json 400": await client.post("/api/login/", {}),
        "preflight 204": await client.fetch("OPTIONS", "/api/login/"),
        "openapi": await client.get("/api/openapi.json"),
        "playlist 200": await client.get(f"{video}/720p/index.m3u8"),
        "segment 200": await client.get(f"{video}/720p/seg_00000.ts"),
        "segment 206": await client.get(f"{video}/720p/seg_00000.ts", headers={"Range": "bytes=0-99"}),
        "segment 416": await client.get(f"{video}/720p/seg_00000.ts", headers={"Range": "bytes=99999-"}),
        "segment 404": await client.get(f"{video}/720p/seg_00009.ts"),
        "segment 401": await stranger.get(f"{video}/720p/seg_00000.ts"),
        "page 200": await client.get("/pages/auth/login.html"),
        "page 302": await stranger.get("/studio"),
        "asset 404": await client.get("/static/0/css/app.css"),
        "gate 400": await client.get("/api/health/", headers={"Host": "evil.example"}),
    }
    etag = answers["segment 200"].headers["Etag"]
    answers["segment 304"] = await client.get(f"{video}/720p/seg_00000.ts", headers={"If-None-Match": etag})
    before = segment_lane.answered
    answers["lane 200"] = await client.get(f"{video}/720p/seg_00000.ts")
    assert segment_lane.answered == before + 1  # that one came from the lane
    statuses = {name: response.status for name, response in answers.items()}
    assert statuses["segment 206"] == 206 and statuses["segment 304"] == 304 and statuses["segment 416"] == 416
    assert statuses["page 302"] == 302 and statuses["gate 400"] == 400
    assert [name for name, response in answers.items() if not nosniff(response)] == []
