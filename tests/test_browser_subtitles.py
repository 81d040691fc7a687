"""Subtitles in a real browser: hls.js in Debian's Chromium lists the master's
SUBTITLES group in the player's menu and shows a cue of the chosen track, fetched
through the segmented WebVTT playlist of the version (API.md §6)."""
from __future__ import annotations

import time

import playwright.sync_api as playwright_api

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, TRANSCODE_TIMEOUT_MS, browser, context, live_server, log_in, page, steps  # noqa: F401

from media import ffmpeg

SRT = (b"1\n00:00:00,500 --> 00:00:03,500\nHello from the subtitles\n\n"
       b"2\n00:00:04,000 --> 00:00:09,000\nA cue across a segment boundary\n")


def test_player_offers_the_subtitles_and_shows_a_cue(page, steps, live_server, tmp_path):
    expect = playwright_api.expect
    source = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "10", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source))
    log_in(page, ADMIN_EMAIL)
    # The page's own cookies, through Playwright's request context (no Origin: judged by them).
    uploaded = page.request.post("/api/video/", multipart={
        "title": "With subtitles", "description": "", "category": "Test",
        "file": {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": source.read_bytes()}})
    assert uploaded.status == 201, uploaded.text()
    video_id = uploaded.json()["id"]
    added = page.request.post(f"/api/video/{video_id}/subtitles/", multipart={
        "language": "en", "label": "English",
        "file": {"name": "en.srt", "mimeType": "application/x-subrip", "buffer": SRT}})
    assert added.status == 201, added.text()
    deadline = time.monotonic() + TRANSCODE_TIMEOUT_MS / 1000
    while page.request.get(f"/api/video/{video_id}/").json()["status"] != "ready":
        assert time.monotonic() < deadline, "transcode did not finish"
        time.sleep(0.5)

    page.goto(f"/watch/{video_id}")
    menu = page.get_by_label("Subtitles")
    expect(menu).to_be_visible()
    expect(menu.locator("option")).to_have_text(["Off", "English"])
    menu.select_option(label="English")
    page.eval_on_selector("#video", "v => { v.muted = true; v.currentTime = 1; return v.play(); }")
    # A cue of the chosen track becomes active in the <video>'s text track.
    page.wait_for_function("""() => [...document.getElementById('video').textTracks].some(
        (track) => track.mode === 'showing' && track.activeCues
            && [...track.activeCues].some((cue) => cue.text === 'Hello from the subtitles'))""",
                           timeout=60_000)
    steps.shot(page, "cue-showing")
    # The cue spanning the 4 s boundary is in two segments but appears once.
    page.eval_on_selector("#video", "v => { v.currentTime = 8.5; }")
    page.wait_for_function("""() => [...document.getElementById('video').textTracks].some(
        (track) => track.mode === 'showing' && track.cues
            && [...track.cues].filter((cue) => cue.text === 'A cue across a segment boundary').length === 1
            && [...track.activeCues].some((cue) => cue.text === 'A cue across a segment boundary'))""",
                           timeout=60_000)
    assert not steps.unexpected_errors, steps.unexpected_errors
