"""Downloads for offline viewing (issue 22 item 4): GET /api/video/<id>/<resolution>/download.mp4
remuxes the live rendition into fragmented MP4, streamed, under playback's access rules;
admins turn it off per video. Segments read from MEDIA_DIR and streamed from a real SeaweedFS
bucket (STORAGE_BACKENDS)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from helpers import PASSWORD, login, publish_ladder
from store_helpers import STORAGE_BACKENDS


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


@pytest.fixture
def ready(io_loop, client, make_user, config, services, small_ladder):
    """A private video of user@example.com (logged in on `client`), small_clip's ladder published."""
    async def make():
        owner = await make_user()
        return await publish_ladder(services, config, owner["id"], *small_ladder, title='Park: "Noon" ä/b')
    return io_loop.run_sync(make), small_ladder[1]


async def fetch_stream(client, path: str, *, cookies: bool = True):
    """GET streamed: (response, body, seconds to the first body byte)."""
    chunks: list[bytes] = []
    first: list[float] = []
    started = time.monotonic()

    def take(chunk: bytes) -> None:
        if not first:
            first.append(time.monotonic() - started)
        chunks.append(chunk)

    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())} if cookies else {}
    response = await client.http.fetch(client.base_url + path, headers=headers, streaming_callback=take,
                                       raise_error=False, request_timeout=60)
    return response, b"".join(chunks), (first[0] if first else None)


def probe_duration(path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    facts = json.loads(out)
    assert {stream["codec_type"] for stream in facts["streams"]} == {"video", "audio"}
    return float(facts["format"]["duration"])


@pytest.mark.gen_test(timeout=60)
async def test_the_download_is_an_mp4_that_plays_to_the_end_with_the_videos_duration(client, ready, tmp_path):
    video_id, result = ready
    response, body, first_byte = await fetch_stream(client, f"/api/video/{video_id}/480p/download.mp4")
    assert response.code == 200, body[:300]
    assert response.headers["Content-Type"] == "video/mp4"
    assert first_byte is not None and first_byte < 1.0, first_byte
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Park Noon a b.mp4"'), disposition
    assert "filename*=UTF-8''Park%20Noon%20%C3%A4%20b.mp4" in disposition
    assert "Content-Length" not in response.headers  # streamed as it is made
    saved = tmp_path / "download.mp4"
    saved.write_bytes(body)
    assert abs(probe_duration(saved) - result.duration) < 0.5
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(saved), "-f", "null", "-"],
                             capture_output=True, text=True)
    assert decoded.returncode == 0 and decoded.stderr == ""


@pytest.mark.gen_test(timeout=60)
async def test_a_rendition_above_the_highest_is_served_from_the_highest(client, ready):
    video_id, _ = ready
    response, body, _ = await fetch_stream(client, f"/api/video/{video_id}/1080p/download.mp4")
    assert response.code == 200 and body[4:8] == b"ftyp"


@pytest.mark.gen_test(timeout=60)
async def test_downloads_follow_the_access_rules_of_playback(client, new_client, make_user, ready):
    video_id, _ = ready
    stranger = new_client()
    await make_user("stranger@example.com", log_in=False)
    await login(stranger, "stranger@example.com", PASSWORD)
    assert (await stranger.get(f"/api/video/{video_id}/480p/download.mp4")).status == 404  # private
    anonymous = new_client()
    assert (await anonymous.get(f"/api/video/{video_id}/480p/download.mp4")).status == 401
    for path in (f"/api/video/{video_id}/999p/download.mp4", f"/api/video/{video_id + 1}/480p/download.mp4",
                 f"/api/video/0{video_id}/480p/download.mp4"):
        assert (await client.get(path)).status == 404, path


@pytest.mark.gen_test(timeout=60)
async def test_a_stream_url_downloads_without_cookies(client, ready):
    video_id, _ = ready
    url = (await client.get(f"/api/video/{video_id}/stream/")).json()["url"]
    path = url.split("://", 1)[1].split("/", 1)[1]
    download = "/" + path.replace("master.m3u8", "480p/download.mp4")
    response, body, _ = await fetch_stream(client, download, cookies=False)
    assert response.code == 200 and body[4:8] == b"ftyp"
    forged = download.replace("/api/stream/", "/api/stream/x")
    response, _, _ = await fetch_stream(client, forged, cookies=False)
    assert response.code == 401


@pytest.mark.gen_test(timeout=60)
async def test_admins_turn_downloads_off_per_video(client, new_client, make_admin, ready):
    video_id, _ = ready
    admin = new_client()
    await make_admin(admin)
    assert (await client.fetch("PUT", f"/api/video/{video_id}/downloads/", {"enabled": False})).status == 403
    assert (await admin.fetch("PUT", f"/api/video/{video_id}/downloads/", {"enabled": "no"})).status == 400
    assert (await client.get(f"/api/video/{video_id}/downloads/")).json() == {
        "downloads_enabled": True, "can_download": True}
    off = await admin.fetch("PUT", f"/api/video/{video_id}/downloads/", {"enabled": False})
    assert (off.status, off.json()) == (200, {"downloads_enabled": False, "can_download": True})
    assert (await client.get(f"/api/video/{video_id}/downloads/")).json() == {
        "downloads_enabled": False, "can_download": False}
    assert (await admin.get(f"/api/video/{video_id}/downloads/")).json()["can_download"] is True
    refused = await client.get(f"/api/video/{video_id}/480p/download.mp4")
    assert (refused.status, refused.json()) == (403, {"detail": "Downloads are turned off for this video."})
    assert (await client.get(f"/api/video/{video_id}/480p/index.m3u8")).status == 200  # playback unchanged
    assert (await admin.fetch("PUT", f"/api/video/{video_id}/downloads/", {"enabled": True})).status == 200
    response, _, _ = await fetch_stream(client, f"/api/video/{video_id}/480p/download.mp4")
    assert response.code == 200
    assert (await admin.fetch("PUT", "/api/video/99999/downloads/", {"enabled": True})).status == 404


@pytest.mark.gen_test(timeout=60)
async def test_a_client_that_leaves_mid_download_stops_ffmpeg(client, ready, config):
    video_id, _ = ready
    port = int(client.base_url.rsplit(":", 1)[1])
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/video/{video_id}/480p/download.mp4 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Cookie: {cookie}\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    writer.transport.abort()

    def remuxers() -> list[str]:
        found = subprocess.run(["pgrep", "-f", "-a", "ffmpeg .*-protocol_whitelist pipe"], capture_output=True,
                               text=True).stdout
        return [line for line in found.splitlines() if "pgrep" not in line]

    deadline = asyncio.get_running_loop().time() + 10
    while remuxers():
        assert asyncio.get_running_loop().time() < deadline, remuxers()
        await asyncio.sleep(0.1)
