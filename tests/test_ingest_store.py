"""Uploads and deletions against both stores (issue 21 item 4): the local MEDIA_DIR and a
real SeaweedFS bucket. A multipart upload streams to this host's scratch, then its source
goes to the store as sources/<id> (S3 multipart upload past 16 MiB); a deletion (the owner,
an admin's bulk delete, a user's deletion) removes every object of the video; a store that
does not answer is a 503 with a reason, and nothing is left half made."""
from __future__ import annotations

import dataclasses
import hashlib
import subprocess

import botocore.session
import pytest

from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.platform.embedded import free_port
from videoflix.platform.s3store import MULTIPART_THRESHOLD, part_size, s3_settings
from videoflix.transcode import queue

from helpers import login, multipart, upload
from store_helpers import STORAGE_BACKENDS, publish_stored, read_stored, scratch_files, stored_keys


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


@pytest.fixture(scope="session")
def big_clip(state_dir):
    """A real H.264 file past the multipart threshold (noise at a high bitrate)."""
    path = state_dir / "big-noise.mp4"
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "color=c=gray:size=640x360:rate=25,noise=alls=80:allf=t", "-t", "2",
                        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", str(path)],
                       check=True)
    assert path.stat().st_size > MULTIPART_THRESHOLD
    return path


async def rows(services) -> list[dict]:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT id, status, source_size FROM videos ORDER BY id")
        return list(await cur.fetchall())


async def all_keys(services, config) -> list[str]:
    """Every object of the test's library (its bucket prefix, or MEDIA_DIR's library names)."""
    keys = []
    for item in await services.storage.list_tree(media.video_dir(config.media_dir, 1).parent / "sources"):
        keys.append(item.key)
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT last_value FROM videos_id_seq")
        last = (await cur.fetchone())["last_value"]
    for video_id in range(1, last + 2):
        keys += await stored_keys(services, config, media.video_dir(config.media_dir, video_id))
    return sorted(keys)


def open_multipart_uploads(config) -> list[dict]:
    """Multipart uploads the bucket still holds parts of (none may be left behind)."""
    settings = s3_settings(config)
    client = botocore.session.get_session().create_client("s3", **settings.client_kwargs())
    try:
        answer = client.list_multipart_uploads(Bucket=settings.location.bucket, Prefix=settings.location.prefix)
        return list(answer.get("Uploads", []))
    finally:
        client.close()


@pytest.mark.gen_test(timeout=90)
async def test_a_multipart_upload_stores_its_source_and_leaves_no_scratch(client, make_user, services, config,
                                                                          small_clip, big_clip):
    await make_user()
    for clip in (small_clip, big_clip):  # one PutObject; an S3 multipart upload
        response = await upload(client, clip)
        assert response.status == 201, response.body
        video_id = response.json()["id"]
        stored = await read_stored(services, media.source_path(config.media_dir, video_id))
        assert hashlib.sha256(stored).digest() == hashlib.sha256(clip.read_bytes()).digest()
    assert await queue.pending_video_ids(services.redis) == {1, 2}
    assert [(row["id"], row["source_size"]) for row in await rows(services)] == [
        (1, small_clip.stat().st_size), (2, big_clip.stat().st_size)]
    if not services.storage.is_local:
        # The bucket holds the sources; this host's scratch nothing (the upload was moved).
        assert scratch_files(config) == []
        assert open_multipart_uploads(config) == []
        size = big_clip.stat().st_size
        parts = -(-size // part_size(size))
        assert (await services.storage.head(media.source_path(config.media_dir, 2))).etag.endswith(f'-{parts}"')


@pytest.mark.parametrize("content", [b"just some text, not a video\n" * 100, b"\x00" * 4096])
@pytest.mark.gen_test
async def test_a_refused_upload_stores_nothing(client, make_user, services, config, content):
    await make_user()
    response = await upload(client, content, filename="notes.mp4")
    assert response.status == 400
    assert await rows(services) == []
    assert await all_keys(services, config) == []
    assert scratch_files(config) == []


@pytest.mark.gen_test(timeout=60)
async def test_an_upload_past_the_quota_stores_nothing(client, make_user, services, config, app, small_clip):
    await make_user()
    app.settings["config"] = dataclasses.replace(config, max_user_bytes=small_clip.stat().st_size + 2000)
    assert (await upload(client, small_clip)).status == 201
    refused = await upload(client, small_clip)
    assert refused.status == 413, refused.body
    assert [row["id"] for row in await rows(services)] == [1]
    assert await all_keys(services, config) == ["sources/1"]


@pytest.mark.gen_test(timeout=60)
async def test_deleting_a_video_removes_every_object_of_it(client, new_client, make_user, services, config,
                                                           small_ladder, small_clip, tmp_path):
    user = await make_user()
    kept = await publish_stored(services, config, user["id"], *small_ladder, title="Kept")
    doomed = await publish_stored(services, config, user["id"], *small_ladder, title="Doomed")
    for video_id in (kept, doomed):
        source = tmp_path / f"source-{video_id}"
        source.write_bytes(small_clip.read_bytes())
        await services.storage.put_file(media.source_path(config.media_dir, video_id), source)
    body, content_type = multipart({"language": "en"}, "en.vtt", b"WEBVTT\n\n00:00.000 --> 00:02.000\nHello\n")
    answer = await client.fetch("POST", f"/api/video/{doomed}/subtitles/", raw_body=body,
                                headers={"Content-Type": content_type})
    assert answer.status == 201, answer.body
    doomed_keys = await stored_keys(services, config, media.video_dir(config.media_dir, doomed))
    assert f"{doomed}/subtitles/en.vtt" in doomed_keys and f"{doomed}/v1/ladder.json" in doomed_keys
    before = await all_keys(services, config)
    assert (await new_client().fetch("DELETE", f"/api/video/{doomed}/")).status == 401
    assert (await client.fetch("DELETE", f"/api/video/{doomed}/")).status == 204
    after = await all_keys(services, config)
    assert after == [key for key in before if key not in doomed_keys and key != f"sources/{doomed}"]
    assert f"sources/{kept}" in after and f"{kept}/v1/ladder.json" in after


@pytest.mark.gen_test(timeout=60)
async def test_deleting_a_user_removes_the_objects_of_every_video_of_theirs(new_client, make_admin, make_user,
                                                                            services, config, small_ladder):
    admin = new_client()
    await make_admin(admin)
    user = await make_user()
    other = await make_user("other@example.com", log_in=False)
    first = await publish_stored(services, config, user["id"], *small_ladder)
    second = await publish_stored(services, config, user["id"], *small_ladder)
    theirs = await publish_stored(services, config, other["id"], *small_ladder)
    files = len(await all_keys(services, config)) // 3
    response = await admin.fetch("DELETE", f"/api/admin/users/{user['id']}/",
                                 headers={"X-CSRFToken": admin.cookies.get("csrftoken", "")})
    assert response.status == 200, response.body
    assert response.json()["removed"]["files"] == 2 * files
    assert {key.split("/")[0] for key in await all_keys(services, config)} == {str(theirs)}
    assert first and second


@pytest.mark.gen_test(timeout=60)
async def test_an_admins_bulk_delete_removes_the_objects(new_client, make_admin, make_user, services, config,
                                                         small_ladder):
    admin = new_client()
    await make_admin(admin)
    user = await make_user()
    doomed = await publish_stored(services, config, user["id"], *small_ladder)
    kept = await publish_stored(services, config, user["id"], *small_ladder)
    response = await admin.fetch("POST", "/api/admin/videos/bulk/", {"action": "delete", "ids": [doomed]},
                                 headers={"X-CSRFToken": admin.cookies.get("csrftoken", "")})
    assert response.json()["results"] == [{"id": doomed, "result": "deleted"}], response.body
    assert {key.split("/")[0] for key in await all_keys(services, config)} == {str(kept)}


# --- the store down ------------------------------------------------------------


@pytest.fixture
def store_down(config, storage_backend):
    """The bucket's endpoint refuses connections (the store is down); its tests run on
    the bucket only (the local store has no endpoint to lose)."""
    assert storage_backend == "s3"
    return dataclasses.replace(config, s3_endpoint=f"http://127.0.0.1:{free_port()}")


@pytest.mark.parametrize("storage_backend", ["s3"])
@pytest.mark.gen_test(timeout=90)
async def test_an_upload_while_the_store_is_down_is_503_with_a_reason_and_leaves_nothing(
        client, make_user, services, config, app, small_clip, store_down):
    from videoflix.platform.services import create_services

    await make_user()
    down = await create_services(store_down)
    app.settings["services"] = down
    try:
        response = await upload(client, small_clip)
        assert response.status == 503, response.body
        assert response.json() == {"detail": "The media store is unreachable right now, please try again shortly."}
        assert response.headers["Retry-After"]
        assert await rows(services) == []
        assert scratch_files(config) == []
        # Deleting while the store is down: 503 too, and the video stays whole.
        app.settings["services"] = services
        video_id = (await upload(client, small_clip)).json()["id"]
        app.settings["services"] = down
        refused = await client.fetch("DELETE", f"/api/video/{video_id}/")
        assert refused.status == 503
        app.settings["services"] = services
        assert [row["id"] for row in await rows(services)] == [video_id]
        assert await all_keys(services, config) == [f"sources/{video_id}"]
    finally:
        app.settings["services"] = services
        await down.close()


@pytest.mark.parametrize("storage_backend", ["s3"])
@pytest.mark.gen_test(timeout=90)
async def test_a_resumable_upload_finished_while_the_store_is_down_is_kept_and_finishes_later(
        client, make_user, services, config, app, small_clip, store_down):
    import base64

    from videoflix.platform.services import create_services

    await make_user()
    data = small_clip.read_bytes()
    meta = f"title {base64.b64encode(b'Later').decode()},filename {base64.b64encode(b'c.mp4').decode()}"
    tus = {"Tus-Resumable": "1.0.0"}
    created = await client.fetch("POST", "/api/uploads/", raw_body=b"",
                                 headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    url = created.headers["Location"]
    down = await create_services(store_down)
    app.settings["services"] = down
    try:
        sent = await client.fetch("PATCH", url, raw_body=data, headers={
            **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert sent.status == 503, sent.body
        assert "upload is kept" in sent.json()["detail"]
        assert sent.headers["Tus-Resumable"] == "1.0.0"
    finally:
        app.settings["services"] = services
        await down.close()
    assert await rows(services) == []
    state = await client.fetch("HEAD", url, headers=tus)
    assert state.headers["Upload-Offset"] == str(len(data)) and "Video-Location" not in state.headers
    finished = await client.fetch("PATCH", url, raw_body=b"", headers={
        **tus, "Upload-Offset": str(len(data)), "Content-Type": "application/offset+octet-stream"})
    assert finished.status == 204, finished.body
    video_id = int(finished.headers["Video-Location"].rstrip("/").rsplit("/", 1)[-1])
    assert await read_stored(services, media.source_path(config.media_dir, video_id)) == data
    assert [row["id"] for row in await rows(services)] == [video_id]


@pytest.mark.parametrize("storage_backend", ["s3"])
@pytest.mark.gen_test(timeout=90)
async def test_subtitles_and_posters_while_the_store_is_down_are_503_and_change_nothing(
        client, make_user, services, config, app, small_ladder, tmp_path, store_down):
    from videoflix.platform.services import create_services

    user = await make_user()
    video_id = await publish_stored(services, config, user["id"], *small_ladder)
    before = await all_keys(services, config)
    down = await create_services(store_down)
    app.settings["services"] = down
    try:
        body, content_type = multipart({"language": "en"}, "en.vtt", b"WEBVTT\n\n00:00.000 --> 00:02.000\nHi\n")
        answer = await client.fetch("POST", f"/api/video/{video_id}/subtitles/", raw_body=body,
                                    headers={"Content-Type": content_type})
        assert answer.status == 503 and "media store" in answer.json()["detail"], answer.body
        frame = await client.fetch("PUT", f"/api/video/{video_id}/poster/frame/", {"time": 1})
        assert frame.status == 503 and "media store" in frame.json()["detail"], frame.body
    finally:
        app.settings["services"] = services
        await down.close()
    assert (await client.get(f"/api/video/{video_id}/")).json()["subtitles"] == []
    assert await all_keys(services, config) == before


@pytest.mark.gen_test(timeout=60)
async def test_the_ledger_measures_the_source_and_subtitles_in_the_store(client, make_user, services, config,
                                                                         small_ladder, small_clip, tmp_path):
    """ledger.record_run (a subscriber of the runner's outcomes) reads the original's size
    and the uploaded subtitles' from the store (this host's scratch may hold neither)."""
    from videoflix.library import ledger
    from videoflix.transcode.runner import JobOutcome

    user = await make_user()
    folder, result = small_ladder
    video_id = await publish_stored(services, config, user["id"], folder, result)
    await services.storage.put_file(media.source_path(config.media_dir, video_id), small_clip)
    body, content_type = multipart({"language": "en"}, "en.vtt", b"WEBVTT\n\n00:00.000 --> 00:02.000\nHi\n")
    answer = await client.fetch("POST", f"/api/video/{video_id}/subtitles/", raw_body=body,
                                headers={"Content-Type": content_type})
    assert answer.status == 201
    subtitles = sum(item.size for item in await services.storage.list_tree(
        media.subtitles_dir(config.media_dir, video_id)))
    await ledger.record_run(config, services, JobOutcome("ready", video_id, 1, owner_id=user["id"], result=result))
    row = await ledger.detail_storage(services, video_id)
    assert row["original_bytes"] == small_clip.stat().st_size
    assert row["subtitle_bytes"] == result.storage.subtitles + subtitles and subtitles > 0
