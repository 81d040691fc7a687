"""GET /api/video/events/ (Server-Sent Events, API.md §6): snapshot, then live changes
pushed from the real transcode runner and from edits, filtered per viewer."""
from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest

from videoflix.transcode import notify

from helpers import admin_id, login, make_ready_video, register_user, upload

# Generous: a real transcode of the small clip on a busy 2-core machine.
EVENT_TIMEOUT = 120


class EventStream:
    """A raw HTTP/1.0 client for one SSE response (no chunked framing), parsing events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int,
                 headers: dict[str, str]) -> None:
        self.reader, self.writer, self.status, self.headers = reader, writer, status, headers
        self.buffer = b""

    @classmethod
    async def open(cls, client, path: str = "/api/video/events/") -> "EventStream":
        parts = urlsplit(client.base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
                     f"Cookie: {cookie}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return cls(reader, writer, status, headers)

    async def next_block(self, timeout: float) -> str:
        while b"\n\n" not in self.buffer:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                raise EOFError("stream ended")
            self.buffer += chunk
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        return block.decode()

    async def next_event(self, timeout: float = EVENT_TIMEOUT) -> tuple[str, dict]:
        """The next `event:`/`data:` message (comments and retry lines skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            block = await self.next_block(max(0.1, deadline - loop.time()))
            fields = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":")
                          and ": " in line)
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])

    async def snapshot(self) -> list[dict]:
        """The initial events up to the `: snapshot done` comment."""
        items = []
        while True:
            block = await self.next_block(10)
            if block.startswith(": snapshot done"):
                return items
            if block.startswith("event: video\n"):
                items.append(json.loads(block.split("data: ", 1)[1]))

    async def wait_for(self, predicate, timeout: float = EVENT_TIMEOUT) -> list[tuple[str, dict]]:
        """Events until one matches `predicate(event, data)`; all of them, in order."""
        seen = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next_event(max(0.1, deadline - loop.time()))
            seen.append(event)
            if predicate(*event):
                return seen

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


@pytest.mark.gen_test(timeout=60)
async def test_events_without_auth_return_401_json(new_client):
    stream = await EventStream.open(new_client())
    try:
        assert stream.status == 401
        assert stream.headers["content-type"].startswith("application/json")
    finally:
        stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_events_start_with_a_snapshot_of_own_videos_only(client, make_user, services, admin_client):
    user = await make_user()
    mine = await make_ready_video(services, user["id"], title="mine", visibility="private")
    await make_ready_video(services, await admin_id(services), title="someone else's public one")
    stream = await EventStream.open(client)
    try:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=UTF-8"
        assert stream.headers["cache-control"] == "no-store"
        snapshot = await stream.snapshot()
        assert [(item["id"], item["title"], item["status"]) for item in snapshot] == [(mine, "mine", "ready")]
    finally:
        stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_admin_snapshot_has_everyones_videos_in_every_state(admin_client, client, make_user, services):
    user = await make_user()
    theirs = await make_ready_video(services, user["id"], title="theirs", visibility="private")
    mine = await make_ready_video(services, await admin_id(services), title="mine")
    stream = await EventStream.open(admin_client)
    try:
        assert {item["id"] for item in await stream.snapshot()} == {theirs, mine}
    finally:
        stream.close()


@pytest.mark.gen_test(timeout=EVENT_TIMEOUT + 60)
async def test_upload_pushes_progress_and_ready_to_owner_and_admin_not_others(
        admin_client, client, new_client, make_user, services, mailbox, runner, small_clip):
    await make_user()
    bystander = new_client()
    await register_user(bystander, services, mailbox, "bystander@example.com")
    await login(bystander, "bystander@example.com")
    owner_stream = await EventStream.open(client)
    admin_stream = await EventStream.open(admin_client)
    other_stream = await EventStream.open(bystander)
    try:
        for stream in (owner_stream, admin_stream, other_stream):
            assert await stream.snapshot() == []
        response = await upload(client, small_clip, title="Live")
        assert response.status == 201, response.body
        video_id = response.json()["id"]
        for stream in (owner_stream, admin_stream):
            seen = await stream.wait_for(lambda event, data: event == "video" and data["status"] == "ready")
            assert all(data["id"] == video_id for _, data in seen)
            statuses = [data["status"] for _, data in seen]
            assert "processing" in statuses, statuses
            final = seen[-1][1]
            assert (final["progress"], final["playable"], final["resolutions"]) == (100, True, ["480p"])
            progress = [data["progress"] for _, data in seen]
            assert progress == sorted(progress)
        # The bystander's stream got nothing about it (only its keep-alive would come).
        with pytest.raises(asyncio.TimeoutError):
            await other_stream.next_event(timeout=1.0)
    finally:
        for stream in (owner_stream, admin_stream, other_stream):
            stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_edit_and_delete_are_pushed(client, make_user, services):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    stream = await EventStream.open(client)
    try:
        await stream.snapshot()
        assert (await client.fetch("PATCH", f"/api/video/{video_id}/", {"title": "Renamed"})).status == 200
        event, data = await stream.next_event(timeout=10)
        assert (event, data["id"], data["title"]) == ("video", video_id, "Renamed")
        assert (await client.fetch("DELETE", f"/api/video/{video_id}/")).status == 204
        assert await stream.next_event(timeout=10) == ("video-deleted", {"id": video_id})
    finally:
        stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_malformed_channel_messages_are_ignored(client, make_user, services):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    stream = await EventStream.open(client)
    try:
        await stream.snapshot()
        for junk in ("not json", "[]", '{"id": "1"}', '{"id": -3}', '{"id": 1, "progress": "x"}',
                     '{"id": 1, "owner": true}'):
            await services.redis.publish(notify.CHANNEL, junk)
        await services.redis.publish(notify.CHANNEL, notify.progress_message(video_id, 50))
        event, data = await stream.next_event(timeout=10)
        assert (event, data["id"], data["status"]) == ("video", video_id, "ready")
    finally:
        stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_stream_ends_cleanly_when_the_client_goes_away(client, make_user, services, app):
    await make_user()
    streams = [await EventStream.open(client) for _ in range(3)]
    for stream in streams:
        await stream.snapshot()
    hub = app.settings["events"]
    assert (hub.subscribers, hub.listening) == (3, True)
    for stream in streams:
        stream.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while hub.subscribers or hub.listening:
        assert loop.time() < deadline, "subscriptions still open"
        await asyncio.sleep(0.05)
