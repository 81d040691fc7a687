"""The built-in player under the header form of media tokens (issue 20 item 4;
VIDEOFLIX_MEDIA_TOKEN_FORM=header:<name>): the master's URIs carry no token, its answer
carries it in that header, and hls.js (player.js's xhrSetup) sends it with every request
of the folder. Real server, real Chromium, real hls.js.
"""
from __future__ import annotations

import time

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, TRANSCODE_TIMEOUT_MS, browser, context, live_server, log_in, page, steps  # noqa: F401

from media import ffmpeg

HEADER = "X-Media-Token"
LIVE_SERVER_ENV = {"VIDEOFLIX_MEDIA_TOKEN_FORM": f"header:{HEADER}"}  # read by live_server


def test_player_sends_the_media_token_header_and_plays(page, steps, live_server, tmp_path):
    source = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "6", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source))
    log_in(page, ADMIN_EMAIL)
    uploaded = page.request.post("/api/video/", multipart={
        "title": "Header tokens", "description": "", "category": "Test",
        "file": {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": source.read_bytes()}})
    assert uploaded.status == 201, uploaded.text()
    video_id = uploaded.json()["id"]
    deadline = time.monotonic() + TRANSCODE_TIMEOUT_MS / 1000
    while page.request.get(f"/api/video/{video_id}/").json()["status"] != "ready":
        assert time.monotonic() < deadline, "transcode did not finish"
        time.sleep(0.5)

    handed: list[str] = []
    sent: list[tuple[str, str | None, int]] = []
    page.on("response", lambda r: handed.append(r.headers.get(HEADER.lower(), ""))
            if r.url.endswith(f"/{video_id}/master.m3u8") else None)
    page.on("response", lambda r: sent.append((r.url, r.request.headers.get(HEADER.lower()), r.status))
            if "/api/media/" in r.url else None)
    page.goto(f"/watch/{video_id}")
    page.eval_on_selector("#video", "v => { v.muted = true; v.play().catch(() => {}); }")  # (not awaited: a failure fails below)
    page.wait_for_function("() => document.getElementById('video').currentTime > 0.5", timeout=60_000)
    steps.shot(page, "playing-with-header-tokens")
    assert handed and handed[0], "the master's answer carries no token header"
    assert sent and all("?" not in url for url, _, _ in sent)  # the URIs carry no token
    assert all(token == handed[-1] and status in (200, 206) for _, token, status in sent), sent
    assert any(url.endswith(".ts") for url, _, _ in sent)
    assert not steps.unexpected_errors, steps.unexpected_errors
