"""Upload, queue, process pool, catalog, detail, delete, re-run: API.md §2 and §4, end to end."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
from pathlib import Path

import pytest

from videoflix.app import make_runner
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos
from videoflix.transcode import queue

from helpers import login, multipart, upload, wait_for_status
from media import BBB_ROTATED, BBB_WEBM, FIRE_VFR, PARK, PEOPLE, STREET, clip

CATALOG_KEYS = ["id", "created_at", "title", "description", "thumbnail_url", "category"]


@pytest.fixture
def config(config):
    # A short lease so reclaiming a dead worker's job takes seconds in tests.
    return dataclasses.replace(config, transcode_lease_seconds=2)


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


def media_files(config) -> list[str]:
    root = Path(config.media_dir)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def count_rows(services) -> int:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM videos")
        return (await cur.fetchone())["n"]


# --- upload validation ------------------------------------------------------

@pytest.mark.gen_test
async def test_upload_without_auth_returns_401(client, small_clip):
    response = await upload(client, small_clip)
    assert (response.status, response.json()) == (401, {"detail": "Authentication credentials were not provided."})


@pytest.mark.gen_test
async def test_upload_not_multipart_returns_400(client, make_user, services, config):
    await make_user()
    response = await client.post("/api/video/", {"title": "x"})
    assert response.status == 400
    assert "multipart" in response.json()["detail"]
    assert await count_rows(services) == 0


@pytest.mark.gen_test
async def test_upload_without_title_returns_field_error_and_keeps_nothing(client, make_user, services,
                                                                           config, small_clip):
    await make_user()
    response = await upload(client, small_clip, title="  ")
    assert (response.status, response.json()) == (400, {"title": ["This field is required."]})
    assert await count_rows(services) == 0
    assert media_files(config) == []


@pytest.mark.gen_test
async def test_upload_without_file_returns_400(client, make_user):
    await make_user()
    body, content_type = multipart({"title": "t"}, None, None)
    response = await client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert (response.status, response.json()) == (400, {"file": ["No file was submitted."]})


@pytest.mark.parametrize("content", [b"just some text, not a video\n" * 100, b"\x00" * 4096])
@pytest.mark.gen_test
async def test_upload_of_non_video_returns_400_and_keeps_nothing(client, make_user, services, config, content):
    await make_user()
    response = await upload(client, content, filename="notes.mp4")
    assert response.status == 400
    assert response.json()["detail"]
    assert await count_rows(services) == 0
    assert media_files(config) == []


@pytest.mark.gen_test
async def test_upload_of_audio_only_file_returns_400(client, make_user, services, state_dir):
    await make_user()
    audio = state_dir / "tone.m4a"
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "2", str(audio))
    assert await process.wait() == 0
    response = await upload(client, audio, filename="tone.m4a")
    assert (response.status, response.json()) == (400, {"detail": "No video stream found."})


@pytest.mark.gen_test
async def test_upload_over_the_size_limit_returns_413_early(client, make_user, app, config, small_clip, services):
    app.settings["config"] = dataclasses.replace(config, max_upload_bytes=10_000)
    await make_user()
    response = await upload(client, small_clip)
    assert response.status == 413
    assert "limit" in response.json()["detail"]
    assert await count_rows(services) == 0


@pytest.mark.gen_test
async def test_user_cannot_publish_unless_allowed(client, make_user, small_clip, app, config):
    await make_user()
    refused = await upload(client, small_clip, visibility="public")
    assert refused.status == 400
    assert list(refused.json()) == ["visibility"]
    app.settings["config"] = dataclasses.replace(config, allow_public_user_uploads=True)
    allowed = await upload(client, small_clip, visibility="public")
    assert allowed.status == 201
    assert allowed.json()["visibility"] == "public"


@pytest.mark.gen_test
async def test_client_disconnecting_mid_upload_leaves_no_file_and_no_row(client, make_user, services,
                                                                          config, base_url):
    await make_user()
    body, content_type = multipart({"title": "cut short"}, "big.mp4", b"\x00" * (4 * 1024 * 1024))
    port = int(base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    head = (f"POST /api/video/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    incoming = media.incoming_dir(config.media_dir)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (incoming.exists() and any(incoming.iterdir())):
        assert loop.time() < deadline, "upload never reached the disk"
        await asyncio.sleep(0.05)
    writer.close()
    deadline = loop.time() + 10
    while any(incoming.iterdir()):
        assert loop.time() < deadline, "partial upload left behind"
        await asyncio.sleep(0.05)
    assert await count_rows(services) == 0


@pytest.mark.gen_test
async def test_upload_returns_201_queued_detail_with_job_in_stream(client, make_user, services, config,
                                                                   small_clip):
    await make_user()
    response = await upload(client, small_clip, title="My clip", category="Nature")
    assert response.status == 201
    detail = response.json()
    assert list(detail)[:6] == CATALOG_KEYS
    assert detail["status"] == "queued"
    assert detail["visibility"] == "private"
    assert detail["title"] == "My clip" and detail["category"] == "Nature"
    assert detail["progress"] == 0 and detail["master_url"] is None and detail["thumbnail_url"] is None
    assert detail["width"] == 640 and detail["height"] == 360
    assert await queue.pending_video_ids(services.redis) == {detail["id"]}
    assert media.source_path(config.media_dir, detail["id"]).stat().st_size == small_clip.stat().st_size


# --- transcoding end to end -------------------------------------------------

@pytest.mark.gen_test(timeout=120)
async def test_admin_upload_becomes_ready_public_and_listed(admin_client, client, make_user, runner, config,
                                                            small_clip):
    response = await upload(admin_client, small_clip, title="Public clip")
    assert response.status == 201
    video_id = response.json()["id"]
    assert response.json()["visibility"] == "public"
    detail = await wait_for_status(admin_client, video_id, "ready")
    assert detail["progress"] == 100
    assert detail["resolutions"] == ["480p"]  # 360 lines: one rendition, never upscaled
    assert detail["master_url"] == f"{config.public_url}/api/video/{video_id}/master.m3u8"
    assert detail["thumbnail_url"] == f"{config.public_url}/media/thumbnail/{video_id}.jpg"
    files = media_files(config)
    for name in ("ladder.json", "thumbnail.jpg", "poster.jpg", "480p/index.m3u8", "480p/seg_00000.ts"):
        assert f"{video_id}/v1/{name}" in files
    assert not any(name.startswith((".work/", ".incoming/")) for name in files)
    await make_user("viewer@example.com")
    catalog = await client.get("/api/video/")
    assert catalog.status == 200
    (item,) = catalog.json()
    assert list(item) == CATALOG_KEYS
    assert item["id"] == video_id and item["title"] == "Public clip"
    assert item["created_at"].endswith("Z")


@pytest.mark.slow
@pytest.mark.parametrize("name, resolutions, top_size", [
    (PARK, ["1080p", "720p", "480p"], (1920, 1080)),
    (BBB_ROTATED, ["1080p", "720p", "480p"], (1080, 1920)),
    (STREET, ["1080p", "720p", "480p"], (1080, 1444)),
    (PEOPLE, ["480p"], (768, 432)),
    (FIRE_VFR, ["720p", "480p"], (1280, 720)),
    (BBB_WEBM, ["720p", "480p"], (1280, 720)),
])
@pytest.mark.gen_test(timeout=300)
async def test_each_shared_clip_uploads_to_a_correct_ladder(admin_client, runner, config, name, resolutions,
                                                           top_size):
    response = await upload(admin_client, clip(name), filename=name)
    assert response.status == 201, response.body
    detail = await wait_for_status(admin_client, response.json()["id"], "ready", timeout=280)
    assert detail["resolutions"] == resolutions
    assert (detail["width"], detail["height"]) == top_size
    master = (await admin_client.get(f"/api/video/{detail['id']}/master.m3u8")).body.decode()
    for resolution in resolutions:
        assert f"v1/{resolution}/index.m3u8" in master


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_private_video_is_listed_only_for_its_owner_and_admins(client, new_client, make_user, make_admin,
                                                                     runner, small_clip):
    await make_user("owner@example.com")
    video_id = (await upload(client, small_clip, title="Mine")).json()["id"]
    await wait_for_status(client, video_id, "ready")
    assert [v["id"] for v in (await client.get("/api/video/")).json()] == [video_id]
    other = new_client()
    await make_user("other@example.com", log_in=False)
    await login(other, "other@example.com")
    assert (await other.get("/api/video/")).json() == []
    assert (await other.get(f"/api/video/{video_id}/")).status == 404
    admin = new_client()
    await make_admin(admin)
    assert [v["id"] for v in (await admin.get("/api/video/")).json()] == [video_id]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=180)
async def test_catalog_is_newest_first_and_cache_is_invalidated(admin_client, runner, services, small_clip,
                                                                 config):
    first = (await upload(admin_client, small_clip, title="first")).json()["id"]
    await wait_for_status(admin_client, first, "ready")
    listing = (await admin_client.get("/api/video/")).json()
    assert [v["id"] for v in listing] == [first]
    second = (await upload(admin_client, small_clip, title="second")).json()["id"]
    # Upload alone does not change the catalog (not ready yet) ...
    assert [v["id"] for v in (await admin_client.get("/api/video/")).json()] == [first]
    await wait_for_status(admin_client, second, "ready")
    # ... ready does, and the cached answer equals a cold one.
    warm = (await admin_client.get("/api/video/")).json()
    assert [v["id"] for v in warm] == [second, first]
    await services.redis.flushdb()
    cold = (await admin_client.get("/api/video/")).json()
    assert cold == warm
    assert (await admin_client.fetch("DELETE", f"/api/video/{first}/")).status == 204
    assert [v["id"] for v in (await admin_client.get("/api/video/")).json()] == [second]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_delete_removes_row_source_renditions_and_pictures(client, new_client, make_user, runner,
                                                                 services, config, small_clip):
    await make_user("owner@example.com")
    video_id = (await upload(client, small_clip)).json()["id"]
    await wait_for_status(client, video_id, "ready")
    assert (await new_client().fetch("DELETE", f"/api/video/{video_id}/")).status == 401
    response = await client.fetch("DELETE", f"/api/video/{video_id}/")
    assert response.status == 204
    assert media_files(config) == []
    assert await count_rows(services) == 0
    assert (await client.get(f"/api/video/{video_id}/")).status == 404
    assert (await client.fetch("DELETE", f"/api/video/{video_id}/")).status == 404


@pytest.mark.gen_test
async def test_delete_of_someone_elses_video_is_404(client, new_client, make_user, small_clip, services):
    await make_user("owner@example.com")
    video_id = (await upload(client, small_clip)).json()["id"]
    await make_user("other@example.com", log_in=False)
    other = new_client()
    await login(other, "other@example.com")
    assert (await other.fetch("DELETE", f"/api/video/{video_id}/")).status == 404
    assert await count_rows(services) == 1


@pytest.mark.gen_test
async def test_non_numeric_and_unknown_ids_are_404(client, make_user):
    await make_user()
    for path in ("/api/video/abc/", "/api/video/0/", "/api/video/99999999999999999999999/", "/api/video/42/"):
        response = await client.get(path)
        assert (response.status, response.json()) == (404, {"detail": "Not found."}), path


@pytest.mark.gen_test(timeout=180)
async def test_delete_while_transcoding_stops_the_job_and_leaves_nothing(admin_client, runner, services, config):
    response = await upload(admin_client, clip(PEOPLE), filename="long.mp4")
    video_id = response.json()["id"]
    detail = await wait_for_status(admin_client, video_id, "processing")
    assert detail["status"] == "processing"
    finished = asyncio.get_running_loop().create_future()
    runner.on_outcome.append(lambda outcome: finished.done() or finished.set_result(outcome.kind))
    assert (await admin_client.fetch("DELETE", f"/api/video/{video_id}/")).status == 204
    # The running job notices (cancel key, or its work dir vanishing) and ends
    # without publishing anything.
    outcome = await asyncio.wait_for(finished, 60)
    assert outcome in ("cancelled", "failed", "discarded")
    assert media_files(config) == []
    assert await queue.pending_video_ids(services.redis) == set()
    assert await count_rows(services) == 0


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_unreadable_source_fails_cleanly_with_reason(admin_client, services, config, runner, small_clip):
    await runner.stop()  # hold the queue while we damage the source
    video_id = (await upload(admin_client, small_clip)).json()["id"]
    media.source_path(config.media_dir, video_id).write_bytes(b"\x00garbage" * 1000)
    fresh = make_runner(config, services, consumer="fresh")
    await fresh.start()
    try:
        detail = await wait_for_status(admin_client, video_id, "failed")
    finally:
        await fresh.stop()
    assert detail["error"]
    assert await queue.pending_video_ids(services.redis) == set()
    assert not (media.video_dir(config.media_dir, video_id)).exists()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=180)
async def test_job_whose_worker_is_killed_mid_encode_is_rerun_to_ready(admin_client, runner, services):
    video_id = (await upload(admin_client, clip(PEOPLE), filename="long.mp4")).json()["id"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        detail = (await admin_client.get(f"/api/video/{video_id}/")).json()
        if detail["status"] == "processing" and detail["progress"] > 0:
            break
        assert loop.time() < deadline, detail
        await asyncio.sleep(0.1)
    pids = runner.pool.worker_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    detail = await wait_for_status(admin_client, video_id, "ready", timeout=170)
    async with cursor(services.pool) as cur:
        row = await videos.get_video(cur, video_id)
    assert row.attempts == 2
    assert detail["resolutions"] == ["480p"]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=180)
async def test_server_restart_mid_job_loses_nothing(admin_client, runner, services, config, small_clip):
    video_id = (await upload(admin_client, clip(PEOPLE), filename="long.mp4")).json()["id"]
    await wait_for_status(admin_client, video_id, "processing")
    # Crash: the consumer vanishes without acknowledging anything.
    await runner.stop()
    async with cursor(services.pool) as cur:
        assert (await videos.get_video(cur, video_id)).status == "processing"
    restarted = make_runner(config, services, consumer="after-restart")
    await restarted.start()
    try:
        await wait_for_status(admin_client, video_id, "ready", timeout=170)
    finally:
        await restarted.stop()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_startup_re_enqueues_rows_without_stream_entry(admin_client, services, config, runner, small_clip):
    await runner.stop()
    video_id = (await upload(admin_client, small_clip)).json()["id"]
    await services.redis.delete(queue.STREAM)  # the entry is lost (e.g. Redis restored from an old file)
    await queue.ensure_group(services.redis)
    restarted = make_runner(config, services, consumer="recovering")
    assert await restarted.recover() == [video_id]
    await restarted.start()
    try:
        await wait_for_status(admin_client, video_id, "ready")
    finally:
        await restarted.stop()


@pytest.mark.gen_test(timeout=60)
async def test_job_delivered_too_often_goes_to_dead_letter_and_fails(admin_client, services, config, runner,
                                                                    small_clip):
    await runner.stop()
    video_id = (await upload(admin_client, small_clip)).json()["id"]
    job = await queue.claim(services.redis, "doomed", 100, lease_seconds=60)
    doomed = make_runner(config, services, consumer="doomed")
    try:
        await doomed.run_job(dataclasses.replace(job, deliveries=queue.MAX_DELIVERIES + 1))
    finally:
        await doomed.stop()
    detail = (await admin_client.get(f"/api/video/{video_id}/")).json()
    assert detail["status"] == "failed"
    assert "giving up" in detail["error"]
    dead = await services.redis.xrange(queue.DEAD_LETTER)
    assert len(dead) == 1 and dead[0][1]["video_id"] == str(video_id)
    assert await queue.pending_video_ids(services.redis) == set()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_admin_can_retranscode_a_ready_video(admin_client, client, make_user, runner, small_clip):
    video_id = (await upload(admin_client, small_clip)).json()["id"]
    await wait_for_status(admin_client, video_id, "ready")
    await make_user()
    assert (await client.post(f"/api/video/{video_id}/retranscode/")).status == 403
    response = await admin_client.post(f"/api/video/{video_id}/retranscode/")
    assert response.status == 202
    assert response.json()["status"] == "queued"
    busy = await admin_client.post(f"/api/video/{video_id}/retranscode/")
    assert (busy.status, busy.json()) == (409, {"detail": "The video is already queued or processing."})
    await wait_for_status(admin_client, video_id, "ready")
    missing = await admin_client.post("/api/video/999/retranscode/")
    assert missing.status == 404


@pytest.mark.slow
@pytest.mark.gen_test(timeout=180)
async def test_detail_says_whether_the_top_rung_was_copied_and_why(admin_client, runner, small_clip, state_dir):
    # small_clip has one keyframe in 6 s: encoded. The same picture with a keyframe every
    # second fits: copied (transcode/copyfit.py); its mono audio is encoded to stereo.
    fitting = state_dir / "fitting.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(small_clip), "-c:v", "libx264", "-preset",
                    "veryfast", "-crf", "28", "-g", "25", "-c:a", "copy", str(fitting)], check=True)
    encoded = (await upload(admin_client, small_clip, title="Encoded")).json()["id"]
    copied = (await upload(admin_client, fitting, title="Copied")).json()["id"]
    detail = await wait_for_status(admin_client, encoded, "ready")
    assert detail["encoding"] == {"video": "encoded", "audio": "encoded", "reason": "source GOP 6 s",
                                  "audio_reason": None, "note": "encoded: source GOP 6 s",
                                  "input": "the original"}
    detail = await wait_for_status(admin_client, copied, "ready")
    assert detail["encoding"] == {"video": "copied", "audio": "encoded", "reason": None,
                                  "audio_reason": "audio 1 channel", "note": "copied", "input": "the original"}
