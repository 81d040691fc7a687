"""User text never widens a page (issue 18 item 11): a title, description, category and
subtitle label that are each one long word (300 characters, or the field's limit) keep the
catalog, the studio and the watch page inside a 360 px viewport (Debian's Chromium)."""
from __future__ import annotations

import time

import playwright.sync_api as playwright_api

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, STEP_TIMEOUT_MS, TRANSCODE_TIMEOUT_MS, browser, live_server, log_in, steps  # noqa: F401

from media import ffmpeg

WORD = "W" * 300  # the description; the other fields hold their longest allowed word
TITLE, CATEGORY = "T" * 200, "C" * 100
SRT = b"1\n00:00:00,500 --> 00:00:01,500\nHello\n"


def test_one_long_word_in_every_text_field_keeps_pages_inside_360_px(browser, live_server, steps, tmp_path):
    source = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "2", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source))
    context = browser.new_context(base_url=live_server, viewport={"width": 360, "height": 740},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        page = context.new_page()
        steps.watch(page)
        log_in(page, ADMIN_EMAIL)
        uploaded = page.request.post("/api/video/", multipart={
            "title": TITLE, "description": WORD, "category": CATEGORY, "visibility": "public",
            "file": {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": source.read_bytes()}})
        assert uploaded.status == 201, uploaded.text()
        video_id = uploaded.json()["id"]
        added = page.request.post(f"/api/video/{video_id}/subtitles/", multipart={
            "language": "en", "label": "L" * 64,
            "file": {"name": "en.srt", "mimeType": "application/x-subrip", "buffer": SRT}})
        assert added.status == 201, added.text()
        deadline = time.monotonic() + TRANSCODE_TIMEOUT_MS / 1000
        while page.request.get(f"/api/video/{video_id}/").json()["status"] != "ready":
            assert time.monotonic() < deadline, "transcode did not finish"
            time.sleep(0.5)
        for url, ready in (("/", "#catalog"), ("/studio", "main"), (f"/watch/{video_id}", "main")):
            page.goto(url)
            if url == "/":
                playwright_api.expect(page.locator("#catalog")).not_to_have_attribute("aria-busy", "true")
            playwright_api.expect(page.get_by_text(TITLE[:50], exact=False).first).to_be_attached()
            steps.shot(page, "long-word" + url.replace("/", "-"), full_page=True)
            # Against 360 itself: a mobile browser widens its layout viewport (innerWidth) to the content.
            width = page.evaluate("() => document.scrollingElement.scrollWidth")
            assert width <= 360, f"{url} is {width}px wide at 360px"
    finally:
        context.close()
