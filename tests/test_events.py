"""GET /api/video/events/ (Server-Sent Events, API.md §6): snapshot, then live changes
pushed from the real transcode runner and from edits, filtered per viewer."""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest

from videoflix.transcode import notify

from helpers import admin_id, link_from_mail, login, make_ready_video, register_user, upload, wait_until

# Generous: a real transcode of the small clip on a busy 2-core machine.
EVENT_TIMEOUT = 120


class EventStream:
    """A raw HTTP/1.0 client for one SSE response (no chunked framing), parsing events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int,
                 headers: dict[str, str]) -> None:
        self.reader, self.writer, self.status, self.headers = reader, writer, status, headers
        self.buffer = b""

    @classmethod
    async def open(cls, client, path: str = "/api/video/events/", bearer: str | None = None) -> "EventStream":
        parts = urlsplit(client.base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        credential = f"Authorization: Bearer {bearer}" if bearer else f"Cookie: {cookie}"
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
                     f"{credential}\r\n\r\n".encode())
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
        if not self.writer.is_closing():
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


@pytest.mark.slow
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


# --- streams obey sessions (issue 18 item 2) ------------------------------------------

async def ends(stream: EventStream, within: float) -> None:
    """Read until the server closes the stream; fail if it is still open after `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        chunk = await asyncio.wait_for(stream.reader.read(65536), max(0.05, deadline - loop.time()))
        if not chunk:
            stream.close()
            return


@pytest.fixture
def quick_checks(monkeypatch):
    """Session checks every 0.2 s (STREAM_CHECK_SECONDS) from answers at most 0.2 s old
    (sessions.CHECK_SECONDS): what takes ~10 s in production takes < 1 s here."""
    from videoflix.accounts import sessions
    from videoflix.library import events

    monkeypatch.setattr(events, "STREAM_CHECK_SECONDS", 0.2)
    monkeypatch.setattr(sessions, "CHECK_SECONDS", 0.2)


@pytest.mark.gen_test(timeout=60)
async def test_logout_ends_the_sessions_open_streams_at_once(client, make_user, new_client):
    from videoflix.web.event_handlers import HEARTBEAT_SECONDS

    await make_user()
    other_session = new_client()
    await login(other_session, "user@example.com")
    mine = [await EventStream.open(client) for _ in range(2)]
    theirs = await EventStream.open(other_session)
    for stream in (*mine, theirs):
        await stream.snapshot()
    assert (await client.post("/api/logout/")).status == 200
    for stream in mine:
        await ends(stream, within=HEARTBEAT_SECONDS / 4)  # not after a heartbeat: at once
    # Another session of the same user keeps its stream: it still answers after the others ended.
    theirs.writer.write(b"")
    with pytest.raises(asyncio.TimeoutError):
        await ends(theirs, within=0.5)
    theirs.close()


@pytest.mark.gen_test(timeout=60)
async def test_password_reset_ends_every_stream_of_the_user(client, make_user, new_client, services, mailbox):
    from videoflix.web.event_handlers import HEARTBEAT_SECONDS

    await make_user()
    second = new_client()
    await login(second, "user@example.com")
    streams = [await EventStream.open(client), await EventStream.open(second)]
    for stream in streams:
        await stream.snapshot()
    mailbox.clear()
    await new_client().post("/api/password_reset/", {"email": "user@example.com"})
    await services.mailer.drain()
    uid, token = link_from_mail(mailbox.messages[-1])
    body = {"new_password": "a-new-pass-123", "confirm_password": "a-new-pass-123"}
    assert (await new_client().post(f"/api/password_confirm/{uid}/{token}/", body)).status == 200
    for stream in streams:
        await ends(stream, within=HEARTBEAT_SECONDS / 4)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("how", ["deactivated", "revoked elsewhere", "version bumped elsewhere"])
async def test_a_session_ended_by_another_process_ends_the_stream_within_a_check(client, make_user, services,
                                                                                 quick_checks, how):
    from videoflix.accounts import tokens
    from videoflix.platform import rediskeys
    from videoflix.platform.db import cursor

    user = await make_user()
    stream = await EventStream.open(client)
    await stream.snapshot()
    claims = tokens.read_session_token("test-secret-key-that-is-long-enough-for-hs256",
                                       client.cookies["access_token"], kind="access", now=int(time.time()))
    # What another server or `videoflix` command does: the stores change, this process is not told.
    if how == "deactivated":
        async with cursor(services.pool) as cur:
            await cur.execute("UPDATE users SET is_active = false WHERE id = %s", (user["id"],))
    elif how == "revoked elsewhere":
        await services.redis.set(rediskeys.revoked_session(claims.session_id), 1, ex=600)
    else:
        async with cursor(services.pool) as cur:
            await cur.execute("UPDATE users SET token_version = token_version + 1 WHERE id = %s", (user["id"],))
    await ends(stream, within=5)


@pytest.mark.gen_test(timeout=60)
async def test_an_event_for_an_ended_session_is_not_delivered(client, make_user, services, monkeypatch):
    from videoflix.accounts import sessions, tokens
    from videoflix.library import events
    from videoflix.platform import rediskeys

    # No periodic check in this test's time: only the event's own check can end the stream.
    monkeypatch.setattr(events, "STREAM_CHECK_SECONDS", 60.0)
    monkeypatch.setattr(sessions, "CHECK_SECONDS", 0.001)
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    stream = await EventStream.open(client)
    await stream.snapshot()
    claims = tokens.read_session_token("test-secret-key-that-is-long-enough-for-hs256",
                                       client.cookies["access_token"], kind="access", now=int(time.time()))
    await services.redis.set(rediskeys.revoked_session(claims.session_id), 1, ex=600)  # as another server would
    await services.redis.publish(notify.CHANNEL, notify.progress_message(video_id, 50))
    with pytest.raises(EOFError):
        await stream.next_event(timeout=10)
    stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_stream_ends_when_its_access_token_expires(client, make_user, config):
    from videoflix.accounts import tokens

    await make_user()
    claims = tokens.read_session_token(config.secret_key, client.cookies["access_token"], kind="access",
                                       now=int(time.time()))
    short, _ = tokens.make_session_token(config.secret_key, user_id=claims.user_id, kind="access",
                                         now=int(time.time()), ttl_seconds=2, is_admin=False,
                                         token_version=claims.token_version, session_id=claims.session_id)
    stream = await EventStream.open(client, bearer=short)
    assert stream.status == 200
    await stream.snapshot()
    started = time.monotonic()
    await ends(stream, within=6)
    assert time.monotonic() - started >= 0.5  # it lived until the token ran out, not less


@pytest.mark.gen_test(timeout=60)
async def test_a_user_may_hold_eight_streams_the_ninth_is_429(client, make_user, app):
    from videoflix.library import events

    await make_user()
    streams = [await EventStream.open(client) for _ in range(events.MAX_STREAMS_PER_USER)]
    assert [s.status for s in streams] == [200] * events.MAX_STREAMS_PER_USER
    ninth = await EventStream.open(client)
    assert ninth.status == 429
    assert ninth.headers["content-type"].startswith("application/json")
    assert "Retry-After".lower() in ninth.headers
    ninth.close()
    streams.pop().close()
    hub = app.settings["events"]
    await wait_until(lambda: hub.subscribers == events.MAX_STREAMS_PER_USER - 1, "a stream to close")
    again = await EventStream.open(client)
    assert again.status == 200
    for stream in (*streams, again):
        stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_process_refuses_streams_past_its_global_cap(client, make_user, new_client, monkeypatch):
    from videoflix.library import events

    monkeypatch.setattr(events, "MAX_STREAMS", 3)
    await make_user()
    other = new_client()
    await make_user("other@example.com", log_in=False)
    await login(other, "other@example.com")
    streams = [await EventStream.open(client), await EventStream.open(client), await EventStream.open(other)]
    refused = await EventStream.open(other)
    assert [s.status for s in streams] + [refused.status] == [200, 200, 200, 503]
    for stream in (*streams, refused):
        stream.close()
