"""The built-in player under the header form of media tokens (issue 20 item 4;
VIDEOFLIX_MEDIA_TOKEN_FORM=header:<name>): the master's URIs carry no token, its answer
carries it in that header, and hls.js (player.js's xhrSetup) sends it with every request
of the folder. Real server, real Chromium, real hls.js.
"""
from __future__ import annotations


# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, browser, context, live_server, log_in, page, steps, upload_ready  # noqa: F401


HEADER = "X-Media-Token"
LIVE_SERVER_ENV = {"VIDEOFLIX_MEDIA_TOKEN_FORM": f"header:{HEADER}"}  # read by live_server


def test_player_sends_the_media_token_header_and_plays(page, steps, live_server, tmp_path):
    log_in(page, ADMIN_EMAIL)
    video_id = upload_ready(page, tmp_path, "Header tokens")

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
