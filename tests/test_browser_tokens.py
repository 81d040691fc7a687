"""The built-in player across a media token's expiry (issue 20 item 1): the files under an
expired token answer 403, and the player reloads the master for fresh tokens and goes on
playing, at the quality the viewer chose. Real server, real Chromium, real hls.js.
"""
from __future__ import annotations

import re

import playwright.sync_api as playwright_api

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, browser, context, live_server, log_in, page, steps, upload_ready  # noqa: F401


TOKEN_SECONDS = 10
LIVE_SERVER_ENV = {"VIDEOFLIX_MEDIA_TOKEN_TTL": str(TOKEN_SECONDS)}  # read by live_server
TOKEN_URI = re.compile(r"/api/media/[0-9a-z]+\.[0-9a-z]+\.([0-9a-z]+)\.[01]\.[0-9a-f]{32}\.[A-Za-z0-9_-]{43}/")


def test_player_renews_expired_media_tokens_and_keeps_playing(page, steps, live_server, tmp_path):
    expect = playwright_api.expect
    log_in(page, ADMIN_EMAIL)
    video_id = upload_ready(page, tmp_path, "Short tokens", size="1280x720", seconds=8)

    masters: list[str] = []
    refused: list[str] = []
    page.on("response", lambda r: masters.append(r.text()) if r.url.endswith(f"/{video_id}/master.m3u8") else None)
    page.on("response", lambda r: refused.append(r.url) if r.status == 403 and "/api/media/" in r.url else None)
    page.goto(f"/watch/{video_id}")
    page.eval_on_selector("#video", "v => { v.muted = true; v.loop = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('video').currentTime > 0.5", timeout=60_000)
    assert len(masters) == 1
    expires = int(TOKEN_URI.search(masters[0]).group(1), 36)
    # Past the tokens' expiry (the browser's clock is this machine's), a manual switch
    # loads another rendition's playlist and segments: refused, then renewed.
    page.wait_for_function("expires => Date.now() / 1000 > expires + 0.5", arg=expires,
                           timeout=(TOKEN_SECONDS + 30) * 1000)
    page.evaluate("""() => {
        const v = document.getElementById('video');
        window.played = 0;
        let last = v.currentTime;
        v.addEventListener('timeupdate', () => {
            const delta = v.currentTime - last;
            last = v.currentTime;
            if (delta > 0 && delta < 1 && v.dataset.level === '480p') window.played += delta;
        });
    }""")
    page.get_by_label("Quality").select_option(label="480p")
    page.wait_for_function("() => window.played > 1.5 && !document.getElementById('video').paused",
                           timeout=60_000)
    steps.shot(page, "playing-after-renewal")
    assert refused, "no media token was refused: the test did not cross an expiry"
    assert len(masters) >= 2, "the player did not reload the master"
    renewed = int(TOKEN_URI.search(masters[-1]).group(1), 36)
    assert renewed > expires
    expect(page.get_by_label("Quality")).to_have_value(page.eval_on_selector(
        "#quality", "q => [...q.options].find(o => o.textContent === '480p').value"))
    # The browser logs the refused loads themselves (the 403s this test is about), nothing else.
    others = [error for error in steps.unexpected_errors if "status of 403 (Forbidden)" not in error]
    assert not others, others
