"""Resumable uploads on /api/uploads/ (issue 22 item 1), spoken by our own HTTP client:
tus 1.0 and the IETF draft, the upload becoming a video exactly as a multipart one does,
and every header and offset an attacker may send. tests/test_resumable_clients.py runs
the official tus-js-client against the same endpoint."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import socket
from urllib.parse import urlsplit

import pytest

from videoflix.library import resumable
from videoflix.library.sweeper import Sweeper
from videoflix.platform import media, rediskeys
from videoflix.platform.db import cursor
from videoflix.tables import resumable_uploads

from helpers import PASSWORD, login, upload, wait_until
from store_helpers import STORAGE_BACKENDS, read_stored


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    """Every test on the local store and on a bucket (a finished upload's source goes
    there by S3 multipart upload; the bytes being received stay in this host's scratch)."""
    return request.param

TUS = {"Tus-Resumable": "1.0.0"}
DRAFT_03 = {"Upload-Draft-Interop-Version": "5"}
DRAFT_05 = {"Upload-Draft-Interop-Version": "6"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def metadata(**fields: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in fields.items())


async def create(client, length: int | None, *, protocol=TUS, body: bytes | None = None, extra=None, **fields):
    headers = {**protocol, "Upload-Metadata": metadata(**({"title": "A clip", "filename": "clip.mp4"} | fields))}
    if length is not None:
        headers["Upload-Length"] = str(length)
    if body is not None:
        headers.update(OCTETS if protocol is TUS else {"Content-Type": "application/partial-upload"})
    headers.update(extra or {})
    return await client.fetch("POST", "/api/uploads/", raw_body=body if body is not None else b"", headers=headers)


async def patch(client, url: str, offset: int, data: bytes, *, protocol=TUS, extra=None):
    headers = {**protocol, "Upload-Offset": str(offset)}
    headers.update(OCTETS if protocol is TUS else {"Content-Type": "application/partial-upload"})
    headers.update(extra or {})
    return await client.fetch("PATCH", url, raw_body=data, headers=headers)


async def head(client, url: str, *, protocol=TUS):
    return await client.fetch("HEAD", url, headers=dict(protocol))


async def delete(client, url: str, *, protocol=TUS):
    return await client.fetch("DELETE", url, headers=dict(protocol))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload_file(config, url: str):
    return media.resumable_path(config.media_dir, url.rstrip("/").rsplit("/", 1)[-1])


async def video_rows(services) -> list[dict]:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT id, status, source_size, title, visibility FROM videos ORDER BY id")
        return list(await cur.fetchall())


async def source_of(services, config, location: str) -> bytes:
    """The video's source, from whichever store the test runs on."""
    video_id = int(location.rstrip("/").rsplit("/", 1)[-1])
    return await read_stored(services, media.source_path(config.media_dir, video_id))


# --- tus 1.0 ------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_options_answers_tus_discovery_without_credentials(client, config):
    response = await client.fetch("OPTIONS", "/api/uploads/", headers={"Origin": "http://127.0.0.1:5500"})
    assert response.status == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert response.headers["Tus-Checksum-Algorithm"] == "sha1"
    assert response.headers["Tus-Max-Size"] == str(config.max_upload_bytes)
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "upload-offset" in allowed and "tus-resumable" in allowed and "upload-draft-interop-version" in allowed


@pytest.mark.gen_test(timeout=60)
async def test_tus_upload_in_chunks_becomes_one_queued_video_with_the_same_bytes(client, make_user, small_clip,
                                                                                 services, config):
    await make_user()
    data = small_clip.read_bytes()
    created = await create(client, len(data), description="Chunks", category="Tests")
    assert created.status == 201, created.body
    url = created.headers["Location"]
    assert url.startswith("/api/uploads/") and created.headers["Upload-Offset"] == "0"
    assert created.headers["Tus-Resumable"] == "1.0.0"
    assert created.headers["Upload-Expires"].endswith(" GMT")
    assert created.json()["url"] == url and created.json()["video_url"] is None
    state = await head(client, url)
    assert (state.status, state.headers["Upload-Offset"], state.headers["Upload-Length"]) == (204, "0", str(len(data)))
    assert state.headers["Cache-Control"] == "no-store"
    third = len(data) // 3
    offset = 0
    for piece in (data[:third], data[third:2 * third]):
        answer = await patch(client, url, offset, piece)
        assert answer.status == 204, answer.body
        offset += len(piece)
        assert answer.headers["Upload-Offset"] == str(offset)
        assert "Video-Location" not in answer.headers
        assert upload_file(config, url).stat().st_size == offset
    assert await video_rows(services) == []
    last = await patch(client, url, offset, data[offset:])
    assert last.status == 204, last.body
    assert last.headers["Upload-Offset"] == str(len(data))
    location = last.headers["Video-Location"]
    detail = (await client.get(location)).json()
    assert (detail["status"], detail["title"], detail["description"], detail["category"], detail["visibility"]) == (
        "queued", "A clip", "Chunks", "Tests", "private")
    assert detail["width"] == 640 and detail["height"] == 360  # probed as a multipart upload is
    assert sha256(await source_of(services, config, location)) == sha256(data)
    assert not upload_file(config, url).exists()  # the source is its only name now
    again = await head(client, url)
    assert (again.status, again.headers["Upload-Offset"], again.headers["Video-Location"]) == (
        204, str(len(data)), location)
    # An empty PATCH at the end changes nothing and names the same video.
    repeat = await patch(client, url, len(data), b"")
    assert (repeat.status, repeat.headers["Video-Location"]) == (204, location)
    assert len(await video_rows(services)) == 1


@pytest.mark.gen_test(timeout=60)
async def test_creation_with_upload_finishes_in_one_request(client, make_user, small_clip, config, services):
    await make_user()
    data = small_clip.read_bytes()
    created = await create(client, len(data), body=data)
    assert created.status == 201, created.body
    assert created.headers["Upload-Offset"] == str(len(data))
    assert sha256(await source_of(services, config, created.headers["Video-Location"])) == sha256(data)
    assert created.json()["video_url"] == created.headers["Video-Location"]


@pytest.mark.gen_test
async def test_a_wrong_offset_is_409_with_the_real_one(client, make_user):
    await make_user()
    url = (await create(client, 100)).headers["Location"]
    assert (await patch(client, url, 0, b"x" * 10)).status == 204
    for wrong in (0, 5, 11, 99):
        answer = await patch(client, url, wrong, b"y")
        assert answer.status == 409, wrong
        assert answer.headers["Upload-Offset"] == "10"
        assert "does not match" in answer.json()["detail"]
    assert (await head(client, url)).headers["Upload-Offset"] == "10"


@pytest.mark.gen_test
async def test_a_checksum_mismatch_is_460_and_the_offset_does_not_move(client, make_user, config):
    await make_user()
    url = (await create(client, 100)).headers["Location"]
    chunk = b"a" * 40
    wrong = base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    answer = await patch(client, url, 0, chunk, extra={"Upload-Checksum": f"sha1 {wrong}"})
    assert answer.status == 460
    assert answer.headers["Upload-Offset"] == "0"
    assert (await head(client, url)).headers["Upload-Offset"] == "0"
    assert upload_file(config, url).stat().st_size == 0
    right = base64.b64encode(hashlib.sha1(chunk).digest()).decode()
    assert (await patch(client, url, 0, chunk, extra={"Upload-Checksum": f"sha1 {right}"})).status == 204
    assert (await head(client, url)).headers["Upload-Offset"] == "40"
    for bad in ("md5 " + right, "sha1 not-base64!", "sha1 " + base64.b64encode(b"short").decode(), "sha1"):
        refused = await patch(client, url, 40, b"b", extra={"Upload-Checksum": bad})
        assert refused.status == 400, bad
    assert (await head(client, url)).headers["Upload-Offset"] == "40"


@pytest.mark.gen_test
async def test_too_large_is_413(client, make_user, config, app):
    app.settings["config"] = dataclasses.replace(config, max_upload_bytes=1000)
    await make_user()
    refused = await create(client, 1001)
    assert refused.status == 413 and "limit is 1000 bytes" in refused.json()["detail"]
    url = (await create(client, 100)).headers["Location"]
    past_end = await patch(client, url, 0, b"z" * 101)
    assert past_end.status == 413
    assert (await patch(client, url, 0, b"z" * 60)).status == 204
    assert (await patch(client, url, 60, b"z" * 41)).status == 413
    assert (await head(client, url)).headers["Upload-Offset"] == "60"


@pytest.mark.gen_test
async def test_a_terminated_upload_is_404_and_its_file_is_gone(client, make_user, config):
    await make_user()
    url = (await create(client, 100)).headers["Location"]
    assert (await patch(client, url, 0, b"q" * 10)).status == 204
    assert upload_file(config, url).exists()
    deleted = await delete(client, url)
    assert (deleted.status, deleted.headers["Tus-Resumable"]) == (204, "1.0.0")
    assert not upload_file(config, url).exists()
    assert (await head(client, url)).status == 404
    assert (await patch(client, url, 10, b"q")).status == 404
    assert (await delete(client, url)).status == 404


@pytest.mark.gen_test
async def test_an_expired_upload_is_410_then_swept_to_404_with_its_file(client, make_user, services, config):
    await make_user()
    url = (await create(client, 100)).headers["Location"]
    keep = (await create(client, 100)).headers["Location"]
    assert (await patch(client, url, 0, b"e" * 10)).status == 204
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    async with cursor(services.pool) as cur:  # a day passed without progress
        await cur.execute("UPDATE resumable_uploads SET expires_at = now() - interval '1 second' WHERE id = %s",
                          (upload_id,))
    assert (await head(client, url)).status == 410
    assert (await patch(client, url, 10, b"e")).status == 410
    removed = await Sweeper(config, services, set).sweep()
    assert upload_id in removed
    assert not upload_file(config, url).exists()
    assert (await head(client, url)).status == 404
    assert (await head(client, keep)).status == 204 and upload_file(config, keep).exists()


@pytest.mark.gen_test
async def test_the_sweeper_removes_files_without_a_row_and_keeps_live_ones(client, make_user, services, config):
    await make_user()
    url = (await create(client, 100)).headers["Location"]
    orphan = media.resumable_path(config.media_dir, "0" * 32)
    orphan.write_bytes(b"left by a crash")
    await Sweeper(config, services, set).sweep()
    assert not orphan.exists()
    assert upload_file(config, url).exists()


@pytest.mark.gen_test
async def test_another_users_upload_is_404_for_every_method(client, new_client, make_user, services, mailbox):
    await make_user()
    url = (await create(client, 100)).headers["Location"]
    other = new_client()
    await make_user("other@example.com", log_in=False)
    await login(other, "other@example.com", PASSWORD)
    assert (await head(other, url)).status == 404
    assert (await patch(other, url, 0, b"x")).status == 404
    assert (await delete(other, url)).status == 404
    assert (await head(client, url)).headers["Upload-Offset"] == "0"


@pytest.mark.gen_test
async def test_missing_or_unknown_protocol_header_is_412(client, make_user):
    await make_user()
    missing = await client.fetch("POST", "/api/uploads/", raw_body=b"", headers={"Upload-Length": "10"})
    assert missing.status == 412 and missing.headers["Tus-Version"] == "1.0.0"
    assert "Tus-Resumable" in missing.json()["detail"]
    old = await create(client, 10, protocol={"Tus-Resumable": "0.2.2"})
    assert old.status == 412
    draft = await create(client, 10, protocol={"Upload-Draft-Interop-Version": "4"})
    assert draft.status == 412
    url = (await create(client, 10)).headers["Location"]
    no_header = await client.fetch("PATCH", url, raw_body=b"x", headers={**OCTETS, "Upload-Offset": "0"})
    assert no_header.status == 412


@pytest.mark.gen_test
async def test_unauthenticated_requests_are_401(client, make_user):
    await make_user()
    url = (await create(client, 10)).headers["Location"]
    client.cookies.clear()
    assert (await create(client, 10)).status == 401
    assert (await head(client, url)).status == 401
    assert (await patch(client, url, 0, b"x")).status == 401
    assert (await delete(client, url)).status == 401


@pytest.mark.gen_test
async def test_a_cross_site_creation_is_refused(client, make_user):
    await make_user()
    refused = await create(client, 10, extra={"Origin": "https://evil.example"})
    assert refused.status == 403


@pytest.mark.gen_test
async def test_hostile_offsets_and_lengths_are_clean_400s(client, make_user):
    await make_user()
    for length in ("-1", "1e3", "0x10", "99999999999999999999", " ", "\u00b2\u00b3"):
        answer = await client.fetch("POST", "/api/uploads/", raw_body=b"",
                                    headers={**TUS, "Upload-Length": length,
                                             "Upload-Metadata": metadata(title="t")})
        assert answer.status == 400, (length, answer.body)
    assert (await create(client, 0)).status == 400  # an empty file is not a video
    url = (await create(client, 100)).headers["Location"]
    for offset in ("-1", "+0", "1.5", "abc", "18446744073709551616", "9223372036854775808", ""):
        answer = await client.fetch("PATCH", url, raw_body=b"x", headers={**TUS, **OCTETS, "Upload-Offset": offset})
        assert answer.status == 400, (offset, answer.body)
    huge = await patch(client, url, 2**62, b"x")
    assert huge.status == 409
    missing = await client.fetch("PATCH", url, raw_body=b"x", headers={**TUS, **OCTETS})
    assert missing.status == 400
    twice = await client.http.fetch(client.base_url + url, method="PATCH", body=b"x", raise_error=False,
                                    headers=_with_cookie(client, [("Upload-Offset", "0"), ("Upload-Offset", "0")]))
    assert twice.code == 400 and b"more than once" in twice.body
    wrong_type = await patch(client, url, 0, b"x", extra={"Content-Type": "application/json"})
    assert wrong_type.status == 415
    assert (await head(client, url)).headers["Upload-Offset"] == "0"


def _with_cookie(client, pairs):
    import tornado.httputil

    headers = tornado.httputil.HTTPHeaders()
    headers.add("Cookie", "; ".join(f"{k}={v}" for k, v in client.cookies.items()))
    for name, value in [*TUS.items(), *OCTETS.items(), *pairs]:
        headers.add(name, value)
    return headers


@pytest.mark.gen_test
async def test_hostile_metadata_is_a_clean_400(client, make_user):
    await make_user()
    title = base64.b64encode(b"t").decode()
    cases = {
        "not base64": f"title {title},description %%%",
        "NUL": metadata(title="a\x00b"),
        "not UTF-8": "title " + base64.b64encode(bytes([0xFF, 0xFE])).decode(),
        "key twice": f"title {title},title {title}",
        "three parts": f"title {title} extra",
        "oversized": f"title {title},description {base64.b64encode(b'd' * 40000).decode()}",
        "many keys": ",".join(f"k{n} {title}" for n in range(20)) + f",title {title}",
    }
    for what, value in cases.items():
        answer = await client.fetch("POST", "/api/uploads/", raw_body=b"",
                                    headers={**TUS, "Upload-Length": "10", "Upload-Metadata": value})
        assert answer.status == 400, (what, answer.body)
        assert "detail" in answer.json()
    no_title = await client.fetch("POST", "/api/uploads/", raw_body=b"",
                                  headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata(filename="a")})
    assert (no_title.status, no_title.json()) == (400, {"title": ["This field is required."]})
    public = await create(client, 10, visibility="public")
    assert public.status == 400 and "visibility" in public.json()


@pytest.mark.gen_test(timeout=60)
async def test_a_file_that_is_not_a_video_is_refused_at_the_end_and_removed(client, make_user, services, config):
    await make_user()
    url = (await create(client, 1000)).headers["Location"]
    refused = await patch(client, url, 0, b"\x00" * 1000)
    assert refused.status == 400
    assert await video_rows(services) == []
    assert not upload_file(config, url).exists()
    assert (await head(client, url)).status == 404


@pytest.mark.gen_test
async def test_open_uploads_per_user_are_limited(client, make_user, config, app):
    app.settings["config"] = dataclasses.replace(config, max_open_uploads=2)
    await make_user()
    assert [(await create(client, 10)).status for _ in range(3)] == [201, 201, 429]


@pytest.mark.gen_test
async def test_the_storage_quota_counts_open_uploads(client, make_user, config, app):
    app.settings["config"] = dataclasses.replace(config, max_user_bytes=150)
    await make_user()
    assert (await create(client, 100)).status == 201
    refused = await create(client, 100)
    assert refused.status == 413 and "storage quota" in refused.json()["detail"]


# --- the IETF draft ------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [DRAFT_03, DRAFT_05], ids=["draft-03", "draft-05"])
@pytest.mark.gen_test(timeout=60)
async def test_the_draft_uploads_in_pieces_and_completes_with_upload_complete(client, make_user, small_clip, config,
                                                                             protocol, services):
    await make_user()
    data = small_clip.read_bytes()
    created = await create(client, None, protocol=protocol, extra={"Upload-Complete": "?0"})
    assert created.status == 201, created.body
    assert "Tus-Resumable" not in created.headers
    assert created.headers["Upload-Complete"] == "?0"
    url = created.headers["Location"]
    half = len(data) // 2
    first = await patch(client, url, 0, data[:half], protocol=protocol, extra={"Upload-Complete": "?0"})
    assert (first.status, first.headers["Upload-Offset"], first.headers["Upload-Complete"]) == (204, str(half), "?0")
    state = await head(client, url, protocol=protocol)
    assert (state.headers["Upload-Offset"], state.headers["Upload-Complete"]) == (str(half), "?0")
    assert "Upload-Length" not in state.headers  # not known until the client says it is complete
    last = await patch(client, url, half, data[half:], protocol=protocol, extra={"Upload-Complete": "?1"})
    assert last.status == 204, last.body
    assert last.headers["Upload-Complete"] == "?1"
    assert sha256(await source_of(services, config, last.headers["Video-Location"])) == sha256(data)
    done = await head(client, url, protocol=protocol)
    assert (done.headers["Upload-Complete"], done.headers["Upload-Length"]) == ("?1", str(len(data)))


@pytest.mark.gen_test
async def test_the_draft_refuses_bad_completion_markers(client, make_user):
    await make_user()
    url = (await create(client, 100, protocol=DRAFT_05)).headers["Location"]
    for value in ("1", "?2", "true", ""):
        answer = await patch(client, url, 0, b"x", protocol=DRAFT_05, extra={"Upload-Complete": value})
        assert answer.status == 400, value
    early = await patch(client, url, 0, b"x" * 10, protocol=DRAFT_05, extra={"Upload-Complete": "?1"})
    assert early.status == 400 and "ends at 10" in early.json()["detail"]
    # The older drafts' inverse header is understood.
    more = await patch(client, url, 10, b"y" * 10, protocol=DRAFT_03, extra={"Upload-Incomplete": "?1"})
    assert (more.status, more.headers["Upload-Offset"]) == (204, "20")


# --- one video, once; one writer at a time --------------------------------------------

@pytest.mark.gen_test(timeout=60)
async def test_finishing_twice_at_once_makes_one_video(client, make_user, small_clip, services, config):
    user = await make_user()
    data = small_clip.read_bytes()
    url = (await create(client, len(data))).headers["Location"]
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    # The bytes arrive without the last PATCH (as a crash after the fsync would leave them).
    upload_file(config, url).write_bytes(data)
    async with cursor(services.pool) as cur:
        whole = await resumable_uploads.record_progress(cur, upload_id, len(data), None, 3600)
    results = await asyncio.gather(
        resumable.finish(config, services, whole, False),
        resumable.finish(config, services, whole, False),
        resumable.finish(config, services, whole, False),
        return_exceptions=True,
    )
    video_ids = {result.video_id for result in results if not isinstance(result, BaseException)}
    rows = await video_rows(services)
    assert len(rows) == 1 and video_ids == {rows[0]["id"]}, results
    assert rows[0]["source_size"] == len(data)
    assert user["id"]


@pytest.mark.gen_test(timeout=30)
async def test_a_second_patch_while_one_is_receiving_is_423(client, make_user, services, http_port, base_url):
    await make_user()
    url = (await create(client, 1000)).headers["Location"]
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    port = urlsplit(client.base_url).port
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                  "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                  "Upload-Offset: 0\r\nContent-Length: 1000\r\n\r\n").encode() + b"p" * 300)
    await writer.drain()
    await wait_until(lambda: services.redis.exists(rediskeys.upload_lock(upload_id)), "the first PATCH's lock")
    second = await patch(client, url, 0, b"x" * 10)
    assert (second.status, second.headers["Retry-After"]) == (423, "1")
    assert (await delete(client, url)).status == 423
    # The first one drops mid-body: what arrived is kept, the lock released.
    writer.transport.abort()
    await wait_until(lambda: _offset_is(client, url, "300"), "the 300 bytes kept")
    await wait_until(lambda: _unlocked(services, upload_id), "the lock released")
    assert (await patch(client, url, 300, b"x" * 700)).status == 400  # (whole, and not a video)


async def _offset_is(client, url, wanted, protocol=TUS):
    return (await head(client, url, protocol=protocol)).headers.get("Upload-Offset") == wanted


async def _unlocked(services, upload_id):
    return not await services.redis.exists(rediskeys.upload_lock(upload_id))


def raw_patch_head(client, url: str, offset: int, length: int, protocol) -> bytes:
    port = urlsplit(client.base_url).port
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    lines = "".join(f"{k}: {v}\r\n" for k, v in protocol.items())
    kind = "application/offset+octet-stream" if protocol is TUS else "application/partial-upload"
    return (f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n{lines}"
            f"Content-Type: {kind}\r\nUpload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("protocol", [TUS, DRAFT_03, DRAFT_05], ids=["tus", "draft-03", "draft-05"])
@pytest.mark.gen_test(timeout=60)
async def test_a_dropped_connection_resumes_to_the_same_bytes(client, make_user, small_clip, services, config,
                                                               protocol):
    await make_user()
    data = small_clip.read_bytes()
    url = (await create(client, len(data), protocol=protocol)).headers["Location"]
    port = urlsplit(client.base_url).port
    sent = len(data) // 2 + 12345
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(raw_patch_head(client, url, 0, len(data), protocol) + data[:sent])
    await wait_until(lambda: _offset_is(client, url, str(sent), protocol), "the bytes before the drop kept")
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    await wait_until(lambda: _unlocked(services, upload_id), "the lock released")
    rest = await patch(client, url, sent, data[sent:], protocol=protocol, extra=(
        {"Upload-Complete": "?1"} if protocol is not TUS else {}))
    assert rest.status == 204, rest.body
    assert sha256(await source_of(services, config, rest.headers["Video-Location"])) == sha256(data)


@pytest.mark.gen_test(timeout=60)
async def test_a_stalled_body_is_cut_off_and_what_arrived_is_kept(client, make_user, services, config, app):
    app.settings["config"] = dataclasses.replace(config, upload_idle_seconds=1)
    await make_user()
    url = (await create(client, 1000)).headers["Location"]
    reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(client.base_url).port)
    writer.write(raw_patch_head(client, url, 0, 1000, TUS) + b"s" * 250)  # then nothing more
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), timeout=20) == b""  # the server closed it
    writer.close()
    await wait_until(lambda: _offset_is(client, url, "250"), "the 250 bytes kept")


@pytest.mark.gen_test(timeout=60)
async def test_a_content_length_shorter_than_the_body_takes_only_what_it_says(client, make_user, services):
    await make_user()
    url = (await create(client, 1000)).headers["Location"]
    reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(client.base_url).port)
    writer.write(raw_patch_head(client, url, 0, 10, TUS) + b"t" * 10 + b"and this is not a request\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=20)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 204")
    assert b"Upload-Offset: 10" in answer
    assert b" 500 " not in answer
    assert (await head(client, url)).headers["Upload-Offset"] == "10"


@pytest.mark.gen_test(timeout=60)
async def test_bytes_past_the_offset_from_a_killed_server_are_cut_before_the_next_append(client, make_user,
                                                                                          small_clip, config, services):
    await make_user()
    data = small_clip.read_bytes()
    url = (await create(client, len(data))).headers["Location"]
    assert (await patch(client, url, 0, data[:1000])).status == 204
    with upload_file(config, url).open("ab") as partial:  # written, never fsynced nor acknowledged
        partial.write(b"garbage" * 100)
    assert (await head(client, url)).headers["Upload-Offset"] == "1000"
    rest = await patch(client, url, 1000, data[1000:])
    assert rest.status == 204, rest.body
    assert sha256(await source_of(services, config, rest.headers["Video-Location"])) == sha256(data)


@pytest.mark.gen_test(timeout=60)
async def test_the_multipart_upload_still_works_beside_it(client, make_user, small_clip):
    await make_user()
    assert (await upload(client, small_clip)).status == 201


@pytest.mark.gen_test
async def test_a_chunked_body_is_capped_at_the_upload_length_too(client, make_user):
    await make_user()
    url = (await create(client, 100)).headers["Location"]

    def body(total: int):
        async def produce(write):
            for _ in range(total // 10):
                await write(b"c" * 10)
        return produce

    def chunked(offset: int, total: int):
        headers = {**TUS, **OCTETS, "Upload-Offset": str(offset),
                   "Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}
        return client.http.fetch(client.base_url + url, method="PATCH", headers=headers,
                                 body_producer=body(total), raise_error=False)

    within = await chunked(0, 60)
    assert (within.code, within.headers["Upload-Offset"]) == (204, "60")
    past = await chunked(60, 50)
    assert past.code == 413 and b"past the end" in past.body
    assert (await head(client, url)).headers["Upload-Offset"] == "60"


@pytest.mark.gen_test
async def test_an_upload_whose_acknowledged_bytes_vanished_is_410_not_zeros(client, make_user, config):
    await make_user()
    url = (await create(client, 100)).headers["Location"]
    assert (await patch(client, url, 0, b"v" * 30)).status == 204
    upload_file(config, url).unlink()
    gone = await patch(client, url, 30, b"v" * 10)
    assert gone.status == 410
    assert not upload_file(config, url).exists()


@pytest.mark.gen_test(timeout=60)
async def test_the_sweeper_removes_a_finished_uploads_leftover_file(client, make_user, small_clip, services, config):
    """A crash after the commit that made the video, before the upload's name was unlinked."""
    await make_user()
    data = small_clip.read_bytes()
    created = await create(client, len(data), body=data)
    url, location = created.headers["Location"], created.headers["Video-Location"]
    upload_file(config, url).write_bytes(data)  # the name the crash left
    await Sweeper(config, services, set).sweep()
    assert not upload_file(config, url).exists()
    assert sha256(await source_of(services, config, location)) == sha256(data)  # the video's own name is untouched


@pytest.mark.gen_test(timeout=60)
async def test_a_finished_upload_whose_video_was_deleted_stays_complete_without_a_location(client, make_user,
                                                                                        small_clip, services):
    await make_user()
    data = small_clip.read_bytes()
    created = await create(client, len(data), body=data)
    url, location = created.headers["Location"], created.headers["Video-Location"]
    assert (await client.fetch("DELETE", location)).status == 204
    state = await head(client, url)
    assert (state.status, state.headers["Upload-Offset"]) == (204, str(len(data)))
    assert "Video-Location" not in state.headers
    assert (await patch(client, url, len(data), b"")).status == 204  # nothing to finish again
    assert await video_rows(services) == []  # not a second video
