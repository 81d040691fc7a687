"""Watch while it transcodes: how soon a long 1080p upload can be played (issue 12, item 2).

    python bench/watchwhile.py [--loops 32] [--media DIR]

One run, everything on 127.0.0.1:
1. A 1080p source of several minutes: the 5.8 s park clip (1080p H.264 + AAC) looped
   --loops times with `ffmpeg -stream_loop -c copy` into var/bench/ (made once, reused).
2. `videoflix dev` in a child process with a temporary ./var (embedded PostgreSQL and
   Redis, an admin account), the production x264 preset (veryfast), like bench/load.py.
3. Chromium (the distribution's, through Playwright) logs in and waits; the source is
   uploaded (multipart POST, as the admin); the clock starts when that request ends.
4. At once: the browser opens /watch/<id> (the page waits for `playable` over SSE and
   starts hls.js), while this script fetches the master (rendered from the provisional
   ladder.json) and polls the first segment of its first rendition at its versioned URL.
Printed: (a) seconds from the end of the upload request to the first 200 on that
versioned segment URL, (b) seconds to the first video frame Chromium presented
(requestVideoFrameCallback), and the targets (<= 10 s, <= 15 s). Exit status 0 when
both are met.

`--storage s3` runs the same upload against object storage (issue 21 item 3): a SeaweedFS
(platform/embedded_s3.py, under a temporary folder) with its bucket, `videoflix dev` on
VIDEOFLIX_STORAGE=s3://... (MEDIA_DIR is then only the transcoding host's scratch), and the
clock stopped when the bucket itself holds what a player needs to start: the provisional
ladder (ladder.building.json), every rendition's EVENT playlist and its first segment,
polled with ListObjectsV2 every 50 ms. Printed: (a) that time, (a') the first 200 on the
first segment through the server (from the bucket once the server serves from it), and the
target (<= 10 s). `--storage both` runs one then the other.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from urllib.parse import urljoin
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import devserver

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("VIDEOFLIX_TEST_MEDIA", ROOT.parent / "shared" / "media"))
CLIP = "park_1080p_h264_aac_5s.mp4"
ADMIN_EMAIL = "watch@example.com"
ADMIN_PASSWORD = "watch-password-9"
CHROMIUM = "/usr/bin/chromium"
MEASURE_TIMEOUT = 180.0
TARGET_SEGMENT_SECONDS = 10.0
TARGET_FRAME_SECONDS = 15.0
# Records when the player presents its first frame (the page's own code is untouched).
FIRST_FRAME_SCRIPT = """
document.addEventListener('DOMContentLoaded', () => {
  const video = document.getElementById('video');
  if (video && video.requestVideoFrameCallback) {
    video.requestVideoFrameCallback(() => { window.firstFrameAt = Date.now(); });
  }
});
"""


def long_source(loops: int, media: Path) -> Path:
    target = ROOT / "var" / "bench" / f"park_1080p_x{loops}.mp4"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(media / CLIP),
                        "-c", "copy", str(partial)], check=True)
        partial.replace(target)
    return target


def request(port: int, method: str, path: str, cookie: str = "", body: bytes | None = None,
            content_type: str = "application/json", timeout: float = 300) -> tuple[int, bytes, list[str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body,
                                 headers={"Content-Type": content_type, "Cookie": cookie})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as error:
        return error.code, error.read(), []


def login(port: int) -> str:
    status, _, cookies = request(port, "POST", "/api/login/", body=json.dumps(
        {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode())
    if status != 200:
        raise SystemExit(f"login failed: {status}")
    return "; ".join(c.split(";", 1)[0] for c in cookies)


def multipart(source: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in {"title": source.stem, "category": "Bench"}.items())
    body = (head + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{source.name}"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode() + source.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def first_segment_servable(port: int, cookie: str, video_id: int, deadline: float) -> tuple[float, str]:
    """Poll until the master exists and the first segment of its first rendition answers 200."""
    while True:
        status, body, _ = request(port, "GET", f"/api/video/{video_id}/master.m3u8", cookie, timeout=30)
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"no master after {MEASURE_TIMEOUT} s (last status {status})")
        time.sleep(0.05)
    first = next(line for line in body.decode().splitlines() if line and not line.startswith("#"))
    # (Under a media token the master's URIs are absolute paths: urljoin takes both forms.)
    segment = urljoin(f"/api/video/{video_id}/master.m3u8", f"{first.rsplit('/', 1)[0]}/seg_00000.ts")
    while True:
        status, _, _ = request(port, "GET", segment, cookie, timeout=30)  # 503 after ~3 s while not written
        if status == 200:
            return time.time(), segment
        if time.monotonic() > deadline:
            raise SystemExit(f"{segment}: still {status} after {MEASURE_TIMEOUT} s")
        if status not in (503, 404):
            raise SystemExit(f"{segment}: unexpected {status}")


BUCKET = "watchwhile"


def first_segment_in_bucket(client, video_id: int, deadline: float) -> tuple[float, list[str]]:
    """Poll the bucket until the provisional ladder, every rendition's playlist and its
    first segment are there; (that moment, the renditions)."""
    folder = f"{video_id}/v1/"
    while True:
        answer = client.list_objects_v2(Bucket=BUCKET, Prefix=folder)
        keys = {item["Key"][len(folder):] for item in answer.get("Contents", ())}
        if "ladder.building.json" in keys:
            ladder = json.loads(client.get_object(Bucket=BUCKET, Key=folder + "ladder.building.json")["Body"].read())
            rungs = [variant["name"] for variant in ladder["variants"]]
            if all(f"{rung}/index.m3u8" in keys and f"{rung}/seg_00000.ts" in keys for rung in rungs):
                return time.time(), rungs
        if time.monotonic() > deadline:
            raise SystemExit(f"the bucket has no first segments after {MEASURE_TIMEOUT} s: {sorted(keys)}")
        time.sleep(0.05)


def run_local(source: Path, body: bytes, content_type: str) -> bool:
    import playwright.sync_api as playwright_api

    with devserver.running_dev(ADMIN_EMAIL, ADMIN_PASSWORD, "videoflix-watchwhile-") as (port, server):
        base = f"http://127.0.0.1:{port}"
        cookie = login(port)
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
            context = browser.new_context(base_url=base)
            context.add_init_script(FIRST_FRAME_SCRIPT)
            page = context.new_page()
            page.goto("/pages/auth/login.html")
            page.get_by_label("Email").fill(ADMIN_EMAIL)
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{base}/")

            status, answer, _ = request(port, "POST", "/api/video/", cookie, body, content_type)
            uploaded = time.time()
            if status != 201:
                raise SystemExit(f"upload failed: {status} {answer[:200]!r}")
            video_id = json.loads(answer)["id"]
            page.goto(f"/watch/{video_id}", wait_until="commit")
            measure_deadline = time.monotonic() + MEASURE_TIMEOUT
            servable_at, segment = first_segment_servable(port, cookie, video_id, measure_deadline)
            page.wait_for_function("() => window.firstFrameAt", timeout=MEASURE_TIMEOUT * 1000)
            frame_at = page.evaluate("window.firstFrameAt") / 1000
            detail = json.loads(request(port, "GET", f"/api/video/{video_id}/", cookie)[1])
            browser.close()
    segment_seconds = servable_at - uploaded
    frame_seconds = frame_at - uploaded
    report = {"storage": "local", "source": source.name, "source_bytes": source.stat().st_size,
              "segment": segment, "first_segment_servable_s": round(segment_seconds, 2),
              "first_frame_s": round(frame_seconds, 2), "status_at_first_frame": detail["status"],
              "progress_at_first_frame": detail["progress"], "load_average": [round(x, 2) for x in os.getloadavg()]}
    print("WATCHWHILE " + json.dumps(report))
    print(f"(a) first segment servable {segment_seconds:.1f} s after the upload request ended "
          f"(target <= {TARGET_SEGMENT_SECONDS:.0f} s)")
    print(f"(b) first frame shown by hls.js in Chromium {frame_seconds:.1f} s after it "
          f"(target <= {TARGET_FRAME_SECONDS:.0f} s); the video was {detail['status']} "
          f"at {detail['progress']} %")
    return segment_seconds <= TARGET_SEGMENT_SECONDS and frame_seconds <= TARGET_FRAME_SECONDS


def run_s3(source: Path, body: bytes, content_type: str) -> bool:
    import botocore.session

    from videoflix.platform.embedded_s3 import EmbeddedS3

    with tempfile.TemporaryDirectory(prefix="videoflix-watchwhile-s3-") as folder:
        store = EmbeddedS3(Path(folder))
        store.start()
        store.ensure_bucket(BUCKET)
        client = botocore.session.get_session().create_client("s3", **store.settings(BUCKET).client_kwargs())
        try:
            env = {"VIDEOFLIX_STORAGE": f"s3://{BUCKET}/", "VIDEOFLIX_S3_ENDPOINT": store.endpoint,
                   "AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key}
            with devserver.running_dev(ADMIN_EMAIL, ADMIN_PASSWORD, "videoflix-watchwhile-s3-", env) as (port, _):
                cookie = login(port)
                status, answer, _ = request(port, "POST", "/api/video/", cookie, body, content_type)
                uploaded = time.time()
                if status != 201:
                    raise SystemExit(f"upload failed: {status} {answer[:200]!r}")
                video_id = json.loads(answer)["id"]
                measure_deadline = time.monotonic() + MEASURE_TIMEOUT
                in_bucket_at, rungs = first_segment_in_bucket(client, video_id, measure_deadline)
                servable_at, segment = first_segment_servable(port, cookie, video_id, measure_deadline)
                detail = json.loads(request(port, "GET", f"/api/video/{video_id}/", cookie)[1])
        finally:
            client.close()
            store.stop(graceful=False)
    bucket_seconds = in_bucket_at - uploaded
    served_seconds = servable_at - uploaded
    report = {"storage": "s3 (SeaweedFS)", "source": source.name, "source_bytes": source.stat().st_size,
              "renditions": rungs, "first_segment_in_bucket_s": round(bucket_seconds, 2),
              "first_segment_served_s": round(served_seconds, 2), "segment": segment,
              "status_then": detail["status"], "progress_then": detail["progress"],
              "load_average": [round(x, 2) for x in os.getloadavg()]}
    print("WATCHWHILE " + json.dumps(report))
    print(f"(a) S3: the first segment of every rendition, its playlist and the provisional ladder in the "
          f"bucket {bucket_seconds:.1f} s after the upload request ended (target <= {TARGET_SEGMENT_SECONDS:.0f} s)")
    print(f"(a') S3: the first segment answered 200 through the server {served_seconds:.1f} s after it")
    return bucket_seconds <= TARGET_SEGMENT_SECONDS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loops", type=int, default=32, help="times the 5.8 s clip is repeated (32: ~3 min)")
    parser.add_argument("--media", type=Path, default=MEDIA)
    parser.add_argument("--storage", choices=("local", "s3", "both"), default="local",
                        help="MEDIA_DIR (with the browser), an S3 bucket (SeaweedFS), or one then the other")
    args = parser.parse_args()

    source = long_source(args.loops, args.media)
    body, content_type = multipart(source)
    met = True
    if args.storage in ("local", "both"):
        met = run_local(source, body, content_type) and met
    if args.storage in ("s3", "both"):
        met = run_s3(source, body, content_type) and met
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
