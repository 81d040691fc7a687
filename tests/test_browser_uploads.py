"""The studio uploads through tus-js-client (issue 22 item 3), in Chromium against a real
`videoflix serve`: a connection that fails mid-upload, then a page reload, and the same
file picked again goes on from the offset the server holds (found through the fingerprint
tus-js-client kept in localStorage), to a ready video whose source is the file sent."""
from __future__ import annotations

import hashlib
import re
import subprocess
import time
from urllib.parse import urlsplit

import playwright.sync_api as playwright_api

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import (  # noqa: F401
    ADMIN_EMAIL, TRANSCODE_TIMEOUT_MS, browser, context, live_server, log_in, page, steps)

from media import PARK, clip

UPLOAD_URL = re.compile(r".*/api/uploads/[0-9a-f]{32}/$")


def test_studio_upload_survives_a_dropped_connection_and_a_reload(page, steps, live_server, state_dir, tmp_path):
    expect = playwright_api.expect
    source = clip(PARK)
    data = source.read_bytes()
    half = len(data) // 2
    log_in(page, ADMIN_EMAIL)
    page.goto("/studio")
    expect(page.locator("#live")).to_contain_text("Live")
    assert page.evaluate("() => Boolean(window.tus && window.tus.isSupported)")  # served from node_modules/

    # The first PATCH reaches the server with half of its body (the connection dies
    # after it); every later one fails outright: the upload cannot finish on this page.
    patches: list[str] = []

    def cut(route):
        request = route.request
        if request.method != "PATCH":
            route.continue_()
            return
        patches.append(request.url)
        if len(patches) == 1:
            route.continue_(post_data=request.post_data_buffer[:half])
        else:
            route.abort("connectionreset")

    page.route(UPLOAD_URL, cut)
    page.get_by_label("Drop a video file here, or choose one").set_input_files(str(source))
    page.get_by_label("Title").fill("Park, resumed")
    page.get_by_label("Category").fill("Nature")
    page.get_by_role("button", name="Upload").click()
    deadline = time.monotonic() + 30
    while len(patches) < 2:  # the retry after the drop was refused too
        assert time.monotonic() < deadline, "no second PATCH"
        page.wait_for_timeout(100)
    upload_url = patches[0]
    state = page.request.head(upload_url, headers={"Tus-Resumable": "1.0.0"})
    assert state.headers["upload-offset"] == str(half)
    steps.shot(page, "dropped")

    # A reload; the same file again: the studio finds its unfinished upload and resumes it.
    page.unroute(UPLOAD_URL)
    page.reload()
    expect(page.locator("#live")).to_contain_text("Live")
    resumed_at: list[str] = []
    page.on("request", lambda request: resumed_at.append(request.headers.get("upload-offset", ""))
            if request.method == "PATCH" else None)
    page.get_by_label("Drop a video file here, or choose one").set_input_files(str(source))
    page.get_by_label("Title").fill("Park, resumed")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#resume-note")).to_be_visible()
    expect(page.locator("#progress-percent")).to_contain_text("100 %")
    assert resumed_at[0] == str(half)  # from the server's offset, not from 0
    item = page.locator("#videos li", has_text="Park, resumed").first
    expect(item).to_have_attribute("data-status", "ready", timeout=TRANSCODE_TIMEOUT_MS)
    steps.shot(page, "resumed")
    video_id = int((item.get_attribute("id") or "").removeprefix("video-"))
    port = urlsplit(live_server).port
    stored = (state_dir / f"browser-{port}" / "media" / "sources" / str(video_id)).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()

    # The studio replaces its poster (issue 22 item 5) and, for an admin, switches downloads.
    png = tmp_path / "poster.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=800x600:rate=1", "-frames:v", "1",
                    str(png)], check=True)
    item.get_by_role("button", name="Edit").click()
    item.get_by_label("An image (JPEG, PNG or WebP)").set_input_files(str(png))
    item.get_by_role("button", name="Set poster").click()
    expect(page.locator(f"#video-{video_id} img")).to_have_attribute("src", re.compile(r"\?v=\d+$"))
    custom = state_dir / f"browser-{port}" / "media" / str(video_id) / "poster" / "poster.jpg"
    assert custom.is_file()
    switch = page.locator(f"#downloads-{video_id}")
    expect(switch).to_be_enabled()
    expect(switch).to_be_checked()
    switch.uncheck()
    expect(page.locator("#announce")).to_contain_text("are off")
    assert page.request.get(f"/api/video/{video_id}/downloads/").json()["downloads_enabled"] is False
    switch.check()
    expect(page.locator("#announce")).to_contain_text("are on")

    # The player offers the video for offline viewing (issue 22 item 4).
    page.goto(f"/watch/{video_id}")
    link = page.get_by_role("link", name="Download")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href == f"/api/video/{video_id}/1080p/download.mp4"
    fetched = page.request.get(href)
    assert fetched.status == 200 and fetched.headers["content-type"] == "video/mp4"
    assert "Park, resumed" in fetched.headers["content-disposition"]
    # (the refused PATCHes are logged as failed resources; nothing else may fail)
    assert [error for error in steps.unexpected_errors if "net::ERR_" not in error] == []


def test_studio_progress_goes_on_after_a_dropped_connection(page, steps, live_server):
    """The first PATCH's connection is reset; tus-js-client asks the offset and sends again,
    on the same page, without the user doing anything: the bar reaches 100 %, no error."""
    expect = playwright_api.expect
    log_in(page, ADMIN_EMAIL)
    page.goto("/studio")
    expect(page.locator("#live")).to_contain_text("Live")
    seen: list[str] = []

    def drop_first(route):
        if route.request.method == "PATCH":
            seen.append("PATCH")
            if len(seen) == 1:
                route.abort("connectionreset")
                return
        route.continue_()

    page.route(UPLOAD_URL, drop_first)
    page.get_by_label("Drop a video file here, or choose one").set_input_files(str(clip(PARK)))
    page.get_by_label("Title").fill("Park, dropped once")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#progress-percent")).to_contain_text("100 %")
    expect(page.locator("#videos li", has_text="Park, dropped once").first).to_be_visible()
    assert len(seen) >= 2  # the retry after the reset
    expect(page.locator("#upload .form-error")).to_be_empty()
    steps.shot(page, "retried")
