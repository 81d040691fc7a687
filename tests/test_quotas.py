"""Quotas (issue 18 item 10): per-user limits on videos waiting to be transcoded (429)
and on bytes stored (413), with a `detail` that says which; admins exempt; and the
queue serves users in turn, so one user's uploads cannot starve another's."""
from __future__ import annotations

import asyncio
import dataclasses
from urllib.parse import urlsplit

import pytest

from videoflix.platform import media
from videoflix.platform.db import cursor

from helpers import login, multipart, upload, wait_for_status


@pytest.fixture
def config(config):
    return dataclasses.replace(config, max_queued_per_user=2, max_user_bytes=0)


async def video_count(services) -> int:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM videos")
        return (await cur.fetchone())["n"]


@pytest.mark.gen_test(timeout=120)
async def test_a_third_upload_waiting_to_be_transcoded_is_429_with_a_detail(client, make_user, small_clip, services,
                                                                           config):
    await make_user()  # (no runner here: every upload stays queued)
    assert [(await upload(client, small_clip)).status for _ in range(2)] == [201, 201]
    refused = await upload(client, small_clip)
    assert refused.status == 429
    assert "2 videos waiting to be transcoded" in refused.json()["detail"]
    assert await video_count(services) == 2
    assert list(media.incoming_dir(config.media_dir).glob("*.part")) == []  # the body was never read


@pytest.mark.gen_test(timeout=120)
async def test_admins_have_no_quota(new_client, make_admin, small_clip, config, app):
    app.settings["config"] = dataclasses.replace(config, max_queued_per_user=1, max_user_bytes=1)
    admin = new_client()
    await make_admin(admin)
    assert [(await upload(admin, small_clip)).status for _ in range(3)] == [201, 201, 201]


@pytest.mark.gen_test(timeout=120)
async def test_an_upload_past_the_storage_quota_is_413_before_its_body(client, make_user, small_clip, services,
                                                                      config, app):
    size = small_clip.stat().st_size
    app.settings["config"] = dataclasses.replace(config, max_queued_per_user=0, max_user_bytes=int(size * 1.5))
    await make_user()
    assert (await upload(client, small_clip)).status == 201
    refused = await upload(client, small_clip)
    assert refused.status == 413
    assert "storage quota" in refused.json()["detail"]
    assert await video_count(services) == 1


@pytest.mark.gen_test(timeout=120)
async def test_a_chunked_upload_past_the_storage_quota_is_413_at_its_end_and_leaves_nothing(
        client, make_user, small_clip, services, config, app):
    """No Content-Length to judge first: the real size is checked before the row exists."""
    size = small_clip.stat().st_size
    app.settings["config"] = dataclasses.replace(config, max_queued_per_user=0, max_user_bytes=size - 1)
    await make_user()
    body, content_type = multipart({"title": "Too big"}, "clip.mp4", small_clip.read_bytes())
    parts = urlsplit(client.base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    writer.write((f"POST /api/video/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                  f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode())
    for start in range(0, len(body), 65536):
        chunk = body[start:start + 65536]
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"storage quota" in answer
    assert await video_count(services) == 0
    assert list(media.incoming_dir(config.media_dir).glob("*.part")) == []


@pytest.mark.slow
@pytest.mark.gen_test(timeout=600)
async def test_one_users_uploads_do_not_starve_anothers(client, new_client, make_user, small_clip, runner,
                                                        services, config, app):
    """One worker; user A queues four videos, then B one: B's is transcoded third at the
    latest (behind A's share), not fifth."""
    app.settings["config"] = dataclasses.replace(config, max_queued_per_user=10)
    await make_user("a@example.com")
    a_videos = [(await upload(client, small_clip)).json()["id"] for _ in range(4)]
    b = new_client()
    await make_user("b@example.com", log_in=False)
    await login(b, "b@example.com")
    b_video = (await upload(b, small_clip)).json()["id"]
    await wait_for_status(b, b_video, "ready", timeout=300)
    for video_id in a_videos:
        await wait_for_status(client, video_id, "ready", timeout=300)
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT id FROM videos ORDER BY ready_at")
        order = [row["id"] for row in await cur.fetchall()]
    assert order.index(b_video) <= 2, order
