"""Copy when it fits (issue 23) in a real browser: hls.js in Debian's Chromium switches
between the copied top rung (the source's own H.264 stream) and the encoded lower rung,
back and forth at segment boundaries, and plays to the end without a stall."""
from __future__ import annotations

import time

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, TRANSCODE_TIMEOUT_MS, browser, context, live_server, log_in, page, steps  # noqa: F401

from media import ffmpeg

SECONDS = 20  # five 4 s segments


def test_hls_js_switches_between_the_copied_and_the_encoded_rung_without_a_stall(page, steps, live_server,
                                                                                  tmp_path):
    # 720p at 30 fps with a keyframe every 2 s and stereo AAC: it fits, so 720p is the
    # source's stream copied and 480p is encoded with keyframes at the same times.
    source = tmp_path / "camera.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000", "-t", str(SECONDS),
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-g", "60", "-sc_threshold", "0",
           "-pix_fmt", "yuv420p", "-ac", "2", "-c:a", "aac", "-b:a", "96k", str(source))
    log_in(page, ADMIN_EMAIL)
    uploaded = page.request.post("/api/video/", multipart={
        "title": "Copied rung", "description": "", "category": "Test",
        "file": {"name": "camera.mp4", "mimeType": "video/mp4", "buffer": source.read_bytes()}})
    assert uploaded.status == 201, uploaded.text()
    video_id = uploaded.json()["id"]
    deadline = time.monotonic() + TRANSCODE_TIMEOUT_MS / 1000
    while (detail := page.request.get(f"/api/video/{video_id}/").json())["status"] != "ready":
        assert detail["status"] != "failed", detail
        assert time.monotonic() < deadline, "transcode did not finish"
        time.sleep(0.5)
    assert detail["resolutions"] == ["720p", "480p"]
    assert detail["encoding"]["note"] == "copied", detail["encoding"]

    page.goto(f"/watch/{video_id}")
    page.wait_for_function("() => window.videoflixHls && window.videoflixHls.levels.length === 2")
    page.evaluate("""() => {
        const h = window.videoflixHls, v = document.getElementById('video');
        window.seen = { frags: [], switched: [], errors: [], waiting: 0, playing: false };
        h.on('hlsFragChanged', (_, d) => window.seen.frags.push(h.levels[d.frag.level].height));
        h.on('hlsLevelSwitched', (_, d) => window.seen.switched.push(h.levels[d.level].height));
        h.on('hlsError', (_, d) => window.seen.errors.push(d.details));
        v.addEventListener('playing', () => { window.seen.playing = true; });
        // A stall: the element waits for data after playback has started.
        v.addEventListener('waiting', () => { if (window.seen.playing) window.seen.waiting++; });
        // Buffer one segment ahead, so each switch asked for lands at the next boundary.
        h.config.maxBufferLength = 4;
        h.config.maxMaxBufferLength = 4;
        v.muted = true;
        h.currentLevel = h.levels.findIndex((l) => l.height === 720);
        return v.play();
    }""")
    # Every 4 s (a segment), ask for the other rung at the next segment boundary.
    for height in [480, 720, 480, 720]:
        page.wait_for_timeout(4000)
        page.evaluate("(height) => { const h = window.videoflixHls;"
                      " h.nextLevel = h.levels.findIndex((l) => l.height === height); }", height)
    page.wait_for_function("() => document.getElementById('video').ended", timeout=120_000)
    steps.shot(page, "ended")
    seen = page.evaluate("window.seen")
    # Both rungs played, with switches between them in both directions.
    pairs = list(zip(seen["frags"], seen["frags"][1:]))
    assert (720, 480) in pairs and (480, 720) in pairs, seen
    assert seen["waiting"] == 0, seen
    assert "bufferStalledError" not in seen["errors"] and "bufferSeekOverHole" not in seen["errors"], seen
    played = page.evaluate("() => { const p = document.getElementById('video').played; let total = 0;"
                           " for (let i = 0; i < p.length; i++) total += p.end(i) - p.start(i); return total; }")
    assert played > SECONDS - 1, played
    assert not steps.unexpected_errors, steps.unexpected_errors
