"""The built-in player under the query form of media tokens (issue 20 item 4;
VIDEOFLIX_MEDIA_TOKEN_FORM=query:<name>): every URI of the master and of the playlists
carries ?<name>=<token>, and hls.js plays from them as they are. Real server, real
Chromium, real hls.js.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, browser, context, live_server, log_in, page, steps, upload_ready  # noqa: F401


NAME = "token"
LIVE_SERVER_ENV = {"VIDEOFLIX_MEDIA_TOKEN_FORM": f"query:{NAME}"}  # read by live_server


def test_player_plays_from_uris_carrying_the_token_in_the_query(page, steps, live_server, tmp_path):
    log_in(page, ADMIN_EMAIL)
    video_id = upload_ready(page, tmp_path, "Query tokens")

    loaded: list[tuple[str, int]] = []
    page.on("response", lambda r: loaded.append((r.url, r.status)) if "/api/media/" in r.url else None)
    page.goto(f"/watch/{video_id}")
    page.eval_on_selector("#video", "v => { v.muted = true; v.play().catch(() => {}); }")  # (a failure fails below)
    page.wait_for_function("() => document.getElementById('video').currentTime > 0.5", timeout=60_000)
    steps.shot(page, "playing-with-query-tokens")
    assert any(urlsplit(url).path.endswith(".ts") for url, _ in loaded), loaded
    for url, status in loaded:
        parts = urlsplit(url)
        assert parts.path.startswith(f"/api/media/{video_id}/v"), url  # no token in the path
        assert len(parse_qs(parts.query)[NAME]) == 1 and status in (200, 206), (url, status)
    assert not steps.unexpected_errors, steps.unexpected_errors
